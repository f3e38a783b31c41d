"""The `pykubemark` command: each subcommand is a thin call into a package."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pykubemark import __version__
from pykubemark.contract import NODE_FAILURE_ACTIONS, NodeFailure
from pykubemark.errors import UserError

if TYPE_CHECKING:
    from pykubemark.hollow.profile import Profile

console = Console()
err_console = Console(stderr=True)

bin_dir_option = click.option(
    "--bin-dir", type=click.Path(path_type=Path), default=None,
    help="Directory with kube-apiserver, kube-scheduler, kube-controller-manager "
    "(and optionally etcd, kubemark, kubectl). Default: $PYKUBEMARK_BIN_DIR, PATH, the cache.",
)
release_option = click.option(
    "--kubernetes-version", default=None, metavar="X.Y.Z",
    help="Kubernetes release to build from Go modules and run (default: "
    "$PYKUBEMARK_KUBERNETES_VERSION, else the newest release when this pykubemark was made).")
name_option = click.option("--name", default="pykubemark", show_default=True,
                           help="Cluster name; several can run at once.")


def hollow_options(func):
    """Options shared by `hollow` and `up --nodes`."""
    options = [
        click.option("--prefix", default="hollow", show_default=True,
                     help="Node names are PREFIX-0, PREFIX-1, ...; one prefix per shard."),
        click.option("--fidelity", type=click.Choice(["kubelet", "lite"]), default=None,
                     help="kubelet (default): every node watches like kubelet/kube-proxy; lite: "
                     "one shared watch per resource for the process."),
        click.option("--processes", type=click.IntRange(1, 64), default=1, show_default=True,
                     help="Processes (event loops) to spread the nodes over."),
        click.option("--profile", "profile_file", type=click.Path(path_type=Path), default=None,
                     help="YAML file overriding hollow-node behaviour (see hollow/profile.py)."),
        click.option("--events/--no-events", default=None,
                     help="Post the events a real kubelet posts "
                     "(Pulled, Created, Started, Killing; for failures Pulling, Failed, "
                     "BackOff, Unhealthy)."),
        click.option("--endpoint-slices", is_flag=True,
                     help="kube-proxy 1.21+: watch EndpointSlices instead of Endpoints."),
        click.option("--transport", type=click.Choice(["h2", "h1"]), default="h2",
                     show_default=True,
                     help="h2: one HTTP/2 connection per hollow kubelet and per hollow proxy, "
                     "as client-go; h1: a shared HTTP/1.1 pool, one connection per watch "
                     "(7 or more per node)."),
        click.option("--content-type", type=click.Choice(["protobuf", "json"]),
                     default="protobuf", show_default=True,
                     help="protobuf: gets, lists, watches, creates and updates of built-in "
                     "types in the apiserver's protobuf, as the kubelet; json: everything JSON "
                     "(for servers or types without protobuf). Patches are JSON either way."),
        click.option("--register-rate", type=float, default=None,
                     help="Nodes started per second (0: all at once). Default: 50, "
                     "or 2 for the kubemark engine (a Go kubelet's start-up costs ~1 CPU-s)."),
        click.option("--engine", type=click.Choice(["pykubemark", "kubemark"]),
                     default="pykubemark", show_default=True,
                     help="pykubemark's hollow nodes, or the Go kubemark's (the reference: "
                     "kubelet + proxy processes per node; needs root and unshare)."),
        click.option("--node-credentials", type=click.Choice(["auto", "bootstrap", "shared"]),
                     default="auto", show_default=True,
                     help="bootstrap: each kubelet gets its own certificate (system:node:NAME) "
                     "through the CSR API, as the kubelet's TLS bootstrap; shared: every kubelet "
                     "uses the kubeconfig's user; auto: bootstrap when that user may create CSRs "
                     "but not Nodes (a bootstrap token), else shared. `up`: auto = bootstrap."),
        click.option("--kubelet-api/--no-kubelet-api", "kubelet_api", default=None,
                     help="Serve the kubelet's own HTTPS API (logs, /stats/summary, /pods, "
                     "/metrics/resource; exec refused) for every node, each on its own "
                     "loopback address (default: on)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _profile(profile_file: Path | None, fidelity: str | None, events: bool | None,
             endpoint_slices: bool, release=None, node_ip_base: str | None = None) -> Profile:
    """The release's profile and the profile file, with only the options given on the
    command line on top."""
    from pykubemark.hollow.profile import load_profile

    return load_profile(profile_file, release, fidelity=fidelity, events=events,
                        node_ip_base=node_ip_base,
                        proxy_endpoints="endpointslices" if endpoint_slices else None)


def _check_node_addresses(profile: Profile, nodes: int, netns: str | None = None) -> None:
    """Every node's API listens on its InternalIP: refuse a range that cannot hold them."""
    import ipaddress

    from pykubemark.hollow.kubelet_api import RESERVED, check_addresses
    from pykubemark.hollow.objects import nth_address

    try:
        first, last = (nth_address(profile.node_ip_base, i) for i in (0, nodes - 1))
    except ValueError as exc:
        raise UserError(f"node_ip_base: {exc}") from None
    check_addresses([first, last], netns)
    if netns is None and ipaddress.ip_address(first) <= RESERVED <= ipaddress.ip_address(last):
        check_addresses([str(RESERVED)])


def _release(kubernetes_version: str | None, bin_dir: Path | None):
    """The release asked for; none with a binaries directory, which says its own."""
    from pykubemark.provision.releases import parse_release

    if kubernetes_version is None:
        return None
    if bin_dir is not None:
        raise UserError("--kubernetes-version and --bin-dir exclude each other: "
                        "the binaries in DIR say which release they are")
    return parse_release(kubernetes_version)


def _register_rate(engine: str, register_rate: float | None) -> float:
    if register_rate is None:
        return 50.0 if engine == "pykubemark" else 2.0
    if register_rate < 0:
        raise UserError(f"--register-rate {register_rate:g} is negative")
    return register_rate


def _refuse_pykubemark_only(**given: object) -> None:
    """Options that shape pykubemark's own hollow nodes mean nothing to the Go kubemark;
    silently ignoring one would make a calibration run differ from what was asked."""
    flags = [name for name, value in given.items() if value]
    if flags:
        listed = ", ".join("--" + name.replace("_", "-") for name in flags)
        raise UserError(f"{listed} apply to the pykubemark engine only, not --engine kubemark")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pykubemark")
def cli() -> None:
    """Kubemark in Python: hollow nodes against a real Kubernetes control plane."""


@cli.command()
@bin_dir_option
@release_option
@click.option("--no-build", is_flag=True, help="Fail instead of building when nothing is found.")
@click.option("--list", "list_releases", is_flag=True,
              help="List the releases the Go module proxy serves and those built here.")
def provision(bin_dir: Path | None, kubernetes_version: str | None, no_build: bool,
              list_releases: bool) -> None:
    """Build a Kubernetes release (and its etcd) from Go modules once, or check --bin-dir."""
    from pykubemark.provision import ensure_binaries
    from pykubemark.provision.binaries import cached_releases
    from pykubemark.provision.releases import default_release, served_releases

    if list_releases:
        built = set(cached_releases())
        default = default_release()
        for release in served_releases():
            marks = [m for m, on in (("built", release in built),
                                     ("default", release == default)) if on]
            console.print(f"{release}" + (f"  ({', '.join(marks)})" if marks else ""))
        return
    release = _release(kubernetes_version, bin_dir)
    found = ensure_binaries(bin_dir, release=release, allow_build=not no_build)
    table = Table(title=f"Kubernetes {found.release} (from {found.source})")
    table.add_column("binary")
    table.add_column("path")
    table.add_column("version")
    for name in ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager",
                 "kubelet", "kube-proxy", "kubemark", "kubectl"):
        path = found.path(name)
        table.add_row(name, str(path) if path else "-", found.versions.get(name, "-"))
    console.print(table)


@cli.command()
@name_option
@bin_dir_option
@release_option
@click.option("--port", "apiserver_port", type=int, default=None,
              help="kube-apiserver port on 127.0.0.1 (default: a free one).")
@click.option("--audit/--no-audit", default=False,
              help="Write the apiserver's audit log (Metadata level) to the state dir.")
@click.option("--etcd-tmpfs", is_flag=True, help="Keep etcd's data in /dev/shm.")
@click.option("--apiserver-arg", "apiserver_args", multiple=True,
              help="Extra kube-apiserver flag, e.g. --apiserver-arg=--max-requests-inflight=800")
@click.option("--controller-manager-arg", "controller_manager_args", multiple=True,
              help="Extra kube-controller-manager flag (the last one of a name wins).")
@click.option("--scheduler-arg", "scheduler_args", multiple=True,
              help="Extra kube-scheduler flag (the last one of a name wins).")
@click.option("--nodes", type=click.IntRange(0, 100_000), default=0, show_default=True,
              help="Hollow nodes to start with the cluster (stopped by `down`).")
@click.option("--size", type=click.IntRange(0, 100_000), default=None,
              help="Size the apiserver's in-flight limits and caches for this many nodes as "
              "Kubernetes' kubemark master does (default: --nodes).")
@hollow_options
@click.option("--real-nodes", "real_nodes", type=click.IntRange(0, 250), default=0,
              help="Also N real nodes NAME-node-I: the release's kubelet and kube-proxy on "
              "Debian's containerd, runc and CNI plugins, each in a network namespace, cgroup "
              "and containerd of its own, pods reaching pods and services across nodes. "
              "Needs root.")
@click.option("--real-node", is_flag=True,
              help="Also one real node NAME-node in the host's network (no kube-proxy), so "
              "`deploy`'s host-network shards reach a target apiserver on the host's "
              "loopback: a base cluster for `deploy`. Needs root.")
@click.option("--load-image", "load_images", multiple=True, type=click.Path(path_type=Path),
              help="With --real-node(s): import this image archive (e.g. from `pykubemark "
              "image build`) into every real node's containerd.")
def up(name: str, bin_dir: Path | None, kubernetes_version: str | None,
       apiserver_port: int | None, audit: bool, etcd_tmpfs: bool, apiserver_args: tuple[str, ...],
       controller_manager_args: tuple[str, ...], scheduler_args: tuple[str, ...], nodes: int,
       size: int | None, prefix: str,
       fidelity: str | None, processes: int, profile_file: Path | None, events: bool | None,
       endpoint_slices: bool, register_rate: float | None, engine: str,
       transport: str, content_type: str, node_credentials: str,
       kubelet_api: bool | None, real_nodes: int, real_node: bool,
       load_images: tuple[Path, ...]) -> None:
    """Start a local control plane (etcd, apiserver, scheduler, controller-manager)."""
    from pykubemark.cluster.control_plane import LocalCluster, UpOptions
    from pykubemark.cluster.hollow import HollowArgs, start_hollow
    from pykubemark.provision import ensure_binaries

    rate = _register_rate(engine, register_rate)
    release = _release(kubernetes_version, bin_dir)
    options = UpOptions(name=name, apiserver_port=apiserver_port, audit=audit,
                        etcd_tmpfs=etcd_tmpfs, apiserver_args=apiserver_args,
                        controller_manager_args=controller_manager_args,
                        scheduler_args=scheduler_args,
                        size=nodes if size is None else size)
    # Bad input fails before anything starts.
    if engine == "kubemark":
        from pykubemark.engines.gokubemark import require_runtime, start_for_cluster

        _refuse_pykubemark_only(fidelity=fidelity, processes=processes != 1,
                                profile=profile_file, events=events is not None,
                                endpoint_slices=endpoint_slices,
                                kubelet_api=kubelet_api is not None)
        binaries = ensure_binaries(bin_dir, release=release)
        kubemark = require_runtime(binaries.kubemark) if nodes else None

        def extra(c: LocalCluster, shown) -> None:
            assert kubemark is not None
            start_for_cluster(c, nodes, prefix=prefix, kubemark=kubemark,
                              start_interval=1 / rate if rate else 0.0, progress=shown.update)
    else:
        profile = _profile(profile_file, fidelity, events, endpoint_slices)
        if kubelet_api is not False and nodes:
            _check_node_addresses(profile, nodes)
        hollow_args = HollowArgs(nodes=nodes, prefix=prefix, fidelity=fidelity,
                                 processes=processes, profile=profile_file, events=events,
                                 endpoint_slices=endpoint_slices, register_rate=rate,
                                 node_credentials="shared" if node_credentials == "shared"
                                 else "bootstrap", transport=transport,
                                 content_type=content_type,
                                 kubelet_api=kubelet_api is not False)
        binaries = ensure_binaries(bin_dir, release=release)

        def extra(c: LocalCluster, shown) -> None:
            start_hollow(c, hollow_args, shown.update)
    if real_node and real_nodes:
        raise UserError("--real-node (one node in the host's network) and --real-nodes "
                        "exclude each other")
    if load_images and not (real_node or real_nodes):
        raise UserError("--load-image needs --real-node or --real-nodes")
    for archive in load_images:
        if not archive.is_file():
            raise UserError(f"--load-image {archive} does not exist")
    real = 1 if real_node else real_nodes

    def start_extra(c: LocalCluster, shown) -> None:
        if real:
            from pykubemark.cluster.real_node import start_real_nodes

            start_real_nodes(c, binaries, real, images=load_images, host_network=real_node,
                             progress=shown.update)
        if nodes:
            extra(c, shown)

    try:
        with _interruptible(name), err_console.status(f"starting cluster '{name}'") as shown:
            cluster = LocalCluster.up(
                options, binaries,
                extra=(lambda c: start_extra(c, shown)) if nodes or real else None)
    except KeyboardInterrupt:
        from pykubemark.errors import Interrupted

        raise Interrupted(f"interrupted; cluster '{name}' stopped, left running: "
                          f"{_left_behind(name)}") from None
    kubeconfig = cluster.state.kubeconfig
    what = "hollow nodes" if engine == "pykubemark" else "Go kubemark hollow nodes"
    console.print(f"cluster [bold]{name}[/] is up: {cluster.state.server}"
                  + (f" with {nodes} {what}" if nodes else "")
                  + (f" and real node {name}-node" if real_node else "")
                  + (f" and {real_nodes} real node(s) {name}-node-0.." if real_nodes else ""))
    console.print(f"  kubeconfig: {kubeconfig}")
    console.print(f"  export KUBECONFIG={kubeconfig}")
    kubectl = binaries.kubectl or "kubectl"
    console.print(f"  {kubectl} --kubeconfig {kubeconfig} get --raw /readyz")
    console.print(f"  stop it with: pykubemark down --name {name}")


def _left_behind(name: str) -> str:
    from pykubemark.cluster.control_plane import LocalCluster

    try:
        return LocalCluster.load(name).left_behind()
    except UserError:
        return "nothing"


def _interruptible(name: str):
    """Ctrl-C or SIGTERM stops what `up` started; a second one leaves at once."""
    from pykubemark.interrupts import Guard

    return Guard(lambda: _left_behind(name))


@cli.command()
@click.option("--kubeconfig", type=click.Path(path_type=Path), default=None,
              help="Kubeconfig of the cluster (default: $KUBECONFIG, ~/.kube/config).")
@click.option("--proxy-kubeconfig", type=click.Path(path_type=Path), default=None,
              help="Separate credentials for the hollow kube-proxies (default: --kubeconfig).")
@click.option("--nodes", type=click.IntRange(1, 100_000), required=True)
@hollow_options
@click.option("--cert-dir", type=click.Path(path_type=Path), default=None,
              help="Where bootstrapped node certificates are kept and reused "
              "(default: $PYKUBEMARK_STATE/hollow-certs, one subdirectory per apiserver).")
@click.option("--delete-nodes-on-exit", is_flag=True, help="Delete the Node objects on exit.")
@click.option("--supervise", is_flag=True,
              help="Run the nodes in child processes and restart one that dies, with the same "
              "node names (always so with --processes > 1).")
@click.option("--restarts-file", type=click.Path(path_type=Path), default=None,
              help="Record the restarts of child processes in this JSON file.")
@click.option("--shard-from-pod-name", "pod_name", default=None, metavar="POD_NAME",
              help="Shard pod of `deploy`: the StatefulSet ordinal K at the end of POD_NAME "
              "makes the prefix PREFIX-K and this shard's nodes the K-th share of "
              "--total-nodes, --nodes each.")
@click.option("--total-nodes", type=click.IntRange(1, 10_000_000), default=None,
              help="With --shard-from-pod-name: nodes of all shards together.")
@click.option("--heartbeat-file", type=click.Path(path_type=Path), default=None,
              help="Touch this file while every node renews its lease (for `pykubemark alive`).")
@click.option("--chaos-file", type=click.Path(path_type=Path), default=None,
              help="Apply the node failures that `pykubemark chaos --file` writes to this file.")
@click.option("--kubelet-port", type=click.IntRange(0, 65535), default=0,
              help="Port of every node's kubelet API (default: a free one per process; "
              "with --kubelet-address, the first node's, default 10250).")
@click.option("--kubelet-address", envvar="PYKUBEMARK_KUBELET_ADDRESS", default=None,
              help="Serve every node's kubelet API on this address, one port per node "
              "from --kubelet-port (default 10250) up, instead of one loopback address per "
              "node; also the nodes' InternalIP. For shards in pods with a network of their "
              "own (`deploy`'s shards share the base node's and use loopback addresses). "
              "[env: PYKUBEMARK_KUBELET_ADDRESS]")
@click.option("--kubelet-client-ca", type=click.Path(path_type=Path, exists=True,
                                                      dir_okay=False), default=None,
              help="Accept only clients with a certificate from this CA (the apiserver's "
              "--kubelet-client-certificate); default: anonymous, as a kubelet allowing it.")
@click.option("--kubelet-netns", default=None, metavar="NETNS",
              help="Serve each node's kubelet API inside this network namespace, where the "
              "node addresses (--node-ip-base) are local, instead of on loopback (the "
              "apiserver's node proxy refuses loopback addresses). `up` makes one.")
@click.option("--node-ip-base", default=None, metavar="CIDR",
              help="The nodes' InternalIPs: the CIDR's first address + 1 + the node's index "
              "(default: the profile's node_ip_base, 127.16.0.0/12).")
@click.option("--watch-kubeconfig", type=click.Path(path_type=Path, exists=True,
                                                     dir_okay=False), default=None,
              help="--fidelity lite: credentials for the shared watches of all pods and nodes "
              "(default: the first node's; since Kubernetes 1.32 a node may watch only its "
              "own pods, so per-node identities need this).")
@click.option("--kubelet-version", default=None, metavar="X.Y.Z",
              help="Act as this release's kubelet and kube-proxy (default: the apiserver's "
              "own version, from /version).")
@click.option("-v", "--verbose", is_flag=True, help="Log every failed request.")
def hollow(kubeconfig: Path | None, proxy_kubeconfig: Path | None, nodes: int, prefix: str,
           fidelity: str | None, processes: int, profile_file: Path | None, events: bool | None,
           endpoint_slices: bool, register_rate: float | None, engine: str,
           node_credentials: str, cert_dir: Path | None, delete_nodes_on_exit: bool,
           supervise: bool, restarts_file: Path | None, transport: str, content_type: str,
           pod_name: str | None, total_nodes: int | None, heartbeat_file: Path | None,
           chaos_file: Path | None, kubelet_api: bool | None, kubelet_port: int,
           kubelet_address: str | None, kubelet_client_ca: Path | None,
           kubelet_netns: str | None, node_ip_base: str | None,
           watch_kubeconfig: Path | None, kubelet_version: str | None,
           verbose: bool) -> None:
    """Run hollow nodes (kubelet + kube-proxy each) against a cluster until Ctrl-C."""
    import logging
    import sys

    from pykubemark.hollow.fleet import FleetOptions, run_fleet
    from pykubemark.hollow.kubelet_api import ApiOptions
    from pykubemark.kube.config import load_kubeconfig
    from pykubemark.kube.probe import check_server, may

    if pod_name is not None:
        from pykubemark.deploy.manifests import shard_prefix

        try:
            prefix, ordinal = shard_prefix(prefix, pod_name)
        except ValueError as exc:
            raise UserError(f"--shard-from-pod-name: {exc}") from None
        if total_nodes is not None:
            nodes = min(nodes, total_nodes - ordinal * nodes)
            if nodes <= 0:
                raise UserError(f"shard {ordinal} has no nodes of --total-nodes {total_nodes}")
    rate = _register_rate(engine, register_rate)
    if engine == "kubemark":
        _refuse_pykubemark_only(fidelity=fidelity, processes=processes != 1,
                                profile=profile_file, events=events is not None,
                                endpoint_slices=endpoint_slices,
                                delete_nodes_on_exit=delete_nodes_on_exit,
                                kubelet_api=kubelet_api is not None,
                                kubelet_port=bool(kubelet_port),
                                kubelet_address=kubelet_address,
                                kubelet_client_ca=kubelet_client_ca)
        _hollow_kubemark(kubeconfig, proxy_kubeconfig, nodes, prefix, rate)
        return
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    api = ApiOptions(enabled=kubelet_api is not False, port=kubelet_port,
                     address=kubelet_address or None, client_ca=kubelet_client_ca,
                     netns=kubelet_netns)
    if api.enabled and api.address:
        import ipaddress

        try:
            ipaddress.ip_address(api.address)
        except ValueError:
            raise UserError(f"--kubelet-address {api.address!r} is not an IP address") from None
    elif api.enabled:
        # Before anything else: the addresses come from the profile, not the release.
        _check_node_addresses(_profile(profile_file, fidelity, events, endpoint_slices,
                                       node_ip_base=node_ip_base), nodes, kubelet_netns)
    config = load_kubeconfig(kubeconfig)
    csr = {"verb": "create", "resource": "certificatesigningrequests",
           "group": "certificates.k8s.io"}
    if node_credentials == "auto":
        node_credentials = ("bootstrap" if may(config, **csr)
                            and not may(config, "create", "nodes") else "shared")
    version = check_server(config, **csr) if node_credentials == "bootstrap" \
        else check_server(config)
    release = _kubelet_release(kubelet_version, version)
    profile = _profile(profile_file, fidelity, events, endpoint_slices, release,
                       node_ip_base=node_ip_base)
    if profile.fidelity == "lite" and node_credentials == "bootstrap" \
            and watch_kubeconfig is None and release.minor_version >= (1, 32):
        raise UserError("--fidelity lite with per-node identities needs --watch-kubeconfig "
                        "(a user allowed to watch every pod and node): since Kubernetes 1.32 "
                        "a node may watch only its own pods")
    if proxy_kubeconfig is not None:
        check_server(load_kubeconfig(proxy_kubeconfig), verb="watch", resource="endpoints")
    elif node_credentials == "bootstrap" and not may(config, "watch", "endpoints"):
        raise UserError(f"the user of {config.source} bootstraps node certificates but may not "
                        "watch endpoints: give the hollow kube-proxies their own credentials "
                        "with --proxy-kubeconfig (e.g. system:kube-proxy)")
    identity = ("per-node identities (TLS bootstrap)" if node_credentials == "bootstrap"
                else "one shared identity")
    err_console.print(
        f"{nodes} hollow nodes ({profile.fidelity}, {identity}, as kubelet "
        f"{profile.kubelet_version}) against {config.server} "
        f"(Kubernetes {version.get('gitVersion', '?')}), {processes} process(es); Ctrl-C stops"
    )
    run_fleet(FleetOptions(kubeconfig=kubeconfig, proxy_kubeconfig=proxy_kubeconfig,
                           nodes=nodes, prefix=prefix, processes=processes,
                           register_rate=rate, profile=profile,
                           delete_nodes_on_exit=delete_nodes_on_exit, supervise=supervise,
                           restarts_file=restarts_file, transport=transport,
                           content_type=content_type, node_credentials=node_credentials,
                           cert_dir=cert_dir, heartbeat_file=heartbeat_file,
                           chaos_file=chaos_file, kubelet_api=api,
                           watch_kubeconfig=watch_kubeconfig))


def _kubelet_release(asked: str | None, server_version: dict[str, str]):
    """The release the hollow nodes act as: --kubelet-version, else the apiserver's."""
    from pykubemark.provision.releases import Release, parse_release

    if asked is not None:
        return parse_release(asked, what="--kubelet-version")
    text = server_version.get("gitVersion", "")
    try:
        return Release.parse(text)
    except ValueError:
        raise UserError(f"the apiserver's /version says '{text}', not a Kubernetes release; "
                        "name one with --kubelet-version") from None


def _hollow_kubemark(kubeconfig: Path | None, proxy_kubeconfig: Path | None, nodes: int,
                     prefix: str, rate: float) -> None:
    """`hollow --engine kubemark`: Go hollow nodes in the foreground until Ctrl-C."""
    from pykubemark.engines.gokubemark import (
        GoFleet,
        default_log_dir,
        require_runtime,
        run_foreground,
    )
    from pykubemark.kube.config import load_kubeconfig
    from pykubemark.kube.probe import check_server
    from pykubemark.provision.binaries import find_kubemark

    kubemark = require_runtime(find_kubemark())
    config = load_kubeconfig(kubeconfig)
    version = check_server(config)
    if proxy_kubeconfig is not None:
        check_server(load_kubeconfig(proxy_kubeconfig), verb="watch", resource="endpoints")
    source = Path(config.source)
    if not source.is_file():
        raise UserError(f"--engine kubemark needs one kubeconfig file (--kubeconfig), not "
                        f"{config.source}")
    fleet = GoFleet(kubemark=kubemark, kubelet_kubeconfig=source,
                    proxy_kubeconfig=proxy_kubeconfig or source, nodes=nodes,
                    log_dir=default_log_dir(prefix), prefix=prefix,
                    start_interval=1 / rate if rate else 0.0, die_with_parent=True)
    err_console.print(
        f"{nodes} Go kubemark hollow nodes against {config.server} "
        f"(Kubernetes {version.get('gitVersion', '?')}), logs in {fleet.log_dir}; Ctrl-C stops"
    )

    def progress(message: str) -> None:
        if message.endswith(f"{nodes}/{nodes}") or "Ctrl-C" in message:
            err_console.print(message)

    run_foreground(fleet, progress)


@cli.command()
@click.argument("heartbeat_file", type=click.Path(path_type=Path))
@click.option("--max-age", type=click.FloatRange(0), default=50.0, show_default=True,
              help="Seconds.")
def alive(heartbeat_file: Path, max_age: float) -> None:
    """Exit 0 if `hollow --heartbeat-file` touched HEARTBEAT_FILE in the last --max-age
    seconds (the liveness probe of the shard pods of `deploy`), else 1."""
    import time

    try:
        age = time.time() - heartbeat_file.stat().st_mtime
    except OSError:
        click.echo(f"no heartbeat file {heartbeat_file}", err=True)
        raise SystemExit(1) from None
    if age > max_age:
        click.echo(f"last heartbeat {age:.0f}s ago: the nodes stopped renewing their leases",
                   err=True)
        raise SystemExit(1)


# --- hollow nodes as pods on a base cluster: deploy, deploy status, undeploy ---------------
base_kubeconfig_option = click.option(
    "--base-kubeconfig", type=click.Path(path_type=Path), default=None,
    help="Kubeconfig of the base cluster that runs the shard pods (default: $KUBECONFIG, "
    "~/.kube/config).")
target_kubeconfig_option = click.option(
    "--kubeconfig", type=click.Path(path_type=Path), default=None,
    help="Kubeconfig of the target cluster the hollow nodes join (copied into a Secret, "
    "certificate and token files inlined).")
namespace_option = click.option("--namespace", default="pykubemark", show_default=True,
                                help="Namespace on the base cluster.")


@cli.group(invoke_without_command=True)
@base_kubeconfig_option
@target_kubeconfig_option
@click.option("--context", default=None, help="Context of the target kubeconfig.")
@click.option("--nodes", type=click.IntRange(1, 10_000_000), default=None,
              help="Hollow nodes in all (required).")
@click.option("--nodes-per-pod", type=click.IntRange(1, 100_000), default=100,
              show_default=True, help="Nodes per shard pod; ceil(N/M) pods.")
@namespace_option
@click.option("--image", default=None,
              help="Image with pykubemark (default: localhost/pykubemark:VERSION, as made by "
              "`pykubemark image build` and imported on the base's nodes).")
@click.option("--image-pull-policy", type=click.Choice(["IfNotPresent", "Always", "Never"]),
              default="IfNotPresent", show_default=True)
@click.option("--prefix", default="shard", show_default=True,
              help="Node names are PREFIX-K-I: shard K (the pod's ordinal), node I.")
@click.option("--fidelity", type=click.Choice(["kubelet", "lite"]), default="kubelet",
              show_default=True)
@click.option("--wait", type=click.FloatRange(0), default=300.0, show_default=True,
              help="Seconds to wait for every shard pod to be Ready (0: do not wait).")
@click.option("--dry-run", is_flag=True, help="Print the manifests; contact no cluster.")
@click.option("-o", "--output", type=click.Choice(["yaml"]), default="yaml",
              help="Format of --dry-run.")
@click.pass_context
def deploy(ctx: click.Context, base_kubeconfig: Path | None, kubeconfig: Path | None,
           context: str | None, nodes: int | None, nodes_per_pod: int, namespace: str,
           image: str | None, image_pull_policy: str, prefix: str, fidelity: str, wait: float,
           dry_run: bool, output: str) -> None:
    """Run hollow nodes as pods of a StatefulSet on a base cluster, joining a target cluster.

    \b
    Each of the ceil(N/M) shard pods runs `pykubemark hollow` for M nodes named
    PREFIX-K-0.. (K: the pod's ordinal, stable across restarts), with:
    - hostNetwork: true, so that a target apiserver on 127.0.0.1 of the base node
      (a single-machine setup) is reachable;
    - requests sized from the measured cost of an idle hollow node (README, "per hollow
      node", benchmarks/cost.py: 0.52 MiB RSS, 0.20 millicores): 96 MiB + 2 x 0.52 MiB
      and 20m + 2 x 0.2m per node; memory limit 2 x the request, CPU limit 4 x the request
      but at least one core (a throttled shard would renew its leases late);
    - a liveness probe (`pykubemark alive`) that fails when the shard's nodes stopped
      renewing their leases for 50 s, and a 30 s grace period on SIGTERM.
    Objects are created in order and deleted again if anything fails (a refused object,
    an image the base's nodes cannot pull): nothing half-created is left.
    """
    if ctx.invoked_subcommand is not None:
        return
    from pykubemark.deploy import DeploySpec
    from pykubemark.deploy import deploy as do_deploy
    from pykubemark.deploy import dry_run as manifests_yaml
    from pykubemark.deploy.manifests import DEFAULT_IMAGE

    if nodes is None:
        raise UserError("deploy: --nodes is required")
    spec = DeploySpec(nodes=nodes, nodes_per_pod=min(nodes_per_pod, nodes), namespace=namespace,
                      image=image or DEFAULT_IMAGE, prefix=prefix, fidelity=fidelity,
                      image_pull_policy=image_pull_policy)
    if dry_run:
        click.echo(manifests_yaml(spec, kubeconfig, context), nl=False)
        return
    with err_console.status("deploying") as shown:
        do_deploy(spec, base_kubeconfig, kubeconfig, context, wait=wait or None,
                  on_progress=shown.update)
    console.print(f"deployed {spec.nodes} hollow nodes in {spec.shards} shard pods "
                  f"(namespace {namespace}); `pykubemark deploy status` shows them")


@deploy.command(name="status")
@base_kubeconfig_option
@click.option("--kubeconfig", type=click.Path(path_type=Path), default=None,
              help="Kubeconfig of the target (default: the one in the deployment's Secret).")
@click.option("--context", default=None, help="Context of the target kubeconfig.")
@namespace_option
def deploy_status(base_kubeconfig: Path | None, kubeconfig: Path | None, context: str | None,
                  namespace: str) -> None:
    """Shards, nodes per shard and Ready nodes on the target."""
    from pykubemark.deploy import status as read_status

    deployed, ready = read_status(base_kubeconfig, kubeconfig, context, namespace, "pykubemark")
    spec = deployed.spec
    table = Table(title=f"{spec.nodes} hollow nodes in {spec.shards} shards "
                  f"(namespace {namespace})",
                  caption=ready if isinstance(ready, str) else None)
    for column in ("shard", "pod", "phase", "restarts", "nodes", "ready on target"):
        table.add_column(column)
    for ordinal in range(spec.shards):
        pod = deployed.pods.get(ordinal)
        statuses = (pod or {}).get("status", {}).get("containerStatuses") or []
        table.add_row(str(ordinal), pod["metadata"]["name"] if pod else "-",
                      (pod or {}).get("status", {}).get("phase", "-"),
                      str(sum(c.get("restartCount", 0) for c in statuses)),
                      str(spec.shard_nodes(ordinal)),
                      "?" if isinstance(ready, str) else str(ready.get(ordinal, 0)))
    console.print(table)


@cli.command()
@base_kubeconfig_option
@click.option("--kubeconfig", type=click.Path(path_type=Path), default=None,
              help="Kubeconfig of the target (default: the one in the deployment's Secret).")
@click.option("--context", default=None, help="Context of the target kubeconfig.")
@namespace_option
@click.option("--delete-nodes", is_flag=True, help="Also delete the Node objects on the target.")
def undeploy(base_kubeconfig: Path | None, kubeconfig: Path | None, context: str | None,
             namespace: str, delete_nodes: bool) -> None:
    """Remove what `deploy` created on the base cluster (and the target's Nodes)."""
    from pykubemark.deploy import undeploy as do_undeploy

    with err_console.status("undeploying") as shown:
        deleted, nodes = do_undeploy(base_kubeconfig, kubeconfig, context, namespace,
                                     "pykubemark", delete_nodes=delete_nodes,
                                     on_progress=shown.update)
    console.print("deleted: " + (", ".join(deleted) or "nothing (nothing was deployed)")
                  + (f"; {nodes} nodes on the target" if delete_nodes else ""))


@cli.command()
@name_option
@click.option("--purge", is_flag=True, help="Also delete the state directory (certs, logs).")
def down(name: str, purge: bool) -> None:
    """Stop every process of a local cluster."""
    import shutil

    from pykubemark.cluster.control_plane import LocalCluster

    cluster = LocalCluster.load(name)
    stopped = cluster.down()
    if stopped:
        console.print(f"cluster '{name}' stopped: {', '.join(stopped)}")
    else:
        console.print(f"cluster '{name}' was not running")
    if purge:
        shutil.rmtree(cluster.dir, ignore_errors=True)


@cli.command()
@click.argument("action", type=click.Choice([*NODE_FAILURE_ACTIONS, "clear"]))
@name_option
@click.option("--file", "chaos_path", type=click.Path(path_type=Path), default=None,
              help="The --chaos-file of a `pykubemark hollow` fleet (default: the cluster's, "
              "for nodes started by `up --nodes`).")
@click.option("--nodes", "node_names", default="", help="Comma-separated node names.")
@click.option("--fraction", type=float, default=0.0, help="Or this fraction of all nodes.")
@click.option("--after", type=float, default=0.0, help="Start in this many seconds.")
@click.option("--for", "duration", type=float, default=0.0,
              help="Seconds it lasts (default: until `chaos clear`; restart: down this "
              "long, default 0).")
@click.option("--period", type=float, default=0.0, help="flap: seconds down, then as many up.")
@click.option("--delay", type=float, default=0.0, help="slow: seconds each heartbeat is late.")
@click.option("--interval", type=float, default=0.0,
              help="chaosmonkey: seconds between rounds that each kill --fraction of the nodes.")
@click.option("--jitter", type=float, default=0.0,
              help="chaosmonkey: each interval is longer by up to this factor of itself.")
@click.option("--downtime", type=float, default=0.0,
              help="chaosmonkey: seconds a killed node stays down before it restarts.")
def chaos(action: str, name: str, chaos_path: Path | None, node_names: str, fraction: float,
          after: float, duration: float, period: float, delay: float, interval: float,
          jitter: float, downtime: float) -> None:
    """Fail hollow nodes of a running fleet: stop their heartbeats, flap them, slow them,
    restart them, or let clusterloader2's chaos monkey kill and restore a fraction of
    them every interval."""
    import datetime as dt

    from pykubemark.hollow import chaos as node_chaos

    if chaos_path is None:
        from pykubemark.cluster.control_plane import LocalCluster
        from pykubemark.cluster.hollow import chaos_file

        chaos_path = chaos_file(LocalCluster.load(name))
    if action == "clear":
        node_chaos.clear(chaos_path)
        console.print(f"node failures cleared ({chaos_path})")
        return
    nodes = [n for n in node_names.split(",") if n]
    try:
        failure = NodeFailure(action, nodes=nodes, fraction=fraction, after=after,
                              duration=duration, period=period, delay=delay,
                              interval=interval, jitter=jitter, downtime=downtime)
    except ValueError as exc:
        raise UserError(f"invalid node failure: {exc}") from None
    scheduled = node_chaos.add(chaos_path, failure)

    def clock(stamp: float | None) -> str:
        if stamp is None:
            return "until cleared"
        return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%H:%M:%S UTC")

    who = ", ".join(nodes) if nodes else f"{fraction:.0%} of the nodes"
    if action == "chaosmonkey":
        who = (f"{fraction:.0%} of {', '.join(nodes) if nodes else 'the nodes'} every "
               f"{interval:g}s (+{jitter:.0%}), down {downtime:g}s each")
    console.print(f"{action} {who}: from {clock(scheduled.start)} to "
                  f"{clock(scheduled.end)} ({chaos_path})")


@cli.command()
@click.option("--name", default=None, help="One cluster (default: all).")
def status(name: str | None) -> None:
    """Show each component of the local clusters: pid, port, health."""
    from pykubemark.cluster.control_plane import LocalCluster
    from pykubemark.cluster.state import all_names

    names = [name] if name else all_names()
    if not names:
        console.print("no clusters")
        return
    for cluster_name in names:
        cluster = LocalCluster.load(cluster_name)
        table = Table(title=f"{cluster_name}  {cluster.state.server}",
                      caption=f"kubeconfig: {cluster.state.kubeconfig}")
        for column in ("component", "pid", "port", "health", "restarts"):
            table.add_column(column)
        for row in cluster.status():
            table.add_row(str(row["component"]), str(row["pid"] or "-"),
                          str(row["port"] or "-"), str(row["health"]), str(row["restarts"]))
        console.print(table)
        if cluster.state.real_nodes:
            _real_nodes_table(cluster)


def _real_nodes_table(cluster) -> None:
    """Each real node's address, namespace, containerd socket and what it costs."""
    from pykubemark.cluster.real_node import usage

    table = Table(title=f"{cluster.state.name}: real nodes", caption="agents: kubelet, "
                  "containerd and its shims, kube-proxy; CPU %: of one core over 1 s; "
                  "CPU s: since start")
    for column in ("node", "address", "netns", "containerd socket", "agents RSS MiB",
                   "agents CPU %", "agents CPU s", "containers", "containers RSS MiB"):
        table.add_column(column, overflow="fold")
    for row in usage(cluster.state):
        table.add_row(str(row["node"]), str(row["address"]), str(row["netns"]),
                      str(row["runtime"]), f"{row['agents_rss_mib']:.1f}",
                      f"{row['agents_cpu_percent']:.1f}", f"{row['agents_cpu_seconds']:.1f}",
                      str(row["containers"]), f"{row['containers_rss_mib']:.1f}")
    console.print(table)


@cli.command()
@name_option
@click.argument("component")
@click.option("--downtime", type=click.FloatRange(0, 3600), default=0.0, show_default=True,
              help="Seconds to stay down before starting again.")
@click.option("--signal", "how", type=click.Choice(["kill", "term"]), default="kill",
              show_default=True, help="kill: SIGKILL, as a crash; term: SIGTERM, a clean stop.")
def restart(name: str, component: str, downtime: float, how: str) -> None:
    """Stop one component of a local cluster and start it again with the same flags.

    COMPONENT: etcd, kube-apiserver, kube-scheduler, kube-controller-manager or hollow.
    Returns once it is healthy again.
    """
    from pykubemark.cluster.control_plane import LocalCluster

    cluster = LocalCluster.load(name)
    with err_console.status(f"restarting {component} of cluster '{name}'"):
        proc = cluster.restart(component, downtime=downtime, kill=how == "kill")
    console.print(f"{proc.name} of cluster '{name}' restarted: pid {proc.pid}"
                  + (", healthy" if proc.health_url else ""))


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@name_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def kubectl(name: str, args: tuple[str, ...]) -> None:
    """Run kubectl against a local cluster: pykubemark kubectl --name N -- get nodes."""
    import os

    from pykubemark.cluster.state import load
    from pykubemark.provision.binaries import find_kubectl

    state = load(name)
    binary = find_kubectl()
    if binary is None:
        raise UserError("no kubectl found (run `pykubemark provision`)")
    os.execv(binary, [str(binary), "--kubeconfig", state.kubeconfig, *args])


# -- load, measurements, reports ----------------------------------------------------------
def _key_values(pairs: tuple[str, ...], option: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"{option} {pair}: expected KEY=VALUE")
        out[key] = value
    return out


@cli.command(name="run")
@click.argument("scenario")
@click.option("--cluster", "cluster_name", default=None,
              help="A local cluster started by `pykubemark up` (adds process and etcd metrics).")
@click.option("--kubeconfig", type=click.Path(path_type=Path), default=None,
              help="Kubeconfig of any cluster (default: $KUBECONFIG merged, ~/.kube/config).")
@click.option("--context", default=None, help="Context of the kubeconfig to use.")
@click.option("--nodes", type=click.IntRange(1, 1_000_000), default=None,
              help="Size the load for this many nodes (default: the Ready nodes).")
@click.option("--pods-per-node", type=click.IntRange(0, 10_000), default=None,
              help="Scenario parameter pods_per_node (density and load: 30).")
@click.option("--qps", type=click.FloatRange(0, min_open=True), default=None,
              help="Scenario parameter qps: pods created (changed, deleted) per second.")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="Any other scenario parameter (see `pykubemark scenario show`).")
@click.option("--node-selector", "node_selector", multiple=True, metavar="KEY=VALUE",
              help="Put the pods only on nodes with this label (and count only those).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output directory (default: ./pykubemark-<scenario>-<time>).")
@click.option("--test-name", default=None, help="Name in the result files (default: scenario).")
@click.option("--keep", is_flag=True, help="Leave the objects of the run in the cluster.")
@click.option("-q", "--quiet", is_flag=True, help="No live display: one line per phase (CI logs).")
def run_command(scenario: str, cluster_name: str | None, kubeconfig: Path | None,
                context: str | None, nodes: int | None, pods_per_node: int | None,
                qps: float | None, sets: tuple[str, ...], node_selector: tuple[str, ...],
                out: Path | None, test_name: str | None, keep: bool, quiet: bool) -> None:
    """Run a scenario (density, load, or a YAML file) with its SLO measurements."""
    import time

    from pykubemark.kube.config import load_kubeconfig
    from pykubemark.load.scenario import load_scenario, parse_overrides
    from pykubemark.runner import RunOptions, Target, run

    if cluster_name and (kubeconfig or context):
        raise UserError("--cluster and --kubeconfig/--context name two different clusters: "
                        "pass one")
    loaded = load_scenario(scenario)
    overrides = parse_overrides(sets)
    if pods_per_node is not None:
        overrides["pods_per_node"] = pods_per_node
    if qps is not None:
        overrides["qps"] = qps
    target = (Target.from_local(cluster_name) if cluster_name
              else Target(config=load_kubeconfig(kubeconfig, context)))
    out = out or Path(f"pykubemark-{loaded.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    options = RunOptions(scenario=loaded, scenario_source=scenario, target=target, out=out,
                         overrides=overrides, nodes=nodes, keep=keep, test_name=test_name or "",
                         node_selector=_key_values(node_selector, "--node-selector"))
    from pykubemark.display import RunDisplay

    display = RunDisplay(err_console, quiet=quiet)
    try:
        with display:
            result = run(options, on_progress=display.update, on_ready=display.ready)
    except KeyboardInterrupt:
        err_console.print("interrupted before the run started: nothing was created")
        raise SystemExit(130) from None
    display.summary(result)
    summary = result.summary
    if summary.get("status") == "interrupted":
        raise SystemExit(130)
    if str(summary.get("status", "")).startswith("failed"):
        raise SystemExit(3)
    if summary.get("verdict") == "fail":
        raise SystemExit(1)


@cli.group()
def scenario() -> None:
    """Built-in scenarios: list them, or print one to copy and change."""


@scenario.command(name="list")
def scenario_list() -> None:
    """Names and descriptions of the built-in scenarios."""
    from pykubemark.load.scenario import builtin_names, load_scenario

    for name in builtin_names():
        console.print(f"[bold]{name}[/]: {load_scenario(name).description}")


@scenario.command(name="show")
@click.argument("name")
def scenario_show(name: str) -> None:
    """Print a scenario's YAML: pykubemark scenario show density > my.yaml"""
    from pykubemark.load.scenario import scenario_text

    click.echo(scenario_text(name)[0], nl=False)


# --- reports of a run: `report`, `compare` ---------------------------------------------------

_VERDICT_STYLE = {"regression": "bold red", "improvement": "green", "ok": "",
                  "only in baseline": "yellow", "only in candidate": "yellow"}


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path))
def report(directory: Path) -> None:
    """(Re)render DIRECTORY/report.html from the files of a run."""
    from pykubemark.report.html import write_html

    console.print(str(write_html(directory)))


@cli.command()
@click.argument("baseline")
@click.argument("candidate")
@click.option("--tolerance", type=float, default=10.0, show_default=True,
              help="Change (in %) beyond which a metric is a regression or an improvement.")
@click.option("--tolerances", "tolerances_file", type=click.Path(path_type=Path), default=None,
              help="YAML file: glob pattern of metric names -> tolerance in %, or -> "
              "{tolerance: %, floor: absolute value}.")
@click.option("--html", "html_out", type=click.Path(path_type=Path), default=None,
              help="Also write the comparison as an HTML page to this file.")
def compare(baseline: str, candidate: str, tolerance: float, tolerances_file: Path | None,
            html_out: Path | None) -> None:
    """Compare two runs; exit code 1 on any regression.

    BASELINE and CANDIDATE are `run --out` directories, directories of clusterloader2
    result files, single perfdata files or quoted glob patterns of them.
    """
    from pykubemark.report.compare import compare_runs, load_run, load_tolerances

    overrides = load_tolerances(tolerances_file) if tolerances_file else {}
    result = compare_runs(load_run(baseline), load_run(candidate), tolerance, overrides)
    table = Table(title=f"baseline {result.baseline.label}  vs  candidate "
                  f"{result.candidate.label}", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("metric (unit)", overflow="fold", min_width=16)
    for column, width in (("baseline", 8), ("candidate", 9), ("change", 7), ("tol.", 4)):
        table.add_column(column, justify="right", no_wrap=True, min_width=width)
    table.add_column("better", no_wrap=True, min_width=6)
    table.add_column("verdict", overflow="fold", min_width=11)

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.4g}"

    for row in result.rows:
        change = "-" if row.change_pct is None else f"{row.change_pct:+.1f}%"
        style = _VERDICT_STYLE[row.verdict]
        table.add_row(Text(f"{row.name} ({row.unit})"), number(row.baseline),
                      number(row.candidate),
                      change, f"{row.tolerance:g}%", "higher" if row.higher_is_better else "lower",
                      (f"[{style}]{row.verdict}[/]" if style else row.verdict)
                      + (f", {row.note}" if row.note else ""))
    # a CI log is not a terminal: give the table room, so that names are never folded
    longest = max((len(row.name) + len(row.unit) for row in result.rows), default=0)
    out = console if console.is_terminal else Console(width=max(160, longest + 80))
    out.print(table)
    counts = ", ".join(f"{n} {verdict}" for verdict, n in result.counts().items() if n)
    console.print(counts)
    if html_out is not None:
        from pykubemark.report.html import write_compare_html

        console.print(f"comparison page: {write_compare_html(result, html_out)}")
    if result.regressions:
        raise SystemExit(1)


@cli.group(name="real-nodes")
def real_nodes_group() -> None:
    """Real nodes of a running local cluster (see `up --real-nodes`)."""


@real_nodes_group.command(name="add")
@name_option
@click.option("--count", type=click.IntRange(1, 250), default=1, show_default=True,
              help="Real nodes to add.")
@click.option("--load-image", "load_images", multiple=True, type=click.Path(path_type=Path),
              help="Also import this image archive into the new nodes' containerd.")
def real_nodes_add(name: str, count: int, load_images: tuple[Path, ...]) -> None:
    """Add real nodes NAME-node-I (each with its own network namespace, cgroup,
    containerd, kubelet and kube-proxy) to a running local cluster; returns once they
    are Ready. On failure or Ctrl-C the nodes it made are undone, the cluster runs on."""
    from pykubemark.cluster.control_plane import LocalCluster
    from pykubemark.cluster.real_node import start_real_nodes
    from pykubemark.provision import ensure_binaries
    from pykubemark.provision.releases import Release

    cluster = LocalCluster.load(name)
    if cluster.state.options.get("stopped") or not cluster.state.running():
        raise UserError(f"cluster '{name}' is not running (pykubemark up --name {name})")
    release, bin_dir = (cluster.state.options.get(k) for k in ("release", "bin_dir"))
    binaries = ensure_binaries(Path(str(bin_dir)) if bin_dir else None,
                               release=Release.parse(str(release)) if release else None,
                               allow_build=False)
    try:
        with _interruptible(name), err_console.status(f"adding real nodes to '{name}'") as shown:
            added = start_real_nodes(cluster, binaries, count, images=load_images,
                                     progress=shown.update)
    except KeyboardInterrupt:
        from pykubemark.errors import Interrupted

        raise Interrupted(f"interrupted; the nodes being added to cluster '{name}' were "
                          "removed") from None
    console.print(f"cluster [bold]{name}[/]: real node(s) {', '.join(added)} Ready")


@cli.group()
def image() -> None:
    """The pykubemark container image (for `deploy`)."""


@image.command(name="build")
@click.option("--out", type=click.Path(path_type=Path), default=Path("pykubemark-image.tar"),
              show_default=True, help="OCI archive to write.")
def image_build(out: Path) -> None:
    """Build the image from a Debian minbase root (debootstrap) and the pinned wheels.

    Needs root and only Debian's and PyPI's registries. The root is cached in
    ~/.cache/pykubemark/image. Load the archive with `ctr -n k8s.io images import FILE`,
    `podman load -i FILE` or `docker load -i FILE`; it is named
    localhost/pykubemark:VERSION, the default image of `deploy`.
    """
    from pykubemark.image.build import build_image, project_dir

    with err_console.status("building the image") as shown:
        built = build_image(project_dir(), out, shown.update)
    layers = ", ".join(f"{layer['bytes'] / 2**20:.1f} MiB" for layer in built["layers"])
    console.print(f"{built['name']}: {out} ({built['archive_bytes'] / 2**20:.1f} MiB; "
                  f"gzipped layers {layers})")


@image.command(name="load")
@name_option
@click.argument("archive", type=click.Path(path_type=Path))
def image_load(name: str, archive: Path) -> None:
    """Import an image archive into every real node of a local cluster."""
    from pykubemark.cluster.control_plane import LocalCluster
    from pykubemark.cluster.real_node import load_image

    cluster = LocalCluster.load(name)
    has_nodes = cluster.state.real_nodes or cluster.state.options.get("real_node")
    if not has_nodes or not cluster.state.running():
        raise UserError(f"cluster '{name}' has no running real node (up --real-node(s))")
    count = load_image(cluster, archive)
    console.print(f"imported {archive} into {count} real node(s) of cluster '{name}'")


def main() -> None:
    try:
        cli(standalone_mode=True)
    except UserError as exc:  # raised outside click's own handling
        exc.show()
        raise SystemExit(2) from None
