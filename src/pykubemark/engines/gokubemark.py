"""The Go kubemark (Kubernetes 1.20) as a hollow-node engine: N Go hollow nodes, each a
``kubemark --morph=kubelet`` and a ``kubemark --morph=proxy`` process, as in a real
kubemark cluster, named and authenticated as pykubemark's nodes are.

Three things make many Go hollow kubelets coexist on one host:

* the fake container runtime listens on a fixed socket, ``/tmp/kubelet_remote.sock``
  (``pkg/kubelet/cri/remote/fake/endpoint.go``), so every kubelet runs in its own mount
  namespace with a tmpfs on ``/tmp`` (its root dir ``/tmp/hollow-kubelet.*`` goes there
  too, and vanishes with the namespace) — which takes ``unshare`` and root;
* each kubelet serves on ``--kubelet-port`` and ``--kubelet-read-only-port`` (defaults
  10250/10255), so each gets two free ports of its own;
* the proxy gets the no-op proxier (``--use-real-proxier=false``), which is what the
  hollow proxy's requests to the apiserver are measured with, and needs no iptables.

Every process gets its own session, so stopping a node signals its whole process group
and nothing is left behind. Processes started for a local cluster are recorded in its
state (``pykubemark down`` stops them even after a SIGKILL of whoever started them); in
the foreground (`pykubemark hollow --engine kubemark`) they die with their parent.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psutil

from pykubemark import interrupts
from pykubemark.cluster import ports, processes
from pykubemark.cluster.control_plane import LocalCluster
from pykubemark.cluster.hollow import ready_nodes
from pykubemark.cluster.state import Proc
from pykubemark.engines.base import (
    HollowOptions,
    NodeOptions,
    Progress,
    refuse_options,
    register_rate,
    stop_recorded,
)
from pykubemark.errors import UserError
from pykubemark.provision.binaries import Binaries, find_kubemark
from pykubemark.waiting import ReadyCount

#: The mount namespace wrapper: a private tmpfs on /tmp, then exec the kubelet, so the
#: pid we started is the kubelet's own pid (what psutil measures) and its group leader.
#: The kubeconfig is read before the tmpfs hides it (a cluster's state may well live
#: under /tmp) and written inside, where the kubelet finds it as ``/tmp/kubeconfig``.
PRIVATE_TMP = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'kc=$(cat "$PYKUBEMARK_KUBECONFIG") && '
               'mount -t tmpfs -o size=64m,mode=1777 tmpfs /tmp && '
               "umask 077 && printf '%s\\n' \"$kc\" > /tmp/kubeconfig && "
               'exec "$0" "$@"']
KUBECONFIG_INSIDE = "/tmp/kubeconfig"
#: Kubeconfig fields naming a file, and the field that carries the file's content.
INLINE = {"certificate-authority": "certificate-authority-data",
          "client-certificate": "client-certificate-data", "client-key": "client-key-data"}
#: Seconds between node launches: a Go kubelet's start-up costs ~1 CPU-s, and 2N of
#: them at once on a small machine would starve the control plane being measured.
START_INTERVAL = 0.5


@functools.cache
def flags_of(binary: Path) -> frozenset[str]:
    """The flags a binary's ``--help`` lists: what differs between kubemark releases."""
    try:
        text = subprocess.run([str(binary), "--help"], capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(re.findall(r"^\s+(--[\w-]+)", text, re.M))


def require_runtime(kubemark: Path | None) -> Path:
    """The kubemark binary, once everything the engine needs is known to be there;
    otherwise a `UserError` naming the first thing missing."""
    if kubemark is None:
        raise UserError("the kubemark engine needs the Go kubemark binary: none found in "
                        "$PYKUBEMARK_BIN_DIR, PATH or the cache (`pykubemark provision` "
                        "builds it)")
    if shutil.which("unshare") is None:
        raise UserError("the kubemark engine needs `unshare` (util-linux) to give each Go "
                        "kubelet a private /tmp")
    if os.geteuid() != 0:
        raise UserError("the kubemark engine needs root: each Go kubelet gets a private "
                        "/tmp through `unshare --mount` and a tmpfs mount")
    return kubemark


def flatten_kubeconfig(source: Path, target: Path) -> Path:
    """A copy of ``source`` with every file it names inlined, as ``kubectl config view
    --flatten`` does: inside its mount namespace a Go kubelet cannot see /tmp's files."""
    import base64

    import yaml

    from pykubemark.errors import read_yaml_mapping

    config = read_yaml_mapping(source, "kubeconfig")

    def read(name: str) -> bytes:
        path = Path(name) if Path(name).is_absolute() else source.parent / name
        try:
            return path.read_bytes()
        except OSError as exc:
            raise UserError(f"kubeconfig {source} names {path}: {exc.strerror}") from None

    for section, key in (("clusters", "cluster"), ("users", "user")):
        for entry in config.get(section) or []:
            fields = entry.get(key) or {}
            for name, data in INLINE.items():
                if fields.get(name):
                    fields[data] = base64.b64encode(read(fields.pop(name))).decode()
            if fields.get("tokenFile"):
                fields["token"] = read(fields.pop("tokenFile")).decode().strip()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.replace(target)
    return target


def default_log_dir(prefix: str) -> Path:
    from pykubemark.paths import state_home

    return state_home() / "kubemark" / prefix


@dataclass
class GoNode:
    """One Go hollow node: its name, its two processes and the kubelet's ports."""

    name: str
    kubelet_port: int
    read_only_port: int
    kubelet: Proc | None = None
    proxy: Proc | None = None

    def procs(self) -> list[Proc]:
        return [p for p in (self.kubelet, self.proxy) if p is not None]


@dataclass
class GoFleet:
    """N Go hollow nodes named ``{prefix}-0 .. {prefix}-{N-1}``, pykubemark's rule; stop
    with ``stop()`` or use as a context manager."""

    kubemark: Path
    kubelet_kubeconfig: Path
    proxy_kubeconfig: Path
    nodes: int
    log_dir: Path
    prefix: str = "hollow"
    start_interval: float = START_INTERVAL
    node_labels: dict[str, str] = field(default_factory=dict)
    #: The hollow proxy's real iptables proxier (on fake iptables) instead of the no-op
    #: one. It GETs its Node until it exists and re-syncs rules every 30 s; the Go
    #: kubemark's own default is the real one, pykubemark models the no-op one.
    real_proxier: bool = False
    extra_kubelet_args: tuple[str, ...] = ()
    extra_proxy_args: tuple[str, ...] = ()
    #: Children get SIGTERM when this process dies (foreground use, nothing records them).
    die_with_parent: bool = False
    members: list[GoNode] = field(default_factory=list)
    #: Per-node kubeconfigs (system:node:<name>); nodes not in it use kubelet_kubeconfig.
    node_kubeconfigs: dict[str, Path] = field(default_factory=dict)
    _on_start: Callable[[Proc], None] | None = None

    # -- construction ------------------------------------------------------------------
    @classmethod
    def for_cluster(cls, cluster: LocalCluster, nodes: int, *, kubemark: Path | None = None,
                    prefix: str = "go", users: tuple[str, str] = ("go-kubelet", "go-proxy"),
                    node_identities: bool = True, **kwargs: object) -> GoFleet:
        """A fleet on a local cluster, with its processes recorded in the cluster's state.

        Each Go kubelet is ``system:node:<prefix>-<i>`` with a certificate from the
        cluster CA (the Go hollow kubelet does no TLS bootstrap), or, without
        ``node_identities``, the shared user ``users[0]`` of the cluster's token file;
        the proxies are ``users[1]`` (bound to system:node-proxier). The node-name prefix
        tells the Go kubelets' requests from pykubemark's in the audit log.
        """
        kubemark = require_runtime(kubemark or find_kubemark())
        fleet = cls(kubemark=kubemark,
                    kubelet_kubeconfig=cluster.kubeconfig_for(users[0]),
                    proxy_kubeconfig=cluster.kubeconfig_for(users[1]),
                    nodes=nodes, log_dir=cluster.dir / "logs", prefix=prefix,
                    **kwargs)  # type: ignore[arg-type]
        if node_identities:
            fleet.node_kubeconfigs = {name: cluster.node_kubeconfig(name)
                                      for name in fleet.names}
        fleet.register_with(cluster)
        return fleet

    def register_with(self, cluster: LocalCluster) -> None:
        """Record every process started from now on in the cluster's state file, so
        that ``pykubemark down`` (or ``LocalCluster.down``) stops it as well."""

        def record(proc: Proc) -> None:
            cluster.state.processes.append(proc)
            cluster.state.save()

        self._on_start = record

    @property
    def names(self) -> list[str]:
        return [f"{self.prefix}-{i}" for i in range(self.nodes)]

    # -- argv --------------------------------------------------------------------------
    def kubelet_argv(self, node: GoNode) -> list[str]:
        argv = [
            *PRIVATE_TMP, str(self.kubemark), "--morph=kubelet", f"--name={node.name}",
            f"--kubeconfig={KUBECONFIG_INSIDE}",
            f"--kubelet-port={node.kubelet_port}",
            f"--kubelet-read-only-port={node.read_only_port}",
        ]
        if self.node_labels:
            labels = ",".join(f"{k}={v}" for k, v in sorted(self.node_labels.items()))
            argv.append(f"--node-labels={labels}")
        if "--use-host-image-service" in flags_of(self.kubemark):
            # Later kubemarks ask the host's containerd for images unless told to fake it.
            argv.append("--use-host-image-service=false")
        return argv + list(self.extra_kubelet_args)

    def proxy_argv(self, node: GoNode) -> list[str]:
        return [
            str(self.kubemark), "--morph=proxy", f"--name={node.name}",
            f"--kubeconfig={self.proxy_kubeconfig}",
            f"--use-real-proxier={'true' if self.real_proxier else 'false'}",
            *self.extra_proxy_args,
        ]

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, progress: Callable[[str], None] = lambda _msg: None) -> None:
        """Launch every node's kubelet and proxy, ``start_interval`` apart."""
        if self.members:
            raise RuntimeError("GoFleet already started")
        free = ports.free_ports(2 * self.nodes)
        self.members = [GoNode(name, free[2 * i], free[2 * i + 1])
                        for i, name in enumerate(self.names)]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        shared = flatten_kubeconfig(self.kubelet_kubeconfig,
                                    self.log_dir / f"{self.prefix}-kubelet.kubeconfig")
        for i, node in enumerate(self.members):
            own = self.node_kubeconfigs.get(node.name)
            flat = (flatten_kubeconfig(own, self.log_dir / f"{node.name}-kubelet.kubeconfig")
                    if own else shared)
            node.kubelet = self._launch(f"{node.name}-kubelet", self.kubelet_argv(node),
                                        env={"PYKUBEMARK_KUBECONFIG": str(flat)})
            node.proxy = self._launch(f"{node.name}-proxy", self.proxy_argv(node))
            progress(f"Go hollow nodes launched: {i + 1}/{self.nodes}")
            if self.start_interval and i + 1 < self.nodes:
                time.sleep(self.start_interval)

    def _launch(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = processes.start(name, argv, self.log_dir / f"{name}.log", env=env,
                               die_with_parent=self.die_with_parent)
        if self._on_start is not None:
            self._on_start(proc)
        return proc

    def procs(self) -> list[Proc]:
        return [p for node in self.members for p in node.procs()]

    def dead(self) -> list[Proc]:
        """Processes that exited (they should not: a hollow node runs until stopped)."""
        return [p for p in self.procs() if not p.alive()]

    def check_alive(self) -> None:
        if dead := self.dead():
            first = dead[0]
            raise UserError(f"{len(dead)} Go kubemark process(es) exited, e.g. {first.name}: "
                            f"{processes.last_lines(first.log, 2)} (log: {first.log})")

    def live_processes(self, component: str | None = None) -> Iterator[psutil.Process]:
        """psutil handles of the live processes (``component``: kubelet or proxy)."""
        for node in self.members:
            for role, proc in (("kubelet", node.kubelet), ("proxy", node.proxy)):
                if proc is None or (component and role != component):
                    continue
                if (live := proc.process()) is not None:
                    yield live

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every process group, wait, SIGKILL what is left (the group too)."""
        procs = self.procs()
        if procs:
            processes.stop(procs, timeout=timeout)

    def wait_ready(self, cluster: LocalCluster, timeout: float | None = None,
                   progress: Callable[[str], None] = lambda _msg: None) -> None:
        """Until every node is Ready; fail early if a process died."""
        if timeout is None:
            timeout = 180.0 + self.nodes
        waiting = ReadyCount("Go hollow nodes Ready", timeout=timeout, progress=progress)
        self.check_alive()
        while not waiting.done(ready_nodes(cluster, self.prefix), self.nodes):
            if line := waiting.overdue():
                raise UserError(f"{line} (logs: {self.log_dir}/{self.prefix}-*.log)")
            time.sleep(1.0)
            self.check_alive()

    def __enter__(self) -> GoFleet:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def run_foreground(fleet: GoFleet, progress: Callable[[str], None] = lambda _msg: None,
                   check_every: float = 1.0) -> None:
    """Run the fleet until SIGINT or SIGTERM, then stop every process group.

    A Go process that exits on its own is an error (a hollow node runs until stopped);
    the rest are stopped before it is raised, so nothing outlives this call.
    """
    previous = interrupts.handle(interrupts.raise_interrupt)
    try:
        fleet.start(progress)
        progress(f"{fleet.nodes} Go hollow nodes launched; Ctrl-C stops them")
        while True:
            fleet.check_alive()
            time.sleep(check_every)
    except KeyboardInterrupt:
        pass
    finally:
        interrupts.ignore()  # a second Ctrl-C must not cut the clean-up short
        fleet.stop()
        interrupts.restore(previous)


def start_for_cluster(cluster: LocalCluster, nodes: int, *, prefix: str, kubemark: Path,
                      start_interval: float = START_INTERVAL,
                      progress: Callable[[str], None] = lambda _msg: None) -> GoFleet:
    """`up --engine kubemark`: Go nodes with pykubemark's users and names, recorded in
    the cluster's state so `down` stops them; returns once all are Ready."""
    fleet = GoFleet.for_cluster(cluster, nodes, kubemark=kubemark, prefix=prefix,
                                users=("hollow-kubelet", "hollow-proxy"),
                                start_interval=start_interval)
    fleet.start(progress)
    fleet.wait_ready(cluster, progress=progress)
    return fleet


def run_hollow(options: HollowOptions, say: Progress) -> None:
    """`hollow --engine kubemark`: Go hollow nodes in the foreground until Ctrl-C."""
    # The apiserver client loads here, not in every command that lists the engines.
    from pykubemark.kube.config import load_kubeconfig
    from pykubemark.kube.probe import check_server

    nodes = options.nodes
    refuse_options("kubemark", fidelity=nodes.fidelity, processes=nodes.processes != 1,
                   profile=nodes.profile_file, events=nodes.events is not None,
                   endpoint_slices=nodes.endpoint_slices,
                   delete_nodes_on_exit=options.delete_nodes_on_exit,
                   kubelet_api=nodes.kubelet_api is not None,
                   kubelet_port=bool(options.kubelet_port),
                   kubelet_address=options.kubelet_address,
                   kubelet_client_ca=options.kubelet_client_ca,
                   kubelet_anonymous=options.kubelet_anonymous)
    kubemark = require_runtime(find_kubemark())
    config = load_kubeconfig(options.kubeconfig)
    version = check_server(config)
    if options.proxy_kubeconfig is not None:
        check_server(load_kubeconfig(options.proxy_kubeconfig), verb="watch",
                     resource="endpoints")
    source = Path(config.source)
    if not source.is_file():
        raise UserError(f"--engine kubemark needs one kubeconfig file (--kubeconfig), not "
                        f"{config.source}")
    rate = nodes.register_rate
    fleet = GoFleet(kubemark=kubemark, kubelet_kubeconfig=source,
                    proxy_kubeconfig=options.proxy_kubeconfig or source, nodes=nodes.count,
                    log_dir=default_log_dir(nodes.prefix), prefix=nodes.prefix,
                    start_interval=1 / rate if rate else 0.0, die_with_parent=True)
    say(f"{nodes.count} Go kubemark hollow nodes against {config.server} "
        f"(Kubernetes {version.get('gitVersion', '?')}), logs in {fleet.log_dir}; Ctrl-C stops")

    def progress(message: str) -> None:
        # the last launch and the end, not a line per node
        if message.endswith(f"{nodes.count}/{nodes.count}") or "Ctrl-C" in message:
            say(message)

    run_foreground(fleet, progress)


class GoKubemarkEngine:
    name = "kubemark"
    title = "Go kubemark hollow nodes"
    #: A Go kubelet's start-up costs ~1 CPU-s.
    default_register_rate = 2.0

    def check(self, nodes: NodeOptions) -> None:
        refuse_options(self.name, fidelity=nodes.fidelity, processes=nodes.processes != 1,
                       profile=nodes.profile_file, events=nodes.events is not None,
                       endpoint_slices=nodes.endpoint_slices,
                       kubelet_api=nodes.kubelet_api is not None)

    def check_runtime(self, binaries: Binaries, nodes: NodeOptions) -> None:
        if nodes.count:
            require_runtime(binaries.kubemark)

    def start(self, cluster: LocalCluster, binaries: Binaries, nodes: NodeOptions,
              progress: Progress) -> None:
        rate = register_rate(self, nodes.register_rate)
        start_for_cluster(cluster, nodes.count, prefix=nodes.prefix,
                          kubemark=require_runtime(binaries.kubemark),
                          start_interval=1 / rate if rate else 0.0, progress=progress)

    def stop(self, cluster: LocalCluster, nodes: NodeOptions) -> list[str]:
        return stop_recorded(cluster, {f"{name}-{role}" for name in self.node_names(nodes)
                                       for role in ("kubelet", "proxy")})

    def node_names(self, nodes: NodeOptions) -> list[str]:
        return nodes.names  # GoFleet's rule, pykubemark's

    def run_foreground(self, options: HollowOptions, say: Progress) -> None:
        run_hollow(options, say)
