"""`pykubemark hollow` beyond its options: the shard, the engine, and for pykubemark's own
nodes the choices a user should not have to make by hand — the credentials the nodes
use, the release they act as, addresses their kubelet APIs can listen on.

Every check runs before the first node starts: a mistake is one line, not a fleet that
fails at its three-thousandth node.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import sys
from pathlib import Path

from pykubemark.deploy.manifests import shard_prefix
from pykubemark.engines import ENGINES, HollowOptions, NodeOptions, Progress, register_rate
from pykubemark.errors import UserError
from pykubemark.hollow.fleet import FleetOptions, run_fleet
from pykubemark.hollow.kubelet_api import RESERVED, ApiOptions, check_addresses
from pykubemark.hollow.objects import nth_address
from pykubemark.hollow.profile import Profile, load_profile
from pykubemark.kube.config import KubeConfig, load_kubeconfig
from pykubemark.kube.probe import check_server, may
from pykubemark.provision.releases import Release, parse_release

#: What a kubelet's TLS bootstrap does first: create its certificate signing request.
CREATE_CSR = {"verb": "create", "resource": "certificatesigningrequests",
              "group": "certificates.k8s.io"}


def run_hollow(options: HollowOptions, say: Progress) -> None:
    """This shard's nodes on the engine asked for, until Ctrl-C or SIGTERM."""
    options = for_shard(options)
    engine = ENGINES[options.engine]
    rate = register_rate(engine, options.nodes.register_rate)
    engine.run_foreground(dataclasses.replace(
        options, nodes=dataclasses.replace(options.nodes, register_rate=rate)), say)


def for_shard(options: HollowOptions) -> HollowOptions:
    """With --shard-from-pod-name, a shard pod of `deploy`: its StatefulSet ordinal K
    makes the prefix PREFIX-K and its nodes the K-th share of --total-nodes."""
    if options.pod_name is None:
        return options
    nodes = options.nodes
    try:
        prefix, ordinal = shard_prefix(nodes.prefix, options.pod_name)
    except ValueError as exc:
        raise UserError(f"--shard-from-pod-name: {exc}") from None
    count = nodes.count
    if options.total_nodes is not None:
        count = min(count, options.total_nodes - ordinal * count)
        if count <= 0:
            raise UserError(f"shard {ordinal} has no nodes of --total-nodes "
                            f"{options.total_nodes}")
    return dataclasses.replace(options, nodes=dataclasses.replace(nodes, prefix=prefix,
                                                                  count=count))


def run_fleet_foreground(options: HollowOptions, say: Progress) -> None:
    """pykubemark's own nodes against the kubeconfig's cluster until Ctrl-C; `run_hollow`
    has set the rate they start at."""
    nodes = options.nodes
    assert nodes.register_rate is not None
    logging.basicConfig(level=logging.DEBUG if options.verbose else logging.INFO,
                        stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    api = ApiOptions(enabled=nodes.kubelet_api is not False, port=options.kubelet_port,
                     address=options.kubelet_address or None,
                     client_ca=options.kubelet_client_ca, netns=options.kubelet_netns,
                     anonymous=options.kubelet_anonymous)
    if api.enabled and api.address:
        check_kubelet_address(api.address)
    elif api.enabled:
        # Before anything else: the addresses come from the profile, not the release.
        check_node_addresses(node_profile(nodes, node_ip_base=options.node_ip_base),
                             nodes.count, options.kubelet_netns)
    config = load_kubeconfig(options.kubeconfig)
    credentials = node_credentials(config, nodes.node_credentials)
    version = check_server(config, **CREATE_CSR) if credentials == "bootstrap" \
        else check_server(config)
    release = kubelet_release(options.kubelet_version, version)
    profile = node_profile(nodes, release, node_ip_base=options.node_ip_base)
    check_watch_credentials(profile, credentials, options.watch_kubeconfig, release)
    check_proxy_credentials(config, credentials, options.proxy_kubeconfig)
    if warning := review_rights_warning(config, credentials, api):
        say(warning)
    identity = ("per-node identities (TLS bootstrap)" if credentials == "bootstrap"
                else "one shared identity")
    say(f"{nodes.count} hollow nodes ({profile.fidelity}, {identity}, as kubelet "
        f"{profile.kubelet_version}) against {config.server} "
        f"(Kubernetes {version.get('gitVersion', '?')}), {nodes.processes} process(es); "
        "Ctrl-C stops")
    run_fleet(FleetOptions(kubeconfig=options.kubeconfig,
                           proxy_kubeconfig=options.proxy_kubeconfig, nodes=nodes.count,
                           prefix=nodes.prefix, processes=nodes.processes,
                           register_rate=nodes.register_rate,
                           profile=profile, delete_nodes_on_exit=options.delete_nodes_on_exit,
                           supervise=options.supervise, restarts_file=options.restarts_file,
                           transport=nodes.transport, content_type=nodes.content_type,
                           node_credentials=credentials, cert_dir=options.cert_dir,
                           heartbeat_file=options.heartbeat_file,
                           chaos_file=options.chaos_file, kubelet_api=api,
                           watch_kubeconfig=options.watch_kubeconfig,
                           metrics_port=options.metrics_port))


def node_profile(nodes: NodeOptions, release: Release | None = None,
                 node_ip_base: str | None = None) -> Profile:
    """The release's profile and the profile file, with only the options given on the
    command line on top."""
    return load_profile(nodes.profile_file, release, fidelity=nodes.fidelity,
                        events=nodes.events, node_ip_base=node_ip_base,
                        proxy_endpoints="endpointslices" if nodes.endpoint_slices else None)


def check_node_addresses(profile: Profile, count: int, netns: str | None = None) -> None:
    """Every node's API listens on its InternalIP: refuse a range that cannot hold them."""
    try:
        first, last = (nth_address(profile.node_ip_base, i) for i in (0, count - 1))
    except ValueError as exc:
        raise UserError(f"node_ip_base: {exc}") from None
    check_addresses([first, last], netns)
    if netns is None and ipaddress.ip_address(first) <= RESERVED <= ipaddress.ip_address(last):
        check_addresses([str(RESERVED)])


def check_kubelet_address(address: str) -> None:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise UserError(f"--kubelet-address {address!r} is not an IP address") from None


def node_credentials(config: KubeConfig, asked: str) -> str:
    """"auto": a bootstrap token (a user that may create CSRs but not Nodes) means each
    node bootstraps its own identity, as a kubelet with it would; anything else is
    shared by every node."""
    if asked != "auto":
        return asked
    return ("bootstrap" if may(config, **CREATE_CSR) and not may(config, "create", "nodes")
            else "shared")


def kubelet_release(asked: str | None, server_version: dict[str, str]) -> Release:
    """The release the hollow nodes act as: --kubelet-version, else the apiserver's."""
    if asked is not None:
        return parse_release(asked, what="--kubelet-version")
    text = server_version.get("gitVersion", "")
    try:
        return Release.parse(text)
    except ValueError:
        raise UserError(f"the apiserver's /version says '{text}', not a Kubernetes release; "
                        "name one with --kubelet-version") from None


def check_watch_credentials(profile: Profile, credentials: str, watch_kubeconfig: Path | None,
                            release: Release) -> None:
    """`lite` watches every pod and node once for all nodes; since 1.32 the Node
    authorizer lets a node watch only its own pods, so per-node identities cannot."""
    if profile.fidelity == "lite" and credentials == "bootstrap" \
            and watch_kubeconfig is None and release.minor_version >= (1, 32):
        raise UserError("--fidelity lite with per-node identities needs --watch-kubeconfig "
                        "(a user allowed to watch every pod and node): since Kubernetes 1.32 "
                        "a node may watch only its own pods")


def review_rights_warning(config: KubeConfig, credentials: str, api: ApiOptions) -> str:
    """The kubelet APIs authorize every request through the nodes' credentials (a
    SubjectAccessReview; bearer tokens a TokenReview): a shared user that may not make
    them leaves every request refused. Per-node identities may, by the Node authorizer."""
    if not api.enabled or api.anonymous or credentials != "shared":
        return ""
    missing = [resource for resource, group in (("subjectaccessreviews", "authorization.k8s.io"),
                                                ("tokenreviews", "authentication.k8s.io"))
               if not may(config, "create", resource, group)]
    if not missing:
        return ""
    return (f"warning: the user of {config.source} may not create {' or '.join(missing)}: "
            "the hollow kubelet APIs will refuse "
            + ("every request" if "subjectaccessreviews" in missing else "bearer tokens")
            + " (give it system:auth-delegator, or --kubelet-anonymous, unsafe)")


def check_proxy_credentials(config: KubeConfig, credentials: str,
                            proxy_kubeconfig: Path | None) -> None:
    """The hollow kube-proxies watch endpoints: with their own kubeconfig, as that user;
    else as the kubelets' user, which a bootstrap token alone does not allow."""
    if proxy_kubeconfig is not None:
        check_server(load_kubeconfig(proxy_kubeconfig), verb="watch", resource="endpoints")
    elif credentials == "bootstrap" and not may(config, "watch", "endpoints"):
        raise UserError(f"the user of {config.source} bootstraps node certificates but may not "
                        "watch endpoints: give the hollow kube-proxies their own credentials "
                        "with --proxy-kubeconfig (e.g. system:kube-proxy)")
