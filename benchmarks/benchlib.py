"""What the benchmarks share: a throw-away cluster, pykubemark's hollow fleet beside the
Go one, the cluster's admin through the project's client, the pod cycle both sides go
through, and results written to disk as they are measured.

The benchmarks are scripts, not part of the package: they use pykubemark as a user
would — its control plane, its client (`pykubemark.kube`), the load generator's
templates (`pykubemark.load.templates`) — and keep here only what is theirs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import click
import orjson
import psutil
from rich.console import Console

from pykubemark.cluster.control_plane import LocalCluster, UpOptions, python_argv
from pykubemark.cluster.hollow import ready_nodes
from pykubemark.cluster.processes import last_lines
from pykubemark.cluster.state import Proc
from pykubemark.errors import UserError
from pykubemark.files import write_atomic
from pykubemark.kube import load_kubeconfig
from pykubemark.kube.blocking import call
from pykubemark.kube.client import JSON, ApiError
from pykubemark.kube.config import KubeConfig
from pykubemark.load import templates
from pykubemark.measure.resources import process_tree
from pykubemark.profiles import REAL_NODES_RUNTIME, runtime_profile
from pykubemark.provision.releases import default_release

REPO = Path(__file__).resolve().parent.parent
#: Committed: every figure in the docs names its file here.
RESULTS_DIR = REPO / "benchmarks" / "results"
console = Console(stderr=True)
#: Tables go to stdout, wide enough for their columns even when it is not a terminal.
out = Console(width=None if sys.stdout.isatty() else 160)
#: Any image will do: neither hollow kubelet pulls or runs anything.
IMAGE = "registry.k8s.io/pause:3.10"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(when: dt.datetime | None) -> str | None:
    return when.isoformat() if when else None


def timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


# -- running a benchmark -------------------------------------------------------------------
def _sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_cli(body: Callable[[], None]) -> None:
    """Run ``body`` so that SIGTERM unwinds like Ctrl-C (every ``finally`` runs and the
    cluster is torn down), and a `UserError` is one line, not a traceback."""
    signal.signal(signal.SIGTERM, _sigterm)
    # A shell starts background jobs with SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler; `kill -INT` must stop a benchmark cleanly all the same.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        body()
    except UserError as exc:
        exc.show()
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; partial results were kept[/]")
        raise SystemExit(130) from None


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Clean-up that a second Ctrl-C must not cut short (saving results, stopping the
    cluster): SIGINT and SIGTERM are ignored meanwhile, and an error is printed rather
    than raised, so the clean-up after it still runs."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT,
                                                                     signal.SIGTERM)}
    try:
        yield
    except Exception:
        console.print_exception()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def recording_status(data: dict[str, Any], key: str = "status") -> Iterator[None]:
    """How the block ended, into ``data[key]``: ``complete``, ``interrupted`` (Ctrl-C or
    SIGTERM) or ``failed: <why>``, so that a result file says whether its figures are
    whole."""
    try:
        yield
        data[key] = "complete"
    except BaseException as exc:
        data[key] = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"failed: {exc}"
        raise


def start_cluster(name: str, *, audit: bool = False, bin_dir: Path | None = None,
                  apiserver_args: Iterable[str] = (), size: int = 0,
                  kubemark: bool = False) -> LocalCluster:
    """A fresh local control plane, sized for ``size`` nodes as `up --nodes` sizes it
    (explicit ``apiserver_args`` win); ``kubemark``: the Go kubemark must be there too.
    Refuses a name that is running (maybe someone else's benchmark): only clusters this
    process started are ever stopped."""
    from pykubemark.provision import ensure_binaries

    binaries = ensure_binaries(bin_dir, allow_build=False)
    if kubemark and binaries.kubemark is None:
        raise UserError("no kubemark binary found (pykubemark provision builds it)")
    options = UpOptions(name=name, audit=audit, apiserver_args=tuple(apiserver_args),
                        size=size)
    with console.status(f"starting cluster '{name}'"):
        cluster = LocalCluster.up(options, binaries)
    console.print(f"cluster [bold]{name}[/] up at {cluster.state.server} ({cluster.dir})")
    return cluster


def _results_dir(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    try:
        value.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.BadParameter(f"cannot write results there: {exc.strerror}") from None
    return value


def results_dir_option(default: Path = RESULTS_DIR) -> Callable[[Callable[..., Any]], Any]:
    """``--results-dir``: made when missing (results are written as they come, so a
    missing directory must not wait until the first one to fail)."""
    return click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path),
                        default=default, show_default=True, callback=_results_dir)


def _hollow_runtime(ctx: click.Context, param: click.Parameter, value: str) -> Path | None:
    return None if value == "none" else runtime_profile(value)


def hollow_runtime_option(why: str = "") -> Callable[[Callable[..., Any]], Any]:
    """``--hollow-runtime`` of the benchmarks that put hollow nodes beside real ones: the
    real nodes' runtime time on the hollow side (a profile file, or None)."""
    return click.option("--hollow-runtime", "runtime", default=REAL_NODES_RUNTIME,
                        show_default=True, callback=_hollow_runtime,
                        help="The runtime profile (src/pykubemark/profiles/runtime/) put on "
                        f"the hollow nodes' release profile: the real nodes' runtime time{why}; "
                        "'none' for the release profile alone.")


def runtime_name(runtime: Path | None) -> str:
    """What a result file records of ``--hollow-runtime``."""
    return runtime.stem if runtime else "none"


def tear_down(cluster: LocalCluster, label: str, *, say_stopped: bool = True) -> None:
    """Stop a benchmark's cluster; a second Ctrl-C must not cut it short."""
    with shielded(), console.status(f"tearing down cluster '{label}'"):
        cluster.down()
    if say_stopped:
        console.print(f"cluster '{label}' stopped")


def start_py_hollow(cluster: LocalCluster, nodes: int, *, prefix: str = "py",
                    processes: int = 1, fidelity: str | None = None, cpu: int | None = None,
                    extra: Iterable[str] = (), wrap: Iterable[str] = ()) -> Proc:
    """`pykubemark hollow` as a child of the cluster (stopped by `down`), unsupervised
    (no supervisor process in what is measured): each kubelet bootstraps its own
    system:node:<name> identity, the proxies are system:kube-proxy. ``cpu``: pinned to
    that core (taskset); ``wrap``: a command that runs it (nsenter, env)."""
    args = ["hollow", "--kubeconfig", str(cluster.kubeconfig_for("kubelet-bootstrap")),
            "--proxy-kubeconfig", str(cluster.kubeconfig_for("hollow-proxy")),
            "--nodes", str(nodes), "--prefix", prefix, "--processes", str(processes)]
    if fidelity:
        args += ["--fidelity", fidelity]
    if fidelity == "lite":
        # A node may watch only its own pods (1.32+): the lite fleet's shared watches of
        # every pod and node need a user allowed to make them, as `up` gives it.
        args += ["--watch-kubeconfig", str(cluster.kubeconfig_for("hollow-kubelet"))]
    argv = python_argv(*args, *extra)
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    return cluster.add_process(f"hollow-{prefix}", [*wrap, *argv])


def live_tree(proc: Proc | None) -> list[psutil.Process]:
    """``proc`` and its descendants as they are now; empty when it is gone (or none)."""
    live = proc.process() if proc else None
    return [] if live is None else process_tree(live)


def check_proc(proc: Proc) -> None:
    if not proc.alive():
        raise UserError(f"{proc.name} exited: {last_lines(proc.log, 3)} (log: {proc.log})")


class NotReadyInTime(UserError):
    """A fleet that did not get Ready in time: for a search of the largest size, a
    result, not an error."""


def wait_ready(cluster: LocalCluster, expected: dict[str, int], *,
               check: Callable[[], None], timeout: float) -> float:
    """Until ``expected[prefix]`` nodes of each prefix are Ready; returns the seconds
    it took. ``check`` raises when a process we depend on died."""
    started = time.monotonic()
    deadline = started + timeout
    with console.status("waiting for hollow nodes") as status:
        while True:
            check()
            ready = {prefix: ready_nodes(cluster, prefix) for prefix in expected}
            status.update("hollow nodes Ready: " + ", ".join(
                f"{p} {ready[p]}/{n}" for p, n in expected.items()))
            if all((ready[p] or 0) >= n for p, n in expected.items()):
                break
            if time.monotonic() > deadline:
                raise NotReadyInTime(f"hollow nodes not Ready after {timeout:.0f}s: {ready}")
            time.sleep(1.0)
    took = time.monotonic() - started
    console.print(f"all hollow nodes Ready after {took:.0f}s: {expected}")
    return took


def sleep_checked(seconds: float, check: Callable[[], None], what: str) -> None:
    """Sleep, showing a countdown, and fail as soon as a process we measure died."""
    end = time.monotonic() + seconds
    with console.status(what) as status:
        while (left := end - time.monotonic()) > 0:
            check()
            status.update(f"{what}: {left:.0f}s left")
            time.sleep(min(left, 2.0))


class ResultFile:
    """A JSON document rewritten atomically after every step, so that an interrupted
    run leaves everything measured until then."""

    def __init__(self, kind: str, directory: Path = RESULTS_DIR) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{kind}-{timestamp()}.json"
        self.data: dict[str, Any] = {}

    @classmethod
    def reopen(cls, path: Path) -> ResultFile:
        """A result written before, to be analysed again and rewritten in place."""
        result = cls.__new__(cls)
        result.path = path
        try:
            result.data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: not a readable result file ({exc})") from None
        return result

    def save(self) -> None:
        write_atomic(self.path, json.dumps(self.data, indent=2, default=str) + "\n")


# -- the cluster's admin ----------------------------------------------------------------------
def admin_config(cluster: LocalCluster) -> KubeConfig:
    """The cluster's admin (system:masters, exempt from priority and fairness), for
    `pykubemark.kube.Client` and `pykubemark.kube.blocking.call`."""
    return load_kubeconfig(Path(cluster.state.kubeconfig))


class Api:
    """The admin's synchronous calls, as `pykubemark.kube.blocking.call` makes them (a
    connection per call: the benchmark's own requests are not what is measured), with
    the answer decoded. Failures are the client's: `ApiError` for an answer that is not
    2xx, `OSError` for none."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.config = admin_config(cluster)

    def request(self, method: str, path: str, body: Any = None, *,
                params: dict[str, str] | None = None, content_type: str = JSON) -> Any:
        answer = call(self.config, method, path, params=params, body=body,
                      content_type=content_type)
        return orjson.loads(answer or b"null")

    def get(self, path: str, **params: str) -> Any:
        return self.request("GET", path, params=params or None)

    def text(self, path: str) -> str:
        """A non-JSON answer, e.g. the apiserver's /metrics."""
        return call(self.config, "GET", path).decode()


def wait_namespace(cluster: LocalCluster, namespace: str, timeout: float = 60.0) -> None:
    """Create ``namespace`` (if missing) and wait until the controllers readied it for
    pods (`LocalCluster.namespace_ready`): pods created before are refused and retried
    with back-off, which would skew the timings."""
    with contextlib.suppress(ApiError):
        Api(cluster).request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    deadline = time.monotonic() + timeout
    while not cluster.namespace_ready(namespace):
        if time.monotonic() > deadline:
            raise UserError(f"namespace {namespace}: not ready for pods after {timeout:.0f}s")
        time.sleep(0.5)


# -- the pod cycle -------------------------------------------------------------------------
def deployment(name: str, replicas: int, nodes: list[str], image: str = IMAGE) -> dict[str, Any]:
    """The load generator's Deployment (`pykubemark.load.templates`), pinned to ``nodes``
    and spread evenly over them.

    Required node affinity on ``kubernetes.io/hostname`` keeps each side's pods on its
    own nodes without labelling anything; a topology spread constraint with maxSkew 1
    (counting only the nodes the affinity admits) makes the load per node equal,
    ``replicas / len(nodes)`` on every node of both sides.
    """
    body = templates.workload("Deployment", name, replicas=replicas, labels={"app": name},
                              image=image, config=False, node_selector={})
    spec = body["spec"]["template"]["spec"]
    spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{
            "key": "kubernetes.io/hostname", "operator": "In", "values": nodes}]}]}}}
    spec["topologySpreadConstraints"] = [{
        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": body["spec"]["selector"]["matchLabels"]}}]
    return body


class PodCycle:
    """Both sides' pods through one cycle, at the same time: create a Deployment per side
    (``pods_per_node`` on each of its nodes), wait until all are Running, hold, scale to
    0, wait until all are gone.

    The windows (``times``) are shared by the sides, so whatever else happens in the
    cluster meanwhile happens to both: ``start`` is create → all Running + settle,
    ``hold`` is the rest of the hold, ``stop`` is scale-down → all gone + settle.
    ``mark(name)`` is called at each boundary (create, start_end, scale_down, stop_end).
    """

    BOUNDARIES = ("create", "start_end", "scale_down", "stop_end")

    def __init__(self, cluster: LocalCluster, sides: dict[str, list[str]], *,
                 pods_per_node: int, hold: float, settle: float, namespace: str = "bench",
                 mark: Callable[[str], None] = lambda _name: None, image: str = IMAGE) -> None:
        self.cluster = cluster
        self.api = Api(cluster)
        self.sides = sides
        self.pods_per_node = pods_per_node
        self.hold = hold
        self.settle = settle
        self.namespace = namespace
        self.mark = mark
        self.image = image
        self.times: dict[str, dt.datetime] = {}
        self.running_after: dict[str, float] = {}
        self.gone_after: dict[str, float] = {}
        self.spread: dict[str, dict[int, int]] = {}

    def pods(self, side: str) -> int:
        return self.pods_per_node * len(self.sides[side])

    def name(self, side: str) -> str:
        return f"bench-{side}"

    def _mark(self, boundary: str) -> None:
        self.times[boundary] = utcnow()
        self.mark(boundary)

    def run(self, check: Callable[[], None] = lambda: None) -> None:
        wait_namespace(self.cluster, self.namespace)
        base = templates.collection("Deployment", self.namespace)
        self._mark("create")
        created = time.monotonic()
        for side, nodes in self.sides.items():
            self.api.request("POST", base, deployment(self.name(side), self.pods(side), nodes,
                                                    self.image))
        total = sum(self.pods(s) for s in self.sides)
        self._wait("Running", created, self.running_after, check, timeout=180 + total / 5,
                   done=lambda side, pods: self._all_running(side, pods))
        self._sleep(self.settle, check, "settling")
        self._mark("start_end")
        self._sleep(max(0.0, self.hold - self.settle), check, "holding pods Running")
        self._mark("scale_down")
        scaled = time.monotonic()
        for side in self.sides:
            self.api.request("PATCH", f"{base}/{self.name(side)}",
                             {"spec": {"replicas": 0}},
                             content_type="application/merge-patch+json")
        self._wait("gone", scaled, self.gone_after, check, timeout=180 + total / 5,
                   done=lambda _side, pods: not pods)
        self._sleep(self.settle, check, "settling")
        self._mark("stop_end")
        for side in self.sides:
            with contextlib.suppress(ApiError):
                self.api.request("DELETE", f"{base}/{self.name(side)}")

    def _all_running(self, side: str, pods: list[dict[str, Any]]) -> bool:
        running = [p for p in pods if p.get("status", {}).get("phase") == "Running"
                   and not p["metadata"].get("deletionTimestamp")]
        if len(running) < self.pods(side):
            return False
        per_node = Counter(p["spec"]["nodeName"] for p in running)
        # Nodes of this side that got no pod show as 0; the spread is {pods: nodes}.
        counts = [per_node.get(n, 0) for n in self.sides[side]]
        self.spread[side] = dict(sorted(Counter(counts).items()))
        return True

    def _wait(self, what: str, since: float, record: dict[str, float],
              check: Callable[[], None], *, timeout: float,
              done: Callable[[str, list[dict[str, Any]]], bool]) -> None:
        path = templates.collection("Pod", self.namespace)
        with console.status(f"waiting for pods {what}") as status:
            while len(record) < len(self.sides):
                check()
                shown = []
                for side in self.sides:
                    if side in record:
                        continue
                    pods = self.api.get(path, labelSelector=f"app={self.name(side)}")["items"]
                    if done(side, pods):
                        record[side] = time.monotonic() - since
                    shown.append(f"{side}: {len(pods)} pods")
                status.update(f"waiting for pods {what}: " + ", ".join(shown))
                if time.monotonic() - since > timeout:
                    raise UserError(f"pods not {what} after {timeout:.0f}s ({shown})")
                time.sleep(0.5)
        console.print(f"pods {what}: " + ", ".join(
            f"{side} after {record[side]:.1f}s" for side in self.sides))

    @staticmethod
    def _sleep(seconds: float, check: Callable[[], None], what: str) -> None:
        if seconds > 0:
            sleep_checked(seconds, check, what)


def environment() -> dict[str, Any]:
    """What the numbers depend on: the machine and the software versions."""
    import platform

    return {
        # what start_cluster runs (fidelity.py records its --release apart)
        "kubernetes_default": str(default_release()),
        "host_cpus": os.cpu_count(),
        "memory_mib": psutil.virtual_memory().total >> 20,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "argv": sys.argv,
    }
