"""The kubelet's own HTTPS API, for every node of a hollow process at once.

The apiserver reaches a node's kubelet at its InternalIP and
``status.daemonEndpoints.kubeletEndpoint.Port`` for ``kubectl logs``, the node proxy
(``/api/v1/nodes/NODE/proxy/...``, what metrics-server scrapes) and exec. One listening
socket per node keeps nodes distinct — each its own loopback address (or, given one
address, a port each) — while one aiohttp app serves them all, choosing the
node by the local address a connection arrived on. Figures are made up from the pods'
requests: plausible, stable over a scrape, never measured. Who may ask is decided as a
kubelet with its configuration file's defaults decides (`kubelet_auth`).
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import errno
import hashlib
import ipaddress
import json
import logging
import os
import socket
import ssl
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import orjson
from aiohttp import web

from pykubemark.cluster.pki import self_signed_serving_cert
from pykubemark.errors import UserError
from pykubemark.hollow.kubelet_auth import KubeletAuth, Refused, fine_grained_authz
from pykubemark.hollow.objects import Exited
from pykubemark.hollow.profile import UsageProfile
from pykubemark.kube.protobuf import materialize
from pykubemark.netns_sockets import inside, netns_path

if TYPE_CHECKING:
    from pykubemark.hollow.kubelet import HollowKubelet
    from pykubemark.hollow.pods import PodRecord

log = logging.getLogger("pykubemark.hollow.api")

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
#: Where the apiserver of a local cluster listens: never a node's address.
RESERVED = ipaddress.ip_address("127.0.0.1")
STREAMING = ("exec", "attach", "portForward", "run")
#: What the node itself (kubelet, runtime, system) uses besides its pods.
SYSTEM_NANOCORES = 40_000_000
SYSTEM_MEMORY = 300 << 20


@dataclass
class ApiOptions:
    enabled: bool = True
    #: One port for every node address; 0: a free one, chosen when the server starts.
    port: int = 0
    #: Serve every node on this address instead (a pod's own IP, when shards have a pod
    #: network of their own), each node on its own port from ``port`` (10250 when 0) up.
    #: `deploy`'s shards run with hostNetwork on a loopback-only base node: there the
    #: per-node loopback addresses are right, and the host's address is not ours.
    address: str | None = None
    #: The CA whose client certificates authenticate their CN (the apiserver's
    #: --kubelet-client-certificate); default: the kubeconfig's CA.
    client_ca: Path | None = None
    #: Anyone may do anything, as a kubelet with --anonymous-auth and
    #: --authorization-mode=AlwaysAllow. Unsafe: the pods' specs and figures are open to
    #: every user of the machine.
    anonymous: bool = False
    #: Listen inside this network namespace, where the node addresses are local
    #: (cluster/hollow_net.py), instead of on this machine's loopback.
    netns: str | None = None


def check_addresses(ips: Iterable[str], netns: str | None = None) -> None:
    """A node's API listens on its own address, which must be this machine's loopback
    (and not the apiserver's 127.0.0.1), unless it is local in ``netns``."""
    if netns is not None:
        if not Path(netns_path(netns)).exists():
            raise UserError(f"--kubelet-netns: no network namespace {netns}")
        return
    for ip in ips:
        address = ipaddress.ip_address(ip)
        if address not in LOOPBACK or address == RESERVED:
            raise UserError(f"node address {ip} cannot serve the kubelet API: node_ip_base "
                            "must lie in 127.0.0.0/8 and not hold 127.0.0.1 "
                            "(or use --no-kubelet-api)")


# -- figures ----------------------------------------------------------------------------
def quantity(value: str) -> float:
    """A resource quantity as a number (cores for cpu, bytes for memory)."""
    units = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 1 << 10,
             "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "E": 1e18, "P": 1e15,
             "Pi": 1 << 50, "Ei": 1 << 60}
    value = value.strip()
    for suffix in sorted(units, key=len, reverse=True):
        if value.endswith(suffix):
            try:
                return float(value[:-len(suffix)]) * units[suffix]
            except ValueError:
                return 0.0
    try:
        return float(value)
    except ValueError:
        return 0.0


def _share(*key: str) -> float:
    """A stable fraction in [0.3, 0.9) per container: a pod's figures stay put."""
    digest = hashlib.blake2b("/".join(key).encode(), digest_size=4).digest()
    return 0.3 + 0.6 * int.from_bytes(digest, "big") / 2**32


def _seconds(stamp: str, default: float) -> float:
    if not stamp:
        return default
    with contextlib.suppress(ValueError):
        return calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
    return default


def rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class Usage(msgspec.Struct):
    name: str
    started: float
    nanocores: int
    working_set: int

    def core_seconds(self, now: float) -> float:
        return self.nanocores * max(0.0, now - self.started) / 1e9


def _running_since(record: PodRecord) -> str:
    """When the current instance of the pod's containers started ("" if none runs)."""
    if record.phase != "Running":
        return ""
    if record.view is not None:
        return record.view.running_since
    return record.times.started or record.times.scheduled


#: Pod annotations that set what each of its containers uses (quantities).
CPU_USAGE = "pykubemark.io/cpu-usage"
MEMORY_USAGE = "pykubemark.io/memory-usage"
_DEFAULT_USAGE = UsageProfile()


def container_usage(record: PodRecord, now: float,
                    profile: UsageProfile = _DEFAULT_USAGE) -> list[Usage]:
    """Each running container's CPU (nanocores) and working set, as the profile says
    (hollow/profile.py `UsageProfile`)."""
    since = _running_since(record)
    if not since:
        return []
    started = _seconds(since, now)
    meta = record.pod.metadata
    annotations = meta.annotations or {}
    cpu_factor, memory_factor = profile.factors(meta.namespace, meta.labels or {})
    idle_cpu = quantity(profile.idle_cpu) * 1e9
    idle_memory = quantity(profile.idle_memory)
    usage = []
    for container in record.pod.spec.containers:
        share = _share(meta.uid, container.name)
        requests = container.resources.requests
        cpu_request = quantity(requests.get("cpu", "0")) * 1e9
        memory_request = quantity(requests.get("memory", "0"))
        if CPU_USAGE in annotations:
            cpu = quantity(annotations[CPU_USAGE]) * 1e9
        elif cpu_request:
            cpu = cpu_request * (share if cpu_factor is None else cpu_factor)
        else:
            cpu = idle_cpu / share
        if MEMORY_USAGE in annotations:
            memory = quantity(annotations[MEMORY_USAGE])
        elif memory_request:
            memory = memory_request * (share if memory_factor is None else memory_factor)
        else:
            memory = idle_memory / share
        usage.append(Usage(container.name, started, int(cpu), int(memory)))
    return usage


def _cpu(now: str, nanocores: int, core_seconds: float) -> dict[str, Any]:
    return {"time": now, "usageNanoCores": nanocores,
            "usageCoreNanoSeconds": int(core_seconds * 1e9)}


def _memory(now: str, working_set: int, available: int | None = None) -> dict[str, Any]:
    memory: dict[str, Any] = {"time": now}
    if available is not None:
        memory["availableBytes"] = available
    memory.update({"usageBytes": working_set + (working_set >> 3),
                   "workingSetBytes": working_set, "rssBytes": working_set - (working_set >> 3),
                   "pageFaults": working_set >> 12, "majorPageFaults": 0})
    return memory


def _q(text: str) -> str:
    """Go's %q, as the kubelet's messages quote names."""
    return json.dumps(text)


# -- logs -------------------------------------------------------------------------------
def log_lines(record: PodRecord, container: str, previous: bool
              ) -> tuple[int, str] | list[tuple[str, str]]:
    """(timestamp, line) of one container instance, or an (HTTP status, error) as the
    kubelet answers when there is none."""
    pod = record.pod
    meta = pod.metadata
    spec = next((c for c in pod.spec.containers + pod.spec.initContainers
                 if c.name == container), None)
    if spec is None:
        return 404, f"container {_q(container)} not found in pod {_q(meta.name)}"
    view = record.view
    exited: list[Exited] = list(view.exited) if view is not None else []
    running = _running_since(record)
    instances: list[Exited | str] = [*exited, running] if running else list(exited)
    if previous:
        if len(instances) < 2:
            return 400, (f"previous terminated container {_q(container)} in pod "
                         f"{_q(meta.name)} not found")
        instance = instances[-2]
    elif instances:
        instance = instances[-1]
    elif record.phase in ("Succeeded", "Failed") and record.times.started:
        instance = Exited(record.exit_code, record.exit_reason or "Completed",
                          record.times.started, record.times.finished, 0)
    else:
        waiting = view.waiting[0] if view is not None and view.waiting else "ContainerCreating"
        return 400, (f"container {_q(container)} in pod {_q(meta.name)} is waiting to start: "
                     f"{waiting}")
    started = instance.started if isinstance(instance, Exited) else instance
    lines = [
        (started, f"pykubemark hollow container {container} of pod "
                  f"{meta.namespace}/{meta.name} starting (image {spec.image})"),
        (started, "no process runs here: a hollow node starts no containers"),
        (started, f"{container} ready"),
    ]
    if isinstance(instance, Exited):
        lines.append((instance.finished, f"{container} exiting with code {instance.code} "
                                         f"({instance.reason})"))
    return lines


# -- the server -------------------------------------------------------------------------
def _bind(hosts: list[str], ports: list[int], netns: str | None = None
          ) -> list[socket.socket]:
    """Listening sockets, one per (host, port); a port 0 after the first socket is the
    first one's port (one port for every node address)."""
    sockets: list[socket.socket] = []
    chosen = 0
    try:
        for host, port in zip(hosts, ports, strict=True):
            with inside(netns):
                sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                     socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port or chosen))
            chosen = chosen or sock.getsockname()[1]
            sock.listen(64)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def bind_nodes(addresses: Mapping[str, str], options: ApiOptions
               ) -> tuple[dict[str, tuple[str, int]], list[socket.socket]]:
    """Each node's (address, port) and its listening socket."""
    names = list(addresses)
    if options.address:
        base = options.port or 10250
        hosts = [options.address] * len(names)
        ports = [base + k for k in range(len(names))]
        tries = 1
    else:
        hosts = [addresses[n] for n in names]
        ports = [options.port] * len(names)
        tries = 20 if options.port == 0 else 1
    for attempt in range(tries):
        try:
            sockets = _bind(hosts, ports, options.netns)
            break
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or attempt == tries - 1:
                raise UserError(f"the kubelet API cannot listen on {hosts[0]}:{ports[0]}"
                                f"{' and on' if len(hosts) > 1 else ''}"
                                f"{' the other node addresses' if len(hosts) > 1 else ''}: "
                                f"{exc.strerror}") from None
    endpoints = {}
    for name, sock in zip(names, sockets, strict=True):
        host, port = sock.getsockname()[:2]
        endpoints[name] = (host, port)
    return endpoints, sockets


def server_ssl(ips: list[str], client_ca: Path | None,
               client_ca_data: bytes | None = None) -> ssl.SSLContext:
    """A self-signed serving certificate; client certificates asked for (not required)
    and verified against ``client_ca`` (a file) or else ``client_ca_data``."""
    cert, key = self_signed_serving_cert(f"pykubemark-hollow@{int(time.time())}", ips)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # load_cert_chain reads files only: a private temporary file, gone at once.
    with tempfile.NamedTemporaryFile(prefix="pykubemark-kubelet-", suffix=".pem") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(cert + key)
        handle.flush()
        context.load_cert_chain(handle.name)
    try:
        if client_ca is not None:
            context.load_verify_locations(cafile=str(client_ca))
        elif client_ca_data:
            context.load_verify_locations(cadata=client_ca_data.decode(errors="replace"))
        else:
            return context
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise UserError(f"the kubelet API's client CA {client_ca or 'of the kubeconfig'} is "
                        f"not usable: {exc}") from None
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


class KubeletApi:
    """One HTTPS app for every node of the process; ``kubelets`` is the fleet's live
    map, so a restarted kubelet is served as soon as it replaces the old one."""

    def __init__(self, kubelets: Mapping[str, HollowKubelet], options: ApiOptions,
                 clock: Callable[[], float] = time.time, *,
                 client_ca_data: bytes | None = None) -> None:
        self.kubelets = kubelets
        self.options = options
        self.clock = clock
        #: The kubeconfig's CA, trusted for client certificates without --kubelet-client-ca.
        self.client_ca_data = client_ca_data
        self.auth = KubeletAuth(anonymous=options.anonymous)
        self.by_endpoint: dict[tuple[str, int], str] = {}
        self.endpoints: dict[str, tuple[str, int]] = {}
        self.started = clock()
        self._servers: list[asyncio.AbstractServer] = []
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._authenticate])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/pods", self.pods)
        app.router.add_route("*", "/stats/summary", self.summary)
        app.router.add_get("/metrics/resource", self.resource_metrics)
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.logs)
        for method in STREAMING:
            app.router.add_route("*", f"/{method}/{{namespace}}/{{pod}}{{rest:.*}}",
                                 self.streaming)
        return app

    async def start(self, addresses: Mapping[str, str]) -> dict[str, tuple[str, int]]:
        """Listen for every node (name → its InternalIP); return name → (ip, port)."""
        self.endpoints, sockets = bind_nodes(addresses, self.options)
        self.by_endpoint = {endpoint: name for name, endpoint in self.endpoints.items()}
        context = server_ssl(sorted({host for host, _ in self.endpoints.values()}),
                             self.options.client_ca, self.client_ca_data)
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        loop = asyncio.get_running_loop()
        try:
            for sock in sockets:
                self._servers.append(await loop.create_server(
                    self._runner.server, sock=sock, ssl=context, backlog=64))
        except BaseException:
            for sock in sockets[len(self._servers):]:
                sock.close()
            await self.stop()
            raise
        return self.endpoints

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- plumbing ---------------------------------------------------------------------
    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Every request, as the kubelet's auth filter: authenticated, then authorized
        through the apiserver, before any handler (or 404) answers."""
        kubelet = self._kubelet(request)
        transport = request.transport
        try:
            await self.auth.check(
                kubelet.name, kubelet.client, request.method, request.path,
                transport.get_extra_info("peercert") if transport is not None else None,
                request.headers.get("Authorization"),
                fine_grained_authz(kubelet.profile.kubelet_version))
        except Refused as refused:
            return web.Response(status=refused.status, text=refused.text)
        return await handler(request)

    def _kubelet(self, request: web.Request) -> HollowKubelet:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        name = self.by_endpoint.get(tuple(sockname[:2])) if sockname else None
        kubelet = self.kubelets.get(name) if name else None
        if kubelet is None:
            raise web.HTTPServiceUnavailable(text="node not started yet")
        if not kubelet.up.is_set() and request.transport is not None:
            # A stopped node (chaos) answers nothing, as a dead kubelet: the connection
            # drops and the apiserver reports it could not reach the node.
            request.transport.close()
            raise web.HTTPServiceUnavailable(text="node stopped")
        return kubelet

    @staticmethod
    def _records(kubelet: HollowKubelet) -> list[PodRecord]:
        return list(kubelet.pods.pods.values())

    @staticmethod
    def _find(kubelet: HollowKubelet, namespace: str, name: str) -> PodRecord | None:
        return next((r for r in kubelet.pods.pods.values()
                     if r.pod.metadata.namespace == namespace and r.pod.metadata.name == name),
                    None)

    # -- endpoints --------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        self._kubelet(request)
        return web.Response(text="ok")

    async def pods(self, request: web.Request) -> web.Response:
        """The kubelet's pod manager: the pods bound here, with the status it wrote."""
        items = []
        for record in self._records(self._kubelet(request)):
            # a pod decoded from protobuf is a lazy view: the struct it stands for
            pod = msgspec.to_builtins(materialize(record.pod))
            pod["status"] = record.status or pod.get("status", {})
            items.append(pod)
        body = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def summary(self, request: web.Request) -> web.Response:
        kubelet = self._kubelet(request)
        now = self.clock()
        stamp = rfc3339(now)
        start = rfc3339(self.started)
        pods = []
        total_cpu, total_memory, total_seconds = SYSTEM_NANOCORES, SYSTEM_MEMORY, 0.0
        for record in self._records(kubelet):
            usage = container_usage(record, now, kubelet.profile.usage)
            if not usage:
                continue
            meta = record.pod.metadata
            cpu = sum(u.nanocores for u in usage)
            memory = sum(u.working_set for u in usage)
            seconds = sum(u.core_seconds(now) for u in usage)
            total_cpu += cpu
            total_memory += memory
            total_seconds += seconds
            since = rfc3339(usage[0].started)
            pods.append({
                "podRef": {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid},
                "startTime": record.times.scheduled,
                "containers": [{
                    "name": u.name, "startTime": since,
                    "cpu": _cpu(stamp, u.nanocores, u.core_seconds(now)),
                    "memory": _memory(stamp, u.working_set),
                    "rootfs": {"time": stamp, "usedBytes": 24576, "inodesUsed": 6},
                    "logs": {"time": stamp, "usedBytes": 4096, "inodesUsed": 1},
                } for u in usage],
                "cpu": _cpu(stamp, cpu, seconds),
                "memory": _memory(stamp, memory),
                "network": {"time": stamp, "name": "eth0", "rxBytes": int(seconds * 1e4),
                            "rxErrors": 0, "txBytes": int(seconds * 8e3), "txErrors": 0},
                "ephemeral-storage": {"time": stamp, "usedBytes": 28672 * len(usage),
                                      "inodesUsed": 7 * len(usage)},
                "process_stats": {"process_count": len(usage)},
            })
        capacity = quantity(kubelet.identity.capacity()["memory"])
        total_seconds += SYSTEM_NANOCORES * (now - self.started) / 1e9
        body = {
            "node": {
                "nodeName": kubelet.name,
                "systemContainers": [
                    {"name": "kubelet", "startTime": start,
                     "cpu": _cpu(stamp, SYSTEM_NANOCORES // 2, total_seconds / 4),
                     "memory": _memory(stamp, SYSTEM_MEMORY // 2)},
                    {"name": "pods", "startTime": start,
                     "cpu": _cpu(stamp, total_cpu - SYSTEM_NANOCORES, total_seconds / 2),
                     "memory": _memory(stamp, total_memory - SYSTEM_MEMORY,
                                       int(capacity) - (total_memory - SYSTEM_MEMORY))},
                ],
                "startTime": start,
                "cpu": _cpu(stamp, total_cpu, total_seconds),
                "memory": _memory(stamp, total_memory, max(0, int(capacity) - total_memory)),
                "fs": {"time": stamp, "availableBytes": 50 << 30, "capacityBytes": 100 << 30,
                       "usedBytes": 50 << 30},
                "runtime": {"imageFs": {"time": stamp, "availableBytes": 50 << 30,
                                        "capacityBytes": 100 << 30, "usedBytes": 2 << 30}},
                "rlimit": {"time": stamp, "maxpid": 32768, "curproc": 100 + len(pods)},
            },
            "pods": pods,
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def resource_metrics(self, request: web.Request) -> web.Response:
        """kubelet 1.20's /metrics/resource: node, pod and container CPU and memory."""
        kubelet = self._kubelet(request)
        now = self.clock()
        ms = int(now * 1000)
        node_cpu = SYSTEM_NANOCORES * (now - self.started) / 1e9
        node_memory = SYSTEM_MEMORY
        containers: list[tuple[str, float, int]] = []
        pods: list[tuple[str, str, float, int]] = []
        for record in self._records(kubelet):
            meta = record.pod.metadata
            usage = container_usage(record, now, kubelet.profile.usage)
            if not usage:
                continue
            for u in usage:
                labels = f'container="{u.name}",namespace="{meta.namespace}",pod="{meta.name}"'
                containers.append((labels, u.core_seconds(now), u.working_set))
            seconds = sum(u.core_seconds(now) for u in usage)
            memory = sum(u.working_set for u in usage)
            node_cpu += seconds
            node_memory += memory
            pods.append((meta.namespace, meta.name, seconds, memory))

        def family(name: str, kind: str, help_text: str, samples: list[str]) -> str:
            return (f"# HELP {name} [ALPHA] {help_text}\n# TYPE {name} {kind}\n"
                    + "".join(samples))

        text = "".join([
            family("container_cpu_usage_seconds_total", "counter",
                   "Cumulative cpu time consumed by the container in core-seconds",
                   [f"container_cpu_usage_seconds_total{{{labels}}} {cpu:.6f} {ms}\n"
                    for labels, cpu, _ in containers]),
            family("container_memory_working_set_bytes", "gauge",
                   "Current working set of the container in bytes",
                   [f"container_memory_working_set_bytes{{{labels}}} {memory} {ms}\n"
                    for labels, _, memory in containers]),
            family("node_cpu_usage_seconds_total", "counter",
                   "Cumulative cpu time consumed by the node in core-seconds",
                   [f"node_cpu_usage_seconds_total {node_cpu:.6f} {ms}\n"]),
            family("node_memory_working_set_bytes", "gauge",
                   "Current working set of the node in bytes",
                   [f"node_memory_working_set_bytes {node_memory} {ms}\n"]),
            family("pod_cpu_usage_seconds_total", "counter",
                   "Cumulative cpu time consumed by the pod in core-seconds",
                   [f'pod_cpu_usage_seconds_total{{namespace="{ns}",pod="{pod}"}} '
                    f"{cpu:.6f} {ms}\n" for ns, pod, cpu, _ in pods]),
            family("pod_memory_working_set_bytes", "gauge",
                   "Current working set of the pod in bytes",
                   [f'pod_memory_working_set_bytes{{namespace="{ns}",pod="{pod}"}} '
                    f"{memory} {ms}\n" for ns, pod, _, memory in pods]),
            family("scrape_error", "gauge",
                   "1 if there was an error while getting container metrics, 0 otherwise",
                   ["scrape_error 0\n"]),
        ])
        return web.Response(text=text, content_type="text/plain",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def logs(self, request: web.Request) -> web.Response:
        kubelet = self._kubelet(request)
        namespace, name = request.match_info["namespace"], request.match_info["pod"]
        record = self._find(kubelet, namespace, name)
        if record is None:
            return web.Response(status=404, text=f"pod {_q(name)} does not exist")
        query = request.query
        result = log_lines(record, request.match_info["container"],
                           query.get("previous", "false").lower() in ("true", "1"))
        if isinstance(result, tuple):
            return web.Response(status=result[0], text=result[1])
        tail = query.get("tailLines") or query.get("tail")
        if tail and tail != "all":
            try:
                count = int(tail)
            except ValueError:
                return web.Response(status=422, text='{"message": "Invalid request."}')
            result = result[-count:] if count > 0 else []
        stamps = query.get("timestamps", "false").lower() in ("true", "1")
        text = "".join(f"{t.replace('Z', '.000000000Z')} {line}\n" if stamps else f"{line}\n"
                       for t, line in result)
        if limit := query.get("limitBytes"):
            with contextlib.suppress(ValueError):
                text = text.encode()[:int(limit)].decode(errors="ignore")
        return web.Response(text=text, content_type="text/plain")

    async def streaming(self, request: web.Request) -> web.Response:
        """As a kubelet whose runtime serves no streams (``NewErrorStreamingDisabled``):
        exec, attach, port-forward and run are refused, never half-done."""
        kubelet = self._kubelet(request)
        method = request.path.split("/")[1]
        if self._find(kubelet, request.match_info["namespace"],
                      request.match_info["pod"]) is None:
            return web.Response(status=404, text="pod does not exist")
        # The kubelet's own refusal is plain text, which kubectl turns into an empty
        # "Error from server: "; a Status says it in full.
        message = (f"streaming method {method} disabled: pykubemark hollow node "
                   f"{kubelet.name} runs no containers")
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": message, "reason": "NotFound", "code": 404}
        return web.Response(status=404, body=orjson.dumps(status),
                            content_type="application/json")
