"""What the integration tests share: the CLI, kubectl on the session cluster, waiting."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from pykubemark.kube.nodes import is_ready
from pykubemark.measure.audit import Request, read_audit
from pykubemark.waiting import ReadyCount

CLI = [sys.executable, "-m", "pykubemark"]


def run_cli(*args: str, check: bool = True, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"pykubemark {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@dataclass
class Cluster:
    name: str

    @property
    def state(self):
        from pykubemark.cluster.state import load

        return load(self.name)

    @property
    def local(self):
        from pykubemark.cluster.control_plane import LocalCluster

        return LocalCluster.load(self.name)

    @property
    def kubeconfig(self) -> str:
        return self.state.kubeconfig

    @property
    def audit_log(self) -> Path:
        return self.local.dir / "logs" / "audit.log"

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120,
                stdin: str | None = None) -> str:
        from pykubemark.provision.binaries import find_kubectl

        kubectl = find_kubectl()
        assert kubectl is not None
        result = subprocess.run([str(kubectl), "--kubeconfig", self.kubeconfig, *args],
                                capture_output=True, text=True, timeout=timeout, input=stdin)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
        return result.stdout

    def get_json(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def create_namespace(self, name: str) -> None:
        """A namespace pods can be created in (`LocalCluster.namespace_ready`)."""
        self.kubectl("create", "namespace", name, check=False)
        local = self.local
        wait_for(f"namespace {name} to take pods",
                 lambda: local.namespace_ready(name))


def wait_for(what: str, check: Callable[[], object], timeout: float = 120,
             interval: float = 1.0) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)



#: Each hollow kubelet is ``system:node:<its name>`` (TLS bootstrap): a user prefix, which
#: `hollow_audit` folds every kubelet's requests under. The proxies share one user.
KUBELET_USER = "system:node:"
PROXY_USER = "system:kube-proxy"


def hollow_audit(path: Path, *, since: dt.datetime | None = None,
                 until: dt.datetime | None = None,
                 users: Iterable[str] = (KUBELET_USER, PROXY_USER)) -> Iterator[Request]:
    """The audit log's requests of hollow kubelets and/or proxies, each kubelet's user
    (system:node:<name>) replaced by KUBELET_USER so rows add up over nodes."""
    wanted = set(users)
    for request in read_audit(path, since=since, until=until):
        user = KUBELET_USER if request.user.startswith(KUBELET_USER) else request.user
        if user in wanted:
            yield msgspec.structs.replace(request, user=user)


class Fleet:
    """`pykubemark hollow` as a user runs it: a child process, stopped with Ctrl-C."""

    def __init__(self, cluster: Cluster, nodes: int, prefix: str, *extra: str) -> None:
        local = cluster.local
        self.cluster = cluster
        self.nodes = nodes
        self.prefix = prefix
        self.names = [f"{prefix}-{i}" for i in range(nodes)]
        self.log = local.dir / "logs" / f"fleet-{prefix}.log"
        self.started = utcnow()
        net = local.state.hollow_network
        # The cluster's hollow-node addresses, which its node proxy accepts.
        addresses = (["--kubelet-netns", net.netns, "--node-ip-base", net.cidr]
                     if net and net.netns and "--no-kubelet-api" not in extra
                     and "--kubelet-address" not in extra else [])
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*CLI, "hollow", "--kubeconfig", str(local.kubeconfig_for("kubelet-bootstrap")),
                 "--proxy-kubeconfig", str(local.kubeconfig_for("hollow-proxy")),
                 "--nodes", str(nodes), "--prefix", prefix, *addresses, *extra],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

    def nodes_json(self) -> list[dict]:
        items = self.cluster.get_json("nodes")["items"]
        return [n for n in items if n["metadata"]["name"] in set(self.names)]

    def ready(self) -> int:
        """Nodes Ready and schedulable: the not-ready taint that admission puts on every
        new Node is gone once the node-lifecycle controller has seen it Ready."""
        return sum(is_ready(n) and not n["spec"].get("taints") for n in self.nodes_json())

    def wait_ready(self, timeout: float = 180) -> None:
        waiting = ReadyCount(f"{self.prefix} nodes Ready and untainted", timeout=timeout)
        while not waiting.done(self.ready(), self.nodes):
            assert self.proc.poll() is None, f"the fleet exited (log: {self.log})"
            if line := waiting.overdue():
                raise AssertionError(line)
            time.sleep(2)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT, as Ctrl-C
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode


def ready_transition(node: dict) -> str:
    return next(c["lastTransitionTime"] for c in node["status"]["conditions"]
                if c["type"] == "Ready")
