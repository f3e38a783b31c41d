"""KWOK (sigs.k8s.io/kwok) as an engine: one ``kwok`` controller plays every node.

Where pykubemark and the Go kubemark run a kubelet (and a proxy) per node, KWOK runs
one controller that watches every Node, every Pod bound to a node and every node Lease,
and PATCHes their statuses as its Stages say (behaviour as data, applied as objects of
KWOK's Stage CRD). The engine does what ``kwokctl create cluster`` and ``kwokctl scale
node`` do against a cluster that is already there:

1. applies KWOK's Stage CRD and the Stages kwokctl uses by default (the module's
   ``kustomize/stage/fast``: node-initialize, node-heartbeat-with-lease, pod-ready,
   pod-complete, pod-delete), copied from the module when KWOK was built
   (provision/kwok.py);
2. on a local cluster, binds KWOK's own ClusterRole and FlowSchema (the module's
   ``kustomize/rbac``: exempt from API priority and fairness, as KWOK deploys itself)
   to the controller's user, ``kwok:controller`` (`control_plane.USERS`), whose token
   the controller's kubeconfig carries; `hollow --engine kwok` runs it as the
   kubeconfig's user instead;
3. starts ``kwok --enable-crds=Stage`` for the nodes annotated ``kwok.x-k8s.io/node:
   fake``, renewing each node's Lease every 10 s as a kubelet does
   (``--node-lease-duration-seconds=40``);
4. creates the Node objects PREFIX-0 .. PREFIX-N-1 from kwokctl's node template
   (``kustomize/kwokctl/resource/node.yaml``) as the cluster's admin, as kwokctl does,
   and waits until KWOK has made each Ready.

Nodes get loopback InternalIPs of their own (127.48.0.0/12, apart from pykubemark's
127.16.0.0/12): nothing listens there, and nothing leaves the machine if anyone tries.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pykubemark.cluster import processes
from pykubemark.engines.base import (
    HollowOptions,
    NodeOptions,
    Progress,
    refuse_options,
    register_rate,
    stop_recorded,
)
from pykubemark.errors import UserError
from pykubemark.hollow.objects import nth_address, nth_subnet

if TYPE_CHECKING:
    from pykubemark.cluster.control_plane import LocalCluster
    from pykubemark.cluster.state import Proc
    from pykubemark.kube.client import Client
    from pykubemark.kube.config import KubeConfig
    from pykubemark.provision.binaries import Binaries
    from pykubemark.provision.kwok import Kwok

#: The process's name in the cluster's state.
PROCESS = "kwok"
#: Its key in `control_plane.USERS` (user ``kwok:controller``).
USER_KEY = "kwok-controller"
ANNOTATION = "kwok.x-k8s.io/node"
#: What kwokctl sets (and a kubelet's default): a Lease renewed every 40/4 = 10 s.
LEASE_SECONDS = 40
NODE_IP_BASE = "127.48.0.0/12"
POD_CIDR_BASE = "10.128.0.0/10"
#: kwokctl's node template's parameters (kustomize/kwokctl/resource/node.yaml).
ALLOCATABLE = {"cpu": "32", "memory": "256Gi", "pods": "110"}
FIELD_MANAGER = "pykubemark"
APPLY_PATCH = "application/apply-patch+yaml"


def node_object(name: str, index: int) -> dict[str, Any]:
    """What ``kwokctl scale node`` creates (its template, IPv4 only, plus a Hostname
    address and pykubemark's address ranges): annotated for KWOK
    to manage, labelled ``type: kwok``, untainted, with kwokctl's capacity; KWOK's
    node-initialize Stage writes the conditions and the node info."""
    pod_cidr = nth_subnet(POD_CIDR_BASE, index, 24)
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0",
                            "metrics.k8s.io/resource-metrics-path":
                                f"/metrics/nodes/{name}/metrics/resource"},
            "labels": {"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name,
                       "kubernetes.io/os": "linux", "kubernetes.io/role": "agent",
                       "node-role.kubernetes.io/agent": "", "type": "kwok"},
        },
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {
            # Both, as a kubelet reports them: KWOK's node-initialize Stage rewrites the
            # list (dropping what it has) unless it finds an InternalIP and a Hostname.
            "addresses": [{"type": "InternalIP", "address": nth_address(NODE_IP_BASE, index)},
                          {"type": "Hostname", "address": name}],
            "allocatable": dict(ALLOCATABLE), "capacity": dict(ALLOCATABLE),
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux"},
        },
    }


def kwok_argv(kwok: Kwok, kubeconfig: Path, workdir: Path, port: int) -> list[str]:
    """The controller's command line. ``KWOK_WORKDIR`` keeps it from reading a user's
    ``~/.kwok/kwok.yaml``; `env` execs it, so the recorded pid is the controller's and
    `restart` runs it the same way. Its HTTP server (health, no node port) listens on
    loopback only."""
    return ["env", f"KWOK_WORKDIR={workdir}", str(kwok.binary),
            f"--kubeconfig={kubeconfig}",
            f"--manage-nodes-with-annotation-selector={ANNOTATION}=fake",
            "--enable-crds=Stage",
            f"--node-lease-duration-seconds={LEASE_SECONDS}",
            f"--server-address=127.0.0.1:{port}"]


# -- objects ---------------------------------------------------------------------------
def object_path(obj: dict[str, Any]) -> str:
    """A cluster-scoped object's path (every object the engine applies is one)."""
    version = obj["apiVersion"]
    base = f"/api/{version}" if "/" not in version else f"/apis/{version}"
    return f"{base}/{obj['kind'].lower()}s/{obj['metadata']['name']}"


def rbac_objects(kwok: Kwok, user: str) -> list[dict[str, Any]]:
    """KWOK's ClusterRole, bound to ``user``, and its FlowSchema for ``user``: the
    module binds both to its ServiceAccount (kube-system/kwok-controller)."""
    found: list[dict[str, Any]] = []
    subject = {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}
    for obj in kwok.objects("rbac"):
        if obj.get("kind") == "ClusterRole":
            name = obj["metadata"]["name"]
            found += [obj, {"apiVersion": "rbac.authorization.k8s.io/v1",
                            "kind": "ClusterRoleBinding", "metadata": {"name": name},
                            "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                        "kind": "ClusterRole", "name": name},
                            "subjects": [subject]}]
        elif obj.get("kind") == "FlowSchema":
            for rule in obj["spec"].get("rules") or []:
                rule["subjects"] = [{"kind": "User", "user": {"name": user}}]
            found.append(obj)
    return found


async def apply(client: Client, obj: dict[str, Any], timeout: float = 30.0) -> None:
    """Server-side apply; a kind the apiserver does not serve yet (a CRD just made) is
    asked again until ``timeout``."""
    from pykubemark.kube.client import ApiError

    deadline = time.monotonic() + timeout
    while True:
        try:
            await client.request("PATCH", object_path(obj), body=obj,
                                 content_type=APPLY_PATCH,
                                 params={"fieldManager": FIELD_MANAGER, "force": "true"})
            return
        except ApiError as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.5)


async def established(client: Client, crd: dict[str, Any], timeout: float = 60.0) -> None:
    import orjson

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = orjson.loads(await client.get(object_path(crd))).get("status") or {}
        if any(c.get("type") == "Established" and c.get("status") == "True"
               for c in status.get("conditions") or []):
            return
        await asyncio.sleep(0.5)
    raise UserError(f"KWOK's CRD {crd['metadata']['name']} not Established after "
                    f"{timeout:.0f}s")


async def prepare(client: Client, kwok: Kwok, user: str | None) -> None:
    """RBAC for ``user`` (if given), the Stage CRD, then the Stages."""
    for obj in rbac_objects(kwok, user) if user else []:
        await apply(client, obj)
    for crd in kwok.objects("crd"):
        await apply(client, crd)
        await established(client, crd)
    for stage in kwok.objects("stages"):
        await apply(client, stage)


async def create_nodes(client: Client, names: list[str], rate: float,
                       progress: Progress) -> None:
    """POST every Node, ``rate`` a second (0: as fast as 16 at a time go); one that
    exists already is left as it is."""
    from pykubemark.kube.client import ApiError

    gate = asyncio.Semaphore(16)
    done = 0

    async def create(index: int, name: str) -> None:
        nonlocal done
        async with gate:
            try:
                await client.create("/api/v1/nodes", node_object(name, index))
            except ApiError as exc:
                if exc.status != 409:
                    raise
        done += 1
        progress(f"KWOK nodes created: {done}/{len(names)}")

    tasks = []
    for index, name in enumerate(names):
        tasks.append(asyncio.create_task(create(index, name)))
        if rate and index + 1 < len(names):
            await asyncio.sleep(1 / rate)
    await asyncio.gather(*tasks)


async def ready_count(client: Client, names: list[str]) -> int:
    import orjson

    wanted = set(names)
    # resourceVersion=0: from the watch cache, not a quorum read of every node
    items = orjson.loads(await client.get("/api/v1/nodes", {"resourceVersion": "0"}))
    return sum(1 for node in items.get("items") or []
               if node["metadata"]["name"] in wanted
               and any(c.get("type") == "Ready" and c.get("status") == "True"
                       for c in (node.get("status") or {}).get("conditions") or []))


async def wait_ready(client: Client, names: list[str], proc: Proc, progress: Progress,
                     timeout: float | None = None) -> None:
    """Until KWOK has made every node Ready; an error at once if it exits."""
    timeout = timeout if timeout is not None else 120.0 + len(names) / 10
    deadline = time.monotonic() + timeout
    while True:
        check_alive(proc)
        ready = await ready_count(client, names)
        progress(f"KWOK nodes Ready: {ready}/{len(names)}")
        if ready >= len(names):
            return
        if time.monotonic() > deadline:
            raise UserError(f"only {ready}/{len(names)} KWOK nodes Ready after "
                            f"{timeout:.0f}s (log: {proc.log})")
        await asyncio.sleep(1.0)


def check_alive(proc: Proc) -> None:
    if not proc.alive():
        raise UserError(f"kwok exited: {processes.last_lines(proc.log, 2)} (log: {proc.log})")


def bring_up(config: KubeConfig, kwok: Kwok, names: list[str], rate: float,
             progress: Progress, *, launch: Callable[[], Proc],
             user: str | None = None) -> Proc:
    """Prepare the cluster, start the controller (``launch()``: its `Proc`), create the
    nodes and wait for them Ready; API errors become one line."""
    from pykubemark.kube.client import NETWORK_ERRORS, ApiError, Client

    async def run() -> Proc:
        async with Client(config, user_agent="pykubemark-kwok") as client:
            progress("applying KWOK's Stage CRD and Stages")
            await prepare(client, kwok, user)
            proc = launch()
            await create_nodes(client, names, rate, progress)
            await wait_ready(client, names, proc, progress)
            return proc

    try:
        return asyncio.run(run())
    except ApiError as exc:
        raise UserError(f"--engine kwok, as the user of {config.source}: {exc}") from None
    except NETWORK_ERRORS as exc:
        raise UserError(f"--engine kwok: apiserver {config.server}: "
                        f"{str(exc) or type(exc).__name__}") from None


def delete_nodes(config: KubeConfig, names: list[str]) -> None:
    from pykubemark.kube.client import NETWORK_ERRORS, ApiError, Client

    async def run() -> None:
        async with Client(config, user_agent="pykubemark-kwok") as client:
            for name in names:
                try:
                    await client.delete(f"/api/v1/nodes/{name}")
                except ApiError as exc:
                    if exc.status != 404:
                        raise

    try:
        asyncio.run(run())
    except (ApiError, *NETWORK_ERRORS) as exc:
        raise UserError(f"deleting the KWOK nodes: {exc}") from None


# -- on a local cluster ----------------------------------------------------------------
def start_for_cluster(cluster: LocalCluster, kwok: Kwok, nodes: NodeOptions, rate: float,
                      progress: Progress) -> Proc:
    """`up --engine kwok`: the controller as ``kwok:controller``, recorded in the
    cluster's state so `down` stops it; returns once every node is Ready."""
    from pykubemark.cluster import ports
    from pykubemark.cluster.control_plane import USERS
    from pykubemark.kube.config import load_kubeconfig

    kubeconfig = cluster.kubeconfig_for(USER_KEY)
    if not kubeconfig.is_file():
        raise UserError(f"cluster '{cluster.state.name}' has no {USER_KEY} credentials (it "
                        f"was started by an older pykubemark): down and up it again")
    workdir = cluster.dir / "kwok"
    workdir.mkdir(exist_ok=True)
    port = ports.free_ports(1)[0]
    argv = kwok_argv(kwok, kubeconfig, workdir, port)

    def launch() -> Proc:
        return cluster.add_process(PROCESS, argv,
                                   health_url=f"http://127.0.0.1:{port}/healthz")

    return bring_up(load_kubeconfig(cluster.state.kubeconfig), kwok, nodes.names, rate,
                    progress, launch=launch, user=USERS[USER_KEY][0])


# -- in the foreground -----------------------------------------------------------------
def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def refuse_hollow_options(options: HollowOptions) -> None:
    """What `hollow` takes for a kubelet or proxy per node, or for pykubemark's fleet."""
    refuse_options("kwok", owner="pykubemark or kubemark",
                   proxy_kubeconfig=options.proxy_kubeconfig)
    refuse_options("kwok", cert_dir=options.cert_dir, supervise=options.supervise,
                   restarts_file=options.restarts_file,
                   heartbeat_file=options.heartbeat_file, chaos_file=options.chaos_file,
                   kubelet_port=bool(options.kubelet_port),
                   kubelet_address=options.kubelet_address,
                   kubelet_client_ca=options.kubelet_client_ca,
                   kubelet_netns=options.kubelet_netns, node_ip_base=options.node_ip_base,
                   watch_kubeconfig=options.watch_kubeconfig,
                   kubelet_version=options.kubelet_version)


def run_hollow(options: HollowOptions, say: Progress, check_every: float = 1.0) -> None:
    """`hollow --engine kwok`: the controller and its nodes against the kubeconfig's
    cluster, as the kubeconfig's user, until Ctrl-C or SIGTERM; then the controller
    stops (and, with --delete-nodes-on-exit, the nodes go)."""
    from pykubemark.cluster import ports
    from pykubemark.kube.config import load_kubeconfig
    from pykubemark.kube.probe import check_server
    from pykubemark.paths import state_home
    from pykubemark.provision.kwok import ensure_kwok

    nodes = options.nodes
    KwokEngine().check(nodes)
    refuse_hollow_options(options)
    kwok = ensure_kwok()
    config = load_kubeconfig(options.kubeconfig)
    version = check_server(config, permissions=[
        ("create", "", "nodes", ""),
        ("create", "apiextensions.k8s.io", "customresourcedefinitions", "")])
    source = Path(config.source)
    if not source.is_file():
        raise UserError(f"--engine kwok needs one kubeconfig file (--kubeconfig), not "
                        f"{config.source}")
    workdir = state_home() / "kwok" / nodes.prefix
    workdir.mkdir(parents=True, exist_ok=True)
    argv = kwok_argv(kwok, source.resolve(), workdir, ports.free_ports(1)[0])
    say(f"{nodes.count} KWOK {kwok.version} nodes against {config.server} (Kubernetes "
        f"{version.get('gitVersion', '?')}), log in {workdir / 'kwok.log'}")
    started: list[Proc] = []

    def launch() -> Proc:
        started.append(processes.start(PROCESS, argv, workdir / "kwok.log",
                                       die_with_parent=True))
        return started[0]

    def progress(message: str) -> None:
        if message.endswith(f" {nodes.count}/{nodes.count}"):
            say(message)

    assert nodes.register_rate is not None
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        proc = bring_up(config, kwok, nodes.names, nodes.register_rate, progress,
                        launch=launch)
        say(f"{nodes.count} KWOK nodes Ready; Ctrl-C stops")
        while True:
            check_alive(proc)
            time.sleep(check_every)
    except KeyboardInterrupt:
        pass
    finally:
        for sig in previous:  # a second Ctrl-C must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        try:
            processes.stop(started)
            if options.delete_nodes_on_exit:
                delete_nodes(config, nodes.names)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class KwokEngine:
    name = "kwok"
    title = "KWOK nodes"
    #: Node objects created per second: each is one POST, and KWOK's work per node is a
    #: status patch and a Lease.
    default_register_rate = 50.0

    def check(self, nodes: NodeOptions) -> None:
        refuse_options(self.name, fidelity=nodes.fidelity, processes=nodes.processes != 1,
                       profile=nodes.profile_file, events=nodes.events is not None,
                       endpoint_slices=nodes.endpoint_slices,
                       transport=nodes.transport != "h2",
                       content_type=nodes.content_type != "protobuf",
                       node_credentials=nodes.node_credentials != "auto",
                       kubelet_api=nodes.kubelet_api is not None)
        if nodes.count:  # the last node's ranges: each node's are known to fit
            try:
                nth_subnet(POD_CIDR_BASE, nodes.count - 1, 24)
                nth_address(NODE_IP_BASE, nodes.count - 1)
            except ValueError as exc:
                raise UserError(str(exc)) from None

    def check_runtime(self, binaries: Binaries, nodes: NodeOptions) -> None:
        """KWOK is built once per machine, like a release (minutes, shown as it goes)."""
        if nodes.count:
            from pykubemark.provision.kwok import ensure_kwok

            ensure_kwok()

    def start(self, cluster: LocalCluster, binaries: Binaries, nodes: NodeOptions,
              progress: Progress) -> None:
        from pykubemark.provision.kwok import ensure_kwok

        start_for_cluster(cluster, ensure_kwok(allow_build=False), nodes,
                          register_rate(self, nodes.register_rate), progress)

    def stop(self, cluster: LocalCluster, nodes: NodeOptions) -> list[str]:
        return stop_recorded(cluster, {PROCESS})

    def node_names(self, nodes: NodeOptions) -> list[str]:
        return nodes.names

    def run_foreground(self, options: HollowOptions, say: Progress) -> None:
        run_hollow(options, say)
