"""Many hollow nodes in one event loop, and shards of them over processes.

`kubelet` fidelity gives every node its own watches, as real nodes have; `lite` opens
one watch per resource for the whole process and routes events to nodes by name, so
the apiserver sees the lease and status traffic of N nodes but the watch load of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pykubemark import interrupts
from pykubemark.hollow import heap
from pykubemark.hollow.chaos import ChaosWatcher
from pykubemark.hollow.kubelet import IGNORE, HollowKubelet, NodeHandler
from pykubemark.hollow.kubelet_api import ApiOptions, KubeletApi, check_addresses
from pykubemark.hollow.objects import ARCH, NodeIdentity, nth_address
from pykubemark.hollow.pods import PodLifecycle
from pykubemark.hollow.profile import Profile
from pykubemark.hollow.proxy import HollowProxy, endpoints_path, proxy_watches
from pykubemark.hollow.supervisor import Supervisor
from pykubemark.kube.bootstrap import BootstrapError, NodeCredentials, cert_dir_for
from pykubemark.kube.client import NETWORK_ERRORS, ApiError, Client
from pykubemark.kube.config import KubeConfig, load_kubeconfig
from pykubemark.kube.ratelimit import UNLIMITED, TokenBucket
from pykubemark.kube.types import MetaOnly, Node, Pod
from pykubemark.kube.watch import Backoff, Reflector, cancel_all
from pykubemark.paths import state_home

log = logging.getLogger("pykubemark.hollow")


@dataclass
class FleetOptions:
    kubeconfig: Path | None
    nodes: int
    prefix: str = "hollow"
    proxy_kubeconfig: Path | None = None
    processes: int = 1
    register_rate: float = 50.0
    delete_nodes_on_exit: bool = False
    profile: Profile = field(default_factory=Profile)
    report_every: float = 30.0
    shard: int = 0
    #: Run the shards as child processes restarted when they die (always with >1).
    supervise: bool = False
    restarts_file: Path | None = None
    #: "h1": every node shares the process's aiohttp pool (a connection per watch);
    #: "h2": each hollow kubelet (heartbeat included) and each hollow proxy get one
    #: HTTP/2 connection of their own, as the Go hollow node's client-go does.
    transport: str = "h2"
    #: "protobuf": what the kubelet speaks for built-in types; "json": everything JSON.
    content_type: str = "protobuf"
    #: "shared": every kubelet uses the kubeconfig's own user; "bootstrap": each node
    #: obtains its own certificate through the CSR API with that credential.
    node_credentials: str = "shared"
    cert_dir: Path | None = None
    bootstrap_concurrency: int = 50
    #: Touched while every node renews its lease (a liveness probe reads its age).
    heartbeat_file: Path | None = None
    #: The JSON file of node failures that `pykubemark chaos` writes and the fleet polls.
    chaos_file: Path | None = None
    #: The kubelet's own HTTPS API (logs, stats, node proxy), one server per process.
    kubelet_api: ApiOptions = field(default_factory=ApiOptions)
    #: `lite`: the user of the shared watches of every pod and node (default: the first
    #: node's). Since 1.32 the Node authorizer lets a node watch only its own pods, so a
    #: fleet of per-node identities needs one that may watch them all.
    watch_kubeconfig: Path | None = None
    #: The fleet's own /metrics (hollow/metrics.py) on 127.0.0.1:metrics_port + shard.
    metrics_port: int | None = None

    def names(self) -> list[tuple[int, str]]:
        return [(i, f"{self.prefix}-{i}") for i in range(self.nodes)
                if i % self.processes == self.shard]


class PodRouter:
    """The shared pods informer of `lite` mode: one store, events routed by nodeName."""

    def __init__(self) -> None:
        self.by_node: dict[str, dict[str, Pod]] = {}
        self.kubelets: dict[str, PodLifecycle] = {}
        self.synced = False

    def subscribe(self, name: str, lifecycle: PodLifecycle) -> None:
        self.kubelets[name] = lifecycle
        if self.synced:
            lifecycle.on_list(list(self.by_node.get(name, {}).values()))

    def on_list(self, items: list[Pod]) -> None:
        self.by_node = {}
        for pod in items:
            self.by_node.setdefault(pod.spec.nodeName, {})[pod.metadata.uid] = pod
        self.synced = True
        for name, lifecycle in self.kubelets.items():
            lifecycle.on_list(list(self.by_node.get(name, {}).values()))

    def on_event(self, kind: str, pod: Pod) -> None:
        store = self.by_node.setdefault(pod.spec.nodeName, {})
        if kind == "DELETED":
            store.pop(pod.metadata.uid, None)
        else:
            store[pod.metadata.uid] = pod
        if lifecycle := self.kubelets.get(pod.spec.nodeName):
            lifecycle.on_event(kind, pod)


class NodeRouter:
    """The shared nodes informer of `lite` mode: a deleted Node re-registers."""

    def __init__(self, kubelets: dict[str, HollowKubelet]) -> None:
        self.kubelets = kubelets

    def on_list(self, items: list[Node]) -> None:
        for node in items:
            self.on_event("ADDED", node)

    def on_event(self, kind: str, obj: Node) -> None:
        kubelet = self.kubelets.get(obj.metadata.name)
        if kubelet is not None:
            NodeHandler(kubelet).on_event(kind, obj)


def _report_crash(task: asyncio.Task[Any]) -> None:
    """A node's loops never end by themselves: say so loudly if one does."""
    if not task.cancelled() and task.exception() is not None:
        log.error("a hollow node stopped: %r", task.exception(), exc_info=task.exception())


def user_agent(component: str, version: str) -> str:
    return f"{component}/{version} (linux/{ARCH}) pykubemark"


class Fleet:
    def __init__(self, options: FleetOptions, kubelet_config: KubeConfig,
                 proxy_config: KubeConfig) -> None:
        self.options = options
        self.profile = options.profile
        h2_shared = options.transport == "h2" and options.profile.fidelity == "lite"
        codec = options.content_type
        self.client = Client(kubelet_config, http2=h2_shared, content_type=codec)
        self.proxy_client = (Client(proxy_config, http2=h2_shared, content_type=codec)
                             if proxy_config is not kubelet_config else self.client)
        self._components: list[Client] = []
        self.kubelets: dict[str, HollowKubelet] = {}
        self.proxies: dict[str, HollowProxy] = {}
        self.shared: list[Reflector[Any]] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._node_tasks: dict[str, asyncio.Task[Any]] = {}
        self._pod_router = PodRouter()
        self.credentials: NodeCredentials | None = None
        if options.node_credentials == "bootstrap":
            base = options.cert_dir or state_home() / "hollow-certs"
            self.credentials = NodeCredentials(
                self.client, cert_dir_for(base, kubelet_config),
                concurrency=options.bootstrap_concurrency)
        #: One client, hence one connection pool, per node identity (bootstrap mode).
        self.node_clients: dict[str, Client] = {}
        self.api: KubeletApi | None = None
        #: Each node's InternalIP and kubelet port.
        self.endpoints: dict[str, tuple[str, int]] = {}
        self.heap = heap.Baseline()

    async def _serve_api(self, names: list[tuple[int, str]]) -> None:
        """Listen for every node of the shard before any registers: its Node object
        names the address and port the apiserver will dial."""
        addresses = {name: nth_address(self.profile.node_ip_base, index)
                     for index, name in names}
        api_options = self.options.kubelet_api
        if not api_options.enabled or not names:
            return
        if not api_options.address:
            check_addresses(addresses.values(), self.options.kubelet_api.netns)
        self.api = KubeletApi(self.kubelets, api_options,
                              client_ca_data=self.client.config.ca_data)
        self.endpoints = await self.api.start(addresses)
        log.info("shard %d: kubelet API of %d nodes, %s at %s:%d", self.options.shard,
                 len(names), names[0][1], *self.endpoints[names[0][1]])

    async def _serve_metrics(self) -> Any:
        """The shard's /metrics on metrics_port + shard; a port taken is logged, and the
        nodes run on without it."""
        if self.options.metrics_port is None:
            return None
        from pykubemark.hollow.metrics import MetricsServer

        server = MetricsServer(self, self.options.metrics_port + self.options.shard)
        try:
            await server.start()
        except OSError as exc:
            log.error("shard %d: no /metrics on port %d: %s", self.options.shard,
                      server.port, exc)
            await server.stop()
            return None
        return server

    async def kubelet_client(self, name: str) -> Client:
        """The client a node's kubelet authenticates with: its own certificate and
        connections once bootstrapped (retried like a kubelet restarted by systemd),
        else the fleet's shared one."""
        if self.credentials is None:
            return self.client
        if (client := self.node_clients.get(name)) is not None:
            return client
        backoff = Backoff(initial=1.0, cap=30.0)
        while True:
            try:
                config = await self.credentials.config_for(name)
                break
            except (ApiError, TimeoutError, *NETWORK_ERRORS) as exc:
                log.warning("%s: TLS bootstrap: %r", name, exc)
                await asyncio.sleep(backoff.next())
        client = self.node_clients[name] = Client(
            config, http2=self.options.transport == "h2", content_type=self.options.content_type)
        return client

    async def run(self, stop: asyncio.Event) -> None:
        profile = self.profile
        lite = profile.fidelity == "lite"
        loop = asyncio.get_running_loop()
        endpoints = await endpoints_path(self.proxy_client, profile.proxy_endpoints)
        pod_router = self._pod_router = PodRouter()
        names = self.options.names()
        await self._serve_api(names)
        metrics = await self._serve_metrics()
        reporter = loop.create_task(self._report(stop))
        beat = (loop.create_task(self._heartbeat(stop, self.options.heartbeat_file))
                if self.options.heartbeat_file else None)
        chaos = loop.create_task(self._chaos(stop))
        keeper = loop.create_task(self._keep_heap(stop, len(names)))
        if lite and names:
            # The shared kubelet watches run as the shard's first node, as it would, unless
            # told otherwise (a node may not watch other nodes' pods since 1.32).
            if self.options.watch_kubeconfig is not None:
                watcher = self._component(load_kubeconfig(self.options.watch_kubeconfig))
            else:
                watcher = await self.kubelet_client(names[0][1])
            timeout = profile.min_watch_timeout
            stream = profile.stream_list
            self.shared = [
                Reflector(watcher, "/api/v1/pods", Pod, pod_router,
                          params={"fieldSelector": "spec.nodeName!="}, min_timeout=timeout,
                          stream_list=stream),
                Reflector(watcher, "/api/v1/nodes", Node, NodeRouter(self.kubelets),
                          min_timeout=timeout, stream_list=stream),
                *(Reflector(watcher, watch.path, MetaOnly, IGNORE,
                            params=watch.shared_params(),
                            min_timeout=timeout, stream_list=stream)
                  for watch in profile.kubelet_watches),
                *proxy_watches(self.proxy_client, profile, endpoints, "", shared=True),
            ]
            self._tasks += [loop.create_task(r.run()) for r in self.shared]
        interval = 1.0 / self.options.register_rate if self.options.register_rate > 0 else 0
        try:
            for index, name in names:
                if stop.is_set():
                    break
                task = loop.create_task(self._node(index, name, endpoints, pod_router))
                task.add_done_callback(_report_crash)
                self._tasks.append(task)
                if interval:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), interval)
            await stop.wait()
        finally:
            reporter.cancel()
            keeper.cancel()
            if beat:
                beat.cancel()
            chaos.cancel()
            await cancel_all(self._tasks)
            if self.api is not None:
                await self.api.stop()
            if metrics is not None:
                await metrics.stop()
            if self.options.delete_nodes_on_exit:
                await self._delete_nodes()
            for client in self.node_clients.values():
                await client.close()
            await self.client.close()
            if self.proxy_client is not self.client:
                await self.proxy_client.close()
            for component in self._components:
                await component.close()

    def _start(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        task.add_done_callback(_report_crash)
        self._tasks.append(task)
        return task

    async def restart(self, name: str) -> None:
        """A restarted kubelet: the old one is gone (its timers with it); a new one with
        the same identity and clients registers again and adopts its Node and pods."""
        old = self.kubelets[name]
        task = self._node_tasks.pop(name, None)
        if task is None:
            return  # not started yet (or being restarted)
        await cancel_all([task])
        kubelet = HollowKubelet(old.identity, old.client, self.profile, heartbeat=old.heartbeat,
                                events=old.pods.events, shared=old.shared)
        self.kubelets[name] = kubelet
        if old.shared:
            self._pod_router.subscribe(name, kubelet.pods)
        self._node_tasks[name] = self._start(kubelet.run())
        self.heap.stale = True  # the old kubelet's objects are in the frozen heap
        log.info("%s: restarted", name)

    def _component(self, config: KubeConfig) -> Client:
        """A client with its own HTTP/2 connection, for one hollow component."""
        client = Client(config, http2=True, content_type=self.options.content_type)
        self._components.append(client)
        return client

    async def _node(self, index: int, name: str, endpoints: str, pod_router: PodRouter) -> None:
        """One hollow node: its credentials first (bootstrap mode), then kubelet + proxy."""
        profile = self.profile
        lite = profile.fidelity == "lite"
        kubelet_agent = user_agent("kubelet", profile.kubelet_version)
        try:
            own = await self.kubelet_client(name)
        except BootstrapError as exc:
            log.error("%s: no certificate, the node does not start: %s", name, exc)
            return
        own_connections = self.options.transport == "h2" and not lite
        proxy_client = self.proxy_client
        if own_connections:
            # The Go hollow kubelet's heartbeat clientset differs from its main one only by
            # timeout and QPS, which client-go's transport cache ignores: both share one
            # connection; the proxy (another process there) has its own.
            if own is self.client:
                own = self._component(self.client.config)
            proxy_client = self._component(self.proxy_client.config)
        kubelet_client = own.with_identity(
            user_agent=kubelet_agent, limiter=TokenBucket(profile.kubelet_qps,
                                                          profile.kubelet_burst))
        # Lease and node status: kubelet 1.20's unthrottled heartbeat client, whose
        # requests give up after the status period, at most the lease duration.
        heartbeat = own.with_identity(
            user_agent=kubelet_agent, limiter=UNLIMITED,
            timeout=min(profile.status_check, float(profile.lease_duration)))
        # The kubelet's event recorder has its own budget (eventRecordQPS/eventBurst).
        events = (own.with_identity(user_agent=kubelet_agent,
                                    limiter=TokenBucket(profile.event_qps, profile.event_burst))
                  if profile.events else None)
        ip, port = self.endpoints.get(name, (None, 10250))
        kubelet = HollowKubelet(NodeIdentity(name, index, profile, ip=ip, port=port),
                                kubelet_client,
                                profile, heartbeat=heartbeat, events=events, shared=lite)
        proxy = HollowProxy(name, proxy_client.with_identity(
            user_agent=user_agent("kube-proxy", profile.kubelet_version),
            limiter=TokenBucket(profile.proxy_qps, profile.proxy_burst)),
            endpoints, profile, shared=lite)
        self.kubelets[name] = kubelet
        self.proxies[name] = proxy
        if lite:
            pod_router.subscribe(name, kubelet.pods)
        loop = asyncio.get_running_loop()
        parts = [loop.create_task(kubelet.run()), loop.create_task(proxy.run())]
        for part in parts:
            part.add_done_callback(_report_crash)
        self._node_tasks[name] = parts[0]
        try:
            await asyncio.gather(*parts)
        except asyncio.CancelledError:
            if self._node_tasks.get(name) is parts[0] or parts[1].done():
                raise
            # A chaos restart replaced the kubelet (its task is the fleet's now): the
            # proxy goes on.
            await parts[1]
        finally:
            await cancel_all(parts)

    async def _delete_nodes(self) -> None:
        refused = 0

        async def delete(name: str) -> None:
            nonlocal refused
            try:
                await self.client.delete(f"/api/v1/nodes/{name}", as_json=False)
            except ApiError as exc:
                refused += exc.status == 403
            except NETWORK_ERRORS:
                pass

        await asyncio.gather(*(delete(name) for name in self.kubelets))
        if refused:
            log.warning("the user of %s may not delete nodes: %d left registered",
                        self.client.config.source, refused)
        log.info("deleted %d nodes", len(self.kubelets) - refused)

    def summary(self) -> str:
        registered = sum(k.registered.is_set() for k in self.kubelets.values())
        pods = [r for k in self.kubelets.values() for r in k.pods.pods.values()]
        running = sum(r.phase == "Running" for r in pods)
        nodes = sum(k.adopted for k in self.kubelets.values())
        adopted = sum(k.pods.adopted for k in self.kubelets.values())
        certs = ""
        if self.credentials is not None:
            certs = (f", certificates: {self.credentials.requested} issued, "
                     f"{self.credentials.reused} reused")
        return (f"shard {self.options.shard}: {registered}/{len(self.kubelets)} nodes registered, "
                f"{len(pods)} pods ({running} running){certs}"
                + (f"; adopted {nodes} Ready nodes and {adopted} started pods"
                   if nodes or adopted else "")
                + f"; {_tasks()} asyncio tasks")

    def renewing(self, now: float) -> bool:
        """Every node renewed its lease within the lease duration (or just started)."""
        oldest = min((k.renewed for k in self.kubelets.values()), default=now)
        return now - oldest <= self.profile.lease_duration

    async def _heartbeat(self, stop: asyncio.Event, path: Path) -> None:
        while not stop.is_set():
            if self.renewing(time.monotonic()):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.profile.lease_renew)

    async def _chaos(self, stop: asyncio.Event) -> None:
        """Apply the node failures of the profile and the chaos file, twice a second."""
        watcher = ChaosWatcher(self.options.chaos_file, self.profile.node_failures,
                               time.time())
        if watcher.path is None and not watcher.planned:
            return
        failing: set[str] = set()
        since = time.time()
        while not stop.is_set():
            watcher.refresh()
            now = time.time()
            if watcher.plan.actions or failing:
                failing = set()
                for name, kubelet in list(self.kubelets.items()):
                    down, delay = watcher.plan.state(name, now)
                    if watcher.plan.restarts(name, since, now):
                        await self.restart(name)
                        kubelet = self.kubelets[name]
                    kubelet.set_failure(down, delay)
                    if down or delay:
                        failing.add(name)
            since = now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    async def _keep_heap(self, stop: asyncio.Event, expected: int) -> None:
        """Freeze the heap once the fleet is up: every node registered, or no node
        registered for a minute (some could not start); then rebaseline when asked."""
        registered, since = -1, time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5.0)
            now = time.monotonic()
            if self.heap.frozen_at is None:
                count = sum(k.registered.is_set() for k in self.kubelets.values())
                if count != registered:
                    registered, since = count, now
                if count >= expected or (count and now - since >= 60.0):
                    self.heap.freeze()
            elif self.heap.due(now):
                self.heap.freeze()

    async def _report(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.options.report_every)
            log.info("%s", self.summary())


def _tasks() -> int:
    """Tasks of the running loop: the soak benchmark reads them from this log line to
    tell a task leak (they must not grow with the hours) from a steady fleet."""
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # no running loop
        return 0


def _install_loop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """uvloop's SSL protocol reports a peer that closed while it still had bytes to write
    as a "fatal error" with a traceback (MagicStack/uvloop#506); at thousands of
    connections an apiserver restart prints thousands of them. The connection is gone
    and the client retries, as for any other dropped connection: keep it to one line."""
    exc = context.get("exception")
    if isinstance(exc, RuntimeError) and "handler is closed" in str(exc):
        log.debug("%s: %s", context.get("message"), exc)
        return
    loop.default_exception_handler(context)


def run_shard(options: FleetOptions, on_started: Callable[[], None] | None = None, *,
              top_level: bool = False) -> None:
    """Run one shard until SIGINT/SIGTERM (or the parent dies). At top level (no
    supervisor) a second signal leaves at once; a supervised shard may get SIGTERM twice
    (from `down`'s group signal and from its supervisor) and still stops cleanly."""
    kubelet_config = load_kubeconfig(options.kubeconfig)
    proxy_config = (load_kubeconfig(options.proxy_kubeconfig) if options.proxy_kubeconfig
                    else kubelet_config)
    _raise_fd_limit()
    heap.configure()
    if os.environ.get("PYKUBEMARK_LOOP", "uvloop") == "uvloop":
        _install_loop()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_exception_handler)

        def on_signal() -> None:
            if stop.is_set() and top_level:
                interrupts.leave_now(lambda: left_behind(options))
            stop.set()

        interrupts.in_loop(on_signal)
        fleet = Fleet(options, kubelet_config, proxy_config)
        if on_started:
            on_started()
        await fleet.run(stop)

    asyncio.run(main())


def left_behind(options: FleetOptions) -> str:
    nodes = f"the Node objects {options.prefix}-0..{options.prefix}-{options.nodes - 1}"
    return nodes + (" (not deleted)" if options.delete_nodes_on_exit else "")


def _raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _run_shard_index(options: FleetOptions, index: int) -> None:
    run_shard(dataclasses.replace(options, shard=index))


def run_fleet(options: FleetOptions) -> None:
    """Run all shards: in this process when there is one and no supervision is asked
    for, else one supervised child process each."""
    if options.processes <= 1 and not options.supervise:
        run_shard(options, top_level=True)
        return
    Supervisor(options.processes, functools.partial(_run_shard_index, options),
               restarts_file=options.restarts_file,
               left_behind=lambda: left_behind(options)).run()
