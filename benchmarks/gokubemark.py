"""Run N Go kubemark hollow nodes (Kubernetes 1.20) beside pykubemark's, on one cluster.

The Go kubemark is the reference pykubemark is measured against, and measuring both in
the same run on the same control plane is the only comparison that is fair: the same
apiserver, the same scheduler, the same machine load. One Go hollow node is two
processes, ``kubemark --morph=kubelet`` and ``kubemark --morph=proxy``, as in a real
kubemark cluster.

Three things make many Go hollow kubelets coexist on one host:

* the fake container runtime listens on a fixed socket, ``/tmp/kubelet_remote.sock``
  (``pkg/kubelet/cri/remote/fake/endpoint.go``), so every kubelet runs in its own mount
  namespace with a tmpfs on ``/tmp`` (its root dir ``/tmp/hollow-kubelet.*`` goes there
  too, and vanishes with the namespace);
* each kubelet serves on ``--kubelet-port`` and ``--kubelet-read-only-port`` (defaults
  10250/10255), so each gets two free ports of its own;
* the proxy gets the no-op proxier (``--use-real-proxier=false``), which is what the
  hollow proxy's requests to the apiserver are measured with, and needs no iptables.

Every process gets its own session (``start_new_session``), so stopping a node signals
its whole process group and nothing is left behind. ``GoFleet`` is a context manager;
``register_with(cluster)`` additionally records the processes in the cluster's state,
so ``pykubemark down`` stops them even if this process was killed with SIGKILL.

Run it directly for a self-check: a cluster, Go hollow nodes Ready, a Deployment's pods
Running on them, and everything stopped again::

    .venv/bin/python benchmarks/gokubemark.py --nodes 3
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psutil

from pykubemark.cluster import ports, processes
from pykubemark.cluster.control_plane import LocalCluster
from pykubemark.cluster.hollow import ready_nodes
from pykubemark.cluster.state import Proc
from pykubemark.errors import UserError

#: The mount namespace wrapper: a private tmpfs on /tmp, then exec the kubelet, so the
#: pid we started is the kubelet's own pid (what psutil measures) and its group leader.
PRIVATE_TMP = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount -t tmpfs -o size=64m,mode=1777 tmpfs /tmp && exec "$0" "$@"']


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
    """N Go hollow nodes named ``{prefix}-0 .. {prefix}-{N-1}``; stop with ``stop()``
    or use as a context manager."""

    kubemark: Path
    kubelet_kubeconfig: Path
    proxy_kubeconfig: Path
    nodes: int
    log_dir: Path
    prefix: str = "go"
    #: Seconds between node launches: a Go kubelet's start-up costs ~1 CPU-s, and 2N of
    #: them at once on 2 cores would starve the control plane being measured.
    start_interval: float = 0.5
    node_labels: dict[str, str] = field(default_factory=dict)
    #: The hollow proxy's real iptables proxier (on fake iptables) instead of the no-op
    #: one. It GETs its Node until it exists and re-syncs rules every 30 s; the Go
    #: kubemark's own default is the real one, pykubemark models the no-op one.
    real_proxier: bool = False
    extra_kubelet_args: tuple[str, ...] = ()
    extra_proxy_args: tuple[str, ...] = ()
    members: list[GoNode] = field(default_factory=list)
    #: Per-node kubeconfigs (system:node:<name>); nodes not in it use kubelet_kubeconfig.
    node_kubeconfigs: dict[str, Path] = field(default_factory=dict)
    _on_start: Callable[[Proc], None] | None = None

    # -- construction ------------------------------------------------------------------
    @classmethod
    def for_cluster(cls, cluster: LocalCluster, nodes: int, *, kubemark: Path | None = None,
                    prefix: str = "go", node_identities: bool = True,
                    **kwargs: object) -> GoFleet:
        """A fleet with the cluster's log directory; each Go kubelet is
        ``system:node:<prefix>-<i>`` with a certificate from the cluster CA (the Go
        hollow kubelet does no TLS bootstrap), or, without ``node_identities``, the shared
        ``kubemark:go-kubelet``; the proxies are ``kubemark:go-proxy`` (system:node-proxier).
        The node-name prefix tells the Go kubelets' requests from pykubemark's.
        """
        if kubemark is None:
            from pykubemark.provision import ensure_binaries

            kubemark = ensure_binaries(None, allow_build=False).kubemark
            if kubemark is None:
                raise UserError("no kubemark binary found (pykubemark provision builds it)")
        fleet = cls(kubemark=kubemark,
                    kubelet_kubeconfig=cluster.kubeconfig_for("go-kubelet"),
                    proxy_kubeconfig=cluster.kubeconfig_for("go-proxy"),
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
        kubeconfig = self.node_kubeconfigs.get(node.name, self.kubelet_kubeconfig)
        argv = [
            *PRIVATE_TMP, str(self.kubemark), "--morph=kubelet", f"--name={node.name}",
            f"--kubeconfig={kubeconfig}",
            f"--kubelet-port={node.kubelet_port}",
            f"--kubelet-read-only-port={node.read_only_port}",
        ]
        if self.node_labels:
            labels = ",".join(f"{k}={v}" for k, v in sorted(self.node_labels.items()))
            argv.append(f"--node-labels={labels}")
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
        for i, node in enumerate(self.members):
            node.kubelet = self._launch(f"{node.name}-kubelet", self.kubelet_argv(node))
            node.proxy = self._launch(f"{node.name}-proxy", self.proxy_argv(node))
            progress(f"Go hollow nodes launched: {i + 1}/{self.nodes}")
            if self.start_interval and i + 1 < self.nodes:
                time.sleep(self.start_interval)

    def _launch(self, name: str, argv: list[str]) -> Proc:
        proc = processes.start(name, argv, self.log_dir / f"{name}.log")
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

    def wait_ready(self, cluster: LocalCluster, timeout: float = 180.0,
                   progress: Callable[[str], None] = lambda _msg: None) -> None:
        """Until every node is Ready; fail early if a process died."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            ready = ready_nodes(cluster, self.prefix)
            progress(f"Go hollow nodes Ready: {ready}/{self.nodes}")
            if ready >= self.nodes:
                return
            if time.monotonic() > deadline:
                raise UserError(f"only {ready}/{self.nodes} Go hollow nodes Ready after "
                                f"{timeout:.0f}s (logs: {self.log_dir}/{self.prefix}-*.log)")
            time.sleep(1.0)

    def __enter__(self) -> GoFleet:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


# -- self-check --------------------------------------------------------------------------
def _self_check(nodes: int, pods_per_node: int, name: str) -> None:
    """Cluster up, Go nodes Ready, pods Running on them, and everything down again."""
    from benchlib import Api, PodCycle, console, start_cluster

    cluster = start_cluster(name, audit=False)
    try:
        with GoFleet.for_cluster(cluster, nodes) as fleet:
            with console.status("starting Go hollow nodes") as status:
                fleet.start(status.update)
                fleet.wait_ready(cluster, progress=status.update)
            console.print(f"[green]{nodes} Go hollow nodes Ready[/]")
            api = Api(cluster)
            cycle = PodCycle(api, {"go": fleet.names}, pods_per_node=pods_per_node,
                             hold=5.0, settle=0.0, namespace="gokubemark-check")
            cycle.run(check=fleet.check_alive)
            for side, spread in cycle.spread.items():
                console.print(f"{side}: pods Running per node {spread}")
            console.print(f"[green]pods Running after {cycle.running_after['go']:.1f}s, "
                          f"gone {cycle.gone_after['go']:.1f}s after scale-down[/]")
        left = [p.name for p in fleet.procs() if p.alive()]
        console.print("Go processes left running: " + (", ".join(left) or "none"))
    finally:
        cluster.down()


def main() -> None:
    import click

    @click.command(context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--nodes", type=click.IntRange(1, 200), default=3, show_default=True,
                  help="Go hollow nodes to start.")
    @click.option("--pods-per-node", type=click.IntRange(1, 110), default=5,
                  show_default=True)
    @click.option("--name", default="bench-gokubemark", show_default=True,
                  help="Name of the throw-away cluster.")
    def check(nodes: int, pods_per_node: int, name: str) -> None:
        """Self-check: Go hollow nodes become Ready and run a Deployment's pods."""
        from benchlib import run_cli

        run_cli(lambda: _self_check(nodes, pods_per_node, name))

    check()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
