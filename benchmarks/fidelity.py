"""Fidelity: does a pykubemark hollow node ask the apiserver what a Go kubemark hollow
node asks, as often? Measured side by side, in the same run, on one control plane.

N Go hollow nodes (``pykubemark.engines.gokubemark``) and N pykubemark hollow nodes run
against one local cluster whose apiserver writes an audit log. Each side authenticates
as users of its own (kubelet and proxy apart), so the audit log — the cluster's own
accounting, not either client's — says who sent what. The run has four phases, the
same window for both sides, so whatever else the cluster does meanwhile happens to
both:

* startup: from launch until the nodes have settled (per node);
* idle: no pods (per node per minute);
* pod cycle: a Deployment per side, ``--pods-per-node`` pods on every node of that
  side, create → Running (``start``, per pod), held Running (``hold``, per node per
  minute), scaled to 0 → gone (``stop``, per pod).

For every (component, verb, resource[/subresource]) it prints Go's rate, pykubemark's,
their ratio, the reference's Go rate where it has one, and flags rows outside ±10 %;
then both sides' watch sets (resource + selectors, node names folded), and pod timing
(binding → Running, delete → gone) from the same log. Results go to
``results/fidelity-<timestamp>.json`` after every phase; the cluster is always torn
down, also on Ctrl-C. kube-apiserver 1.20 logs a watch only when it ends, so the
interim files undercount watches still open; the final analysis runs after both fleets
are stopped (``"final": true``), when every watch is in the log.

Then (unless ``--no-apiserver-side``) what each fleet costs the apiserver, which /metrics
cannot split by client: two back-to-back runs of the same schedule, Go kubemark alone and
then pykubemark alone, each on a fresh control plane (no audit log), read from the
apiserver's side only: kube-apiserver and etcd CPU-seconds (/proc) per node-minute idle
and per pod of the cycle (raw and net of the idle rate), response bytes by
verb/resource (``apiserver_response_sizes`` sums), APF dispatches by flow schema and
priority level (``apiserver_flowcontrol_dispatched_requests_total``: where hollow
kubelet traffic lands), and ESTABLISHED connections on the apiserver's port per node
(above the control plane's own). ``apiserver_side.ratios`` holds pykubemark/Go per row.

    .venv/bin/python benchmarks/fidelity.py --nodes 10 --idle-minutes 10
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import msgspec
import psutil
from benchlib import (
    Api,
    PodCycle,
    ResultFile,
    check_proc,
    console,
    environment,
    iso,
    out,
    recording_status,
    results_dir_option,
    run_cli,
    shielded,
    sleep_checked,
    start_cluster,
    start_py_hollow,
    tear_down,
    utcnow,
    wait_ready,
)
from rich.table import Table
from timestamps import measure as measure_timestamps

from pykubemark.cluster import processes
from pykubemark.cluster.control_plane import LocalCluster
from pykubemark.cluster.state import Proc
from pykubemark.engines.gokubemark import GoFleet
from pykubemark.measure.audit import Request, read_audit, watch_set
from pykubemark.measure.resources import cpu_seconds, process_tree

#: user in the audit log -> (side, component). Every kubelet is its own
#: system:node:<name> (pykubemark's by TLS bootstrap, the Go ones with certificates from
#: the cluster CA); `fold_user` folds them by node-name prefix: go-* and py-*.
GO_NODES, PY_NODES = "system:node:go-*", "system:node:py-*"
USERS = {
    GO_NODES: ("go", "kubelet"),
    "kubemark:go-kubelet": ("go", "kubelet"),  # a Go fleet with one shared identity
    "kubemark:go-proxy": ("go", "proxy"),
    PY_NODES: ("py", "kubelet"),
    "system:kube-proxy": ("py", "proxy"),
}


def fold_user(request: Request) -> Request:
    for folded in (GO_NODES, PY_NODES):
        if request.user.startswith(folded[:-1]):
            return msgspec.structs.replace(request, user=folded)
    return request
REFERENCE = Path(__file__).resolve().parent / "reference" / "kubemark-go-1.20.json"
TOLERANCE = 0.10
#: When neither side sent this many requests, a deviation says little (a watch reopened
#: every 5–10 minutes is ~1 request per node in a short window); such rows are flagged
#: "few" rather than hidden.
FEW = 20
#: Seconds for the apiserver to notice closed watches and log them.
AUDIT_SETTLE = 3.0
UNITS = {"node": "per node", "node-minute": "per node per minute", "pod": "per pod"}


@dataclass
class Phase:
    """A window of the run, the same for both sides, and how its counts are normalised."""

    name: str
    unit: str  # node | node-minute | pod
    start: dt.datetime
    end: dt.datetime | None = None
    partial: bool = False

    @property
    def minutes(self) -> float:
        assert self.end is not None
        return (self.end - self.start).total_seconds() / 60


@dataclass
class Row:
    component: str
    verb: str
    resource: str
    counts: dict[str, int]
    values: dict[str, float]
    reference: float | None = None

    @property
    def ratio(self) -> float | None:
        go, py = self.values["go"], self.values["py"]
        return py / go if go else None

    @property
    def flag(self) -> str:
        go, py = self.counts["go"], self.counts["py"]
        if not go or not py:
            verdict = "only go" if go else "only py"
        elif abs(self.values["py"] / self.values["go"] - 1) > TOLERANCE:
            verdict = "OUT"
        else:
            return "ok"
        return verdict + (" (few)" if max(go, py) < FEW else "")

    def as_json(self) -> dict[str, Any]:
        return {"component": self.component, "verb": self.verb, "resource": self.resource,
                "go": self.values["go"], "py": self.values["py"], "ratio_py_go": self.ratio,
                "go_count": self.counts["go"], "py_count": self.counts["py"],
                "reference_go": self.reference, "flag": self.flag}


def load_reference() -> dict[tuple[str, str, str, str], float]:
    """(phase, component, verb, resource) -> the reference's Go value, where it has one."""
    try:
        data = json.loads(REFERENCE.read_text())
    except (OSError, ValueError):
        return {}
    values: dict[tuple[str, str, str, str], float] = {}
    for key, value in data.get("idle_per_node_per_minute", {}).items():
        component, verb, resource = key.split()
        values[("idle", component, verb, resource)] = value
    for phase, rows in data.get("per_pod", {}).items():
        for key, value in rows.items():
            component, verb, resource = key.split()
            values[(phase, component, verb, resource)] = value
    return values


def wait_for_audit(path: Path, until: dt.datetime, timeout: float = 20.0) -> None:
    """Until the audit log holds an event staged after ``until``: the log backend
    writes asynchronously, and a window must not be counted before it is complete."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with path.open("rb") as handle:
                handle.seek(max(0, path.stat().st_size - 65536))
                lines = handle.read().splitlines()
        except OSError:
            lines = []
        for line in reversed(lines[:-1] if lines and not lines[-1].endswith(b"}") else lines):
            try:
                stamp = json.loads(line).get("stageTimestamp", "")
            except ValueError:
                continue
            if stamp and dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")) > until:
                return
            break
        time.sleep(0.5)


@dataclass
class Fidelity:
    cluster: LocalCluster
    fleet: GoFleet
    nodes: int
    results: ResultFile
    py_proc: Proc | None = None
    phases: list[Phase] = field(default_factory=list)
    pods: dict[str, int] = field(default_factory=dict)
    reference: dict[tuple[str, str, str, str], float] = field(default_factory=load_reference)
    launched: dt.datetime | None = None

    @property
    def audit_log(self) -> Path:
        return self.cluster.dir / "logs" / "audit.log"

    @property
    def node_names(self) -> dict[str, list[str]]:
        return {"go": self.fleet.names, "py": [f"py-{i}" for i in range(self.nodes)]}

    def check(self) -> None:
        self.fleet.check_alive()
        if self.py_proc is not None:
            check_proc(self.py_proc)

    def begin(self, name: str, unit: str, start: dt.datetime | None = None) -> Phase:
        phase = Phase(name, unit, start or utcnow())
        self.phases.append(phase)
        return phase

    def end(self, phase: Phase, when: dt.datetime | None = None, *,
            analyse: bool = True) -> None:
        phase.end = when or utcnow()
        if analyse:
            self.analyse()

    # -- the run -------------------------------------------------------------------
    def run(self, *, startup_seconds: float, idle_minutes: float, pods_per_node: int,
            hold: float, settle: float, py_args: tuple[str, ...]) -> None:
        self.launched = utcnow()
        startup = self.begin("startup", "node", self.launched)
        self.py_proc = start_py_hollow(self.cluster, self.nodes, prefix="py", extra=py_args)
        with console.status("launching Go hollow nodes") as status:
            self.fleet.start(status.update)
        took = wait_ready(self.cluster, {"go": self.nodes, "py": self.nodes},
                          check=self.check, timeout=180 + self.nodes)
        self.results.data["ready_after_seconds"] = took
        # Startup ends `startup_seconds` after launch, but never before the slower side
        # has had 15 s to settle after its last node turned Ready.
        left = max(startup_seconds - (utcnow() - self.launched).total_seconds(), 15.0)
        sleep_checked(left, self.check, "startup")
        self.end(startup)

        if idle_minutes > 0:
            idle = self.begin("idle", "node-minute")
            sleep_checked(idle_minutes * 60, self.check, f"idle window ({idle_minutes:g} min)")
            self.end(idle)

        if pods_per_node > 0:
            open_phase: dict[str, Phase] = {}

            def mark(boundary: str) -> None:
                now = cycle.times[boundary]
                if boundary == "create":
                    open_phase["start"] = self.begin("start", "pod", now)
                elif boundary == "start_end":
                    self.end(open_phase.pop("start"), now)
                    # Pod timestamps as each side's kubelet wrote them (timestamps.py).
                    self.results.data["pod_timestamps"] = measure_timestamps(
                        cycle.api, self.audit_log, {s: cycle.name(s) for s in cycle.sides},
                        cycle.namespace, cycle.times["create"], now, rows_wanted=False)
                    self.results.save()
                    open_phase["hold"] = self.begin("hold", "node-minute", now)
                elif boundary == "scale_down":
                    # Counted with `stop`: the scale-down must not wait for the analysis.
                    self.end(open_phase.pop("hold"), now, analyse=False)
                    open_phase["stop"] = self.begin("stop", "pod", now)
                elif boundary == "stop_end":
                    self.results.data["pod_cycle"] = self.cycle_summary(cycle)
                    self.end(open_phase.pop("stop"), now)

            cycle = PodCycle(Api(self.cluster), self.node_names, pods_per_node=pods_per_node,
                             hold=hold, settle=settle, mark=mark)
            self.pods = {side: cycle.pods(side) for side in cycle.sides}
            cycle.run(check=self.check)

    @staticmethod
    def cycle_summary(cycle: PodCycle) -> dict[str, Any]:
        return {"pods": {s: cycle.pods(s) for s in cycle.sides},
                "pods_per_node": cycle.pods_per_node,
                "running_after_seconds": cycle.running_after,
                "gone_after_seconds": cycle.gone_after,
                "spread_pods_to_nodes": cycle.spread,
                "times": {k: iso(v) for k, v in cycle.times.items()}}

    def stop_nodes(self) -> None:
        """Stop both fleets, so that the apiserver logs their open watches.

        kube-apiserver 1.20 writes a watch's audit events (ResponseStarted as well as
        ResponseComplete) only when the watch ends, so a watch still open is missing
        from the log. Counting is by the time the request was received, so once the
        clients are gone every watch lands in the window it was opened in.
        """
        self.fleet.stop()
        if self.py_proc is not None:
            processes.stop([self.py_proc])
        time.sleep(AUDIT_SETTLE)

    def close_open_phases(self) -> None:
        """After an interruption: the phase under way ends now, marked partial."""
        for phase in self.phases:
            if phase.end is None:
                phase.end = utcnow()
                phase.partial = True

    # -- analysis --------------------------------------------------------------------
    def divisor(self, phase: Phase, side: str) -> float:
        if phase.unit == "node":
            return self.nodes
        if phase.unit == "node-minute":
            return self.nodes * phase.minutes
        return self.pods.get(side, 0)

    def rows(self, phase: Phase, requests: list[Request]) -> list[Row]:
        assert phase.end is not None
        counts: Counter[tuple[str, str, str, str]] = Counter()
        for request in requests:
            if phase.start <= request.time < phase.end:
                side, component = USERS[request.user]
                counts[(side, component, *request.row[1:])] += 1
        keys = sorted({key[1:] for key in counts})
        rows = []
        for component, verb, resource in keys:
            got = {side: counts[(side, component, verb, resource)] for side in ("go", "py")}
            values = {side: got[side] / d if (d := self.divisor(phase, side)) else 0.0
                      for side in got}
            rows.append(Row(component, verb, resource, got, values,
                            self.reference.get((phase.name, component, verb, resource))))
        return rows

    def errors(self, phase: Phase, requests: list[Request]) -> dict[str, int]:
        """Answers >= 400 per side, component, verb, resource and code: retries and
        conflicts are part of a client's behaviour, too."""
        assert phase.end is not None
        counts: Counter[str] = Counter()
        for r in requests:
            if phase.start <= r.time < phase.end and r.code >= 400:
                side, component = USERS[r.user]
                counts[f"{side} {component} {r.verb} {r.row[2]} {r.code}"] += 1
        return dict(sorted(counts.items()))

    def watches(self, requests: list[Request]) -> dict[str, Any]:
        names = [n for side in self.node_names.values() for n in side]
        by_side: dict[str, set[tuple[str, str, str]]] = {"go": set(), "py": set()}
        for user, resource, selectors in watch_set(requests, names):
            side, component = USERS[user]
            by_side[side].add((component, resource, selectors))
        return {
            "go": sorted(by_side["go"]), "py": sorted(by_side["py"]),
            "only_go": sorted(by_side["go"] - by_side["py"]),
            "only_py": sorted(by_side["py"] - by_side["go"]),
        }

    @staticmethod
    def pod_timing(requests: list[Request], namespace: str) -> dict[str, Any]:
        """Per side, seconds from the scheduler's binding to the kubelet's status write
        that said Running (the last before the deletion), and from the controller's
        DELETE to the kubelet's final DELETE (the pod is gone): the counts can agree
        while the timing does not."""
        pods: dict[str, dict[str, dt.datetime]] = {}
        for r in requests:
            if r.resource != "pods" or r.namespace != namespace or not r.name:
                continue
            marks = pods.setdefault(r.name, {})
            if r.verb == "create" and r.subresource == "binding":
                marks["bound"] = r.time
            elif r.user in USERS and r.verb == "patch" and r.subresource == "status" \
                    and "deleted" not in marks:
                marks["running"] = r.time
            elif r.verb == "delete" and r.user not in USERS:
                marks.setdefault("deleted", r.time)
            elif r.verb == "delete" and r.user in USERS:
                marks["gone"] = r.time
        spans: dict[str, dict[str, list[float]]] = {}
        for name, marks in pods.items():
            side = name.split("-")[1]
            for span, (a, b) in {"bound_to_running": ("bound", "running"),
                                 "delete_to_gone": ("deleted", "gone")}.items():
                if a in marks and b in marks:
                    spans.setdefault(side, {}).setdefault(span, []).append(
                        (marks[b] - marks[a]).total_seconds())
        return {side: {span: percentiles(values) for span, values in by_span.items()}
                for side, by_span in sorted(spans.items())}

    @staticmethod
    def pod_sequences(requests: list[Request], namespace: str) -> dict[str, Any]:
        """The hollow kubelet's requests for one pod, in order, with the median seconds
        after the scheduler's binding (``start``) or the controller's DELETE (``stop``):
        the most common sequence per side and phase, and how many pods followed it.
        Where counts agree but timing does not, this shows which step differs."""
        pods: dict[str, dict[str, Any]] = {}
        for r in requests:
            if r.resource != "pods" or r.namespace != namespace or not r.name:
                continue
            pod = pods.setdefault(r.name, {"start": [], "stop": []})
            if r.verb == "create" and r.subresource == "binding":
                pod["bound"] = r.time
            elif r.verb == "delete" and r.user not in USERS:
                pod.setdefault("deleted", r.time)
            elif r.user in USERS:
                label = r.verb + (f" {r.subresource}" if r.subresource else "") + \
                    (f" {r.code}" if r.code >= 400 else "")
                phase = "stop" if "deleted" in pod else "start"
                origin = pod.get("deleted" if phase == "stop" else "bound")
                if origin is not None:
                    pod[phase].append((label, (r.time - origin).total_seconds()))
        result: dict[str, Any] = {}
        for phase in ("start", "stop"):
            by_side: dict[str, Counter[tuple[str, ...]]] = {}
            offsets: dict[tuple[str, tuple[str, ...]], list[list[float]]] = {}
            for name, pod in pods.items():
                if not pod[phase]:
                    continue
                side = name.split("-")[1]
                signature = tuple(label for label, _ in pod[phase])
                by_side.setdefault(side, Counter())[signature] += 1
                offsets.setdefault((side, signature), []).append([t for _, t in pod[phase]])
            for side, signatures in sorted(by_side.items()):
                signature, count = signatures.most_common(1)[0]
                columns = list(zip(*offsets[(side, signature)], strict=True))
                result.setdefault(side, {})[phase] = {
                    "pods": sum(signatures.values()), "following": count,
                    "sequence": [[label, round(sorted(times)[len(times) // 2], 2)]
                                 for label, times in zip(signature, columns, strict=True)],
                }
        return result

    def analyse(self, *, final: bool = False) -> None:
        """Count every finished phase from the audit log and save the results. Until
        the ``final`` analysis (after `stop_nodes`), watches still open are missing."""
        done = [p for p in self.phases if p.end is not None]
        if not done or self.launched is None:
            return
        until = max(p.end for p in done if p.end is not None)
        wait_for_audit(self.audit_log, until)
        everyone = [fold_user(r) for r in read_audit(self.audit_log, since=self.launched,
                                                      until=until)]
        requests = [r for r in everyone if r.user in USERS]
        phases = {}
        for phase in done:
            rows = self.rows(phase, requests)
            phases[phase.name] = {
                "unit": UNITS[phase.unit], "start": iso(phase.start), "end": iso(phase.end),
                "minutes": phase.minutes, "partial": phase.partial,
                "divisor": {s: self.divisor(phase, s) for s in ("go", "py")},
                "rows": [r.as_json() for r in rows],
                "errors": self.errors(phase, requests),
            }
        self.results.data["phases"] = phases
        self.results.data["final"] = final
        self.results.data["watch_sets"] = self.watches(requests)
        if self.pods:
            self.results.data["pod_timing_seconds"] = self.pod_timing(everyone, "bench")
            self.results.data["pod_sequences"] = self.pod_sequences(everyone, "bench")
        self.results.save()


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"n": len(ordered), "p50": rank(0.5), "p90": rank(0.9), "max": ordered[-1]}


# -- output -------------------------------------------------------------------------------
def fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def print_results(data: dict[str, Any]) -> None:
    for name, phase in data.get("phases", {}).items():
        title = (f"{name}: {phase['unit']}  ({phase['minutes']:.1f} min"
                 f"{', partial' if phase['partial'] else ''}; "
                 f"go ÷ {phase['divisor']['go']:.4g}, py ÷ {phase['divisor']['py']:.4g})")
        table = Table(title=title, title_justify="left")
        for column in ("component", "verb", "resource"):
            table.add_column(column)
        for column in ("go", "py", "py/go", "ref go", "n go", "n py"):
            table.add_column(column, justify="right")
        table.add_column("±10 %")
        for row in phase["rows"]:
            flag = row["flag"]
            style = "green" if flag == "ok" else ("yellow" if "few" in flag else "bold red")
            table.add_row(row["component"], row["verb"], row["resource"], fmt(row["go"]),
                          fmt(row["py"]), fmt(row["ratio_py_go"]), fmt(row["reference_go"]),
                          str(row["go_count"]), str(row["py_count"]),
                          f"[{style}]{flag}[/]")
        out.print(table)
        if phase["errors"]:
            out.print("  answers >= 400: " + ", ".join(
                f"{k}: {v}" for k, v in phase["errors"].items()))
    watches = data.get("watch_sets")
    if watches:
        both = sorted(set(map(tuple, watches["go"])) | set(map(tuple, watches["py"])))
        go, py = set(map(tuple, watches["go"])), set(map(tuple, watches["py"]))
        table = Table(title="watch sets (list + watch; node names folded)", title_justify="left")
        for column in ("component", "resource", "selectors", "go", "py"):
            table.add_column(column)
        for key in both:
            mark = {s: "[green]✓[/]" if key in got else "[bold red]–[/]"
                    for s, got in (("go", go), ("py", py))}
            table.add_row(*key, mark["go"], mark["py"])
        out.print(table)
    cycle = data.get("pod_cycle")
    if cycle:
        def seconds(values: dict[str, float]) -> str:
            return ", ".join(f"{side} {value:.1f}s" for side, value in values.items())

        out.print(f"pod cycle: pods {cycle['pods']}; spread {{pods on a node: nodes}} "
                  f"{cycle['spread_pods_to_nodes']}; all Running after "
                  f"{seconds(cycle['running_after_seconds'])}; all gone after "
                  f"{seconds(cycle['gone_after_seconds'])}")
    timing = data.get("pod_timing_seconds")
    if timing:
        table = Table(title="pod timing from the audit log (seconds)", title_justify="left")
        for column in ("side", "span", "n", "p50", "p90", "max"):
            table.add_column(column, justify="left" if column in ("side", "span") else "right")
        for side, spans in timing.items():
            for span, stats in spans.items():
                table.add_row(side, span, str(stats["n"]), f"{stats['p50']:.2f}",
                              f"{stats['p90']:.2f}", f"{stats['max']:.2f}")
        out.print(table)
    sequences = data.get("pod_sequences")
    if sequences:
        table = Table(title="a pod's requests from its hollow kubelet (most common sequence; "
                      "median seconds after binding / after the controller's DELETE)",
                      title_justify="left")
        for column in ("side", "phase", "pods", "sequence"):
            table.add_column(column)
        for side, phases in sequences.items():
            for phase, got in phases.items():
                table.add_row(side, phase, f"{got['following']}/{got['pods']}", ", ".join(
                    f"{label} +{offset:g}" for label, offset in got["sequence"]))
        out.print(table)


# -- the apiserver's side: what each fleet costs it, one side per fresh control plane ------
#: /metrics families read before and after each window (counters and histogram sums).
METRIC_FAMILIES = ("apiserver_response_sizes_sum", "apiserver_response_sizes_count",
                   "apiserver_flowcontrol_dispatched_requests_total",
                   "apiserver_request_duration_seconds_sum", "etcd_request_duration_seconds_count")
_SAMPLE = re.compile(r'^(\w+)\{([^}]*)\} ([0-9.eE+-]+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The apiserver's own /metrics (the families above), as {(name, labels): value}."""
    text = api.text("/metrics")
    samples = {}
    for line in text.splitlines():
        if not line.startswith(METRIC_FAMILIES):
            continue
        if (m := _SAMPLE.match(line)) is not None:
            samples[(m[1], tuple(sorted(_LABEL.findall(m[2]))))] = float(m[3])
    return samples


def process_cpu(proc: Proc | None) -> float:
    """CPU seconds (user + system) of a process we started and its children, from /proc."""
    handle = proc.process() if proc is not None else None
    return cpu_seconds(process_tree(handle)) if handle is not None else 0.0


def apiserver_connections(cluster: LocalCluster) -> int:
    """ESTABLISHED TCP connections the apiserver holds on its serving port (kernel's view,
    from the apiserver's side: whoever the clients are)."""
    proc = cluster.state.proc("kube-apiserver")
    handle = proc.process() if proc is not None else None
    if handle is None:
        return 0
    port = urllib.parse.urlsplit(cluster.state.server).port
    return sum(1 for c in handle.net_connections(kind="tcp")
               if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED)


@dataclass
class Snapshot:
    at: float
    apiserver_cpu: float
    etcd_cpu: float
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    #: The hollow fleet's own CPU: on a 2-core machine, what it takes is not the control
    #: plane's, and a starved fleet paces its requests differently.
    hollow_cpu: float = 0.0

    @classmethod
    def take(cls, cluster: LocalCluster, api: Api,
             hollow: Callable[[], float] = lambda: 0.0) -> Snapshot:
        return cls(time.monotonic(), process_cpu(cluster.state.proc("kube-apiserver")),
                   process_cpu(cluster.state.proc("etcd")), scrape(api), hollow())


def window_cost(first: Snapshot, last: Snapshot, divisor: float) -> dict[str, Any]:
    """apiserver and etcd CPU-seconds, response bytes by verb/resource and APF dispatches
    by flow schema/priority level between two snapshots, each divided by ``divisor``."""
    def delta(name: str, *keys: str) -> dict[str, float]:
        out: Counter[str] = Counter()
        for (metric, labels), value in last.metrics.items():
            if metric != name:
                continue
            got = dict(labels)
            change = value - first.metrics.get((metric, labels), 0.0)
            if change > 0:
                out[" ".join(got.get(k, "") or "-" for k in keys)] += change / divisor
        return {k: round(v, 3) for k, v in sorted(out.items())}

    return {
        "seconds": round(last.at - first.at, 1),
        "apiserver_cpu_s": round((last.apiserver_cpu - first.apiserver_cpu) / divisor, 5),
        "etcd_cpu_s": round((last.etcd_cpu - first.etcd_cpu) / divisor, 5),
        "hollow_cpu_s": round((last.hollow_cpu - first.hollow_cpu) / divisor, 5),
        "response_bytes": delta("apiserver_response_sizes_sum", "verb", "resource",
                                "subresource"),
        "responses": delta("apiserver_response_sizes_count", "verb", "resource", "subresource"),
        "apf_dispatched": delta("apiserver_flowcontrol_dispatched_requests_total",
                                "flow_schema", "priority_level"),
        # where a difference in CPU comes from: the apiserver's time per kind of request,
        # and the requests it sent etcd (quorum reads, writes) by operation and type
        "request_seconds": delta("apiserver_request_duration_seconds_sum", "verb", "resource",
                                 "subresource"),
        "etcd_requests": delta("etcd_request_duration_seconds_count", "operation", "type"),
    }


def cost_run(side: str, nodes: int, *, name: str, bin_dir: Path | None,
             startup_seconds: float, idle_minutes: float, pods_per_node: int, hold: float,
             settle: float, py_args: tuple[str, ...], go_start_interval: float,
             go_real_proxier: bool, baseline_minutes: float,
             save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """One side alone on a fresh control plane, the same schedule as the other side's run:
    the control plane alone (its own share of the idle rows, which at a few nodes is most
    of them), startup, idle window, pod cycle. Everything is read from the apiserver's
    side."""
    result: dict[str, Any] = {"side": side, "nodes": nodes, "status": "running"}
    cluster = start_cluster(f"{name}-{side}", audit=False, bin_dir=bin_dir)
    fleet: GoFleet | None = None
    try:
        with recording_status(result):
            api = Api(cluster)
            time.sleep(5)  # the control plane's own clients connect first
            if baseline_minutes > 0:
                alone = Snapshot.take(cluster, api)
                time.sleep(baseline_minutes * 60)
                last = Snapshot.take(cluster, api)
                result["control_plane_alone_per_minute"] = window_cost(
                    alone, last, (last.at - alone.at) / 60)
            baseline = apiserver_connections(cluster)
            launched = time.monotonic()
            if side == "go":
                fleet = GoFleet.for_cluster(cluster, nodes, start_interval=go_start_interval,
                                            real_proxier=go_real_proxier)
                fleet.start()
                names, check = fleet.names, fleet.check_alive
                go_fleet = fleet

                def hollow_cpu() -> float:
                    return cpu_seconds(go_fleet.live_processes())
            else:
                proc = start_py_hollow(cluster, nodes, prefix="py", extra=py_args)
                names = [f"py-{i}" for i in range(nodes)]

                def check() -> None:
                    check_proc(proc)

                def hollow_cpu() -> float:
                    return process_cpu(proc)
            wait_ready(cluster, {side: nodes}, check=check, timeout=180 + nodes)
            sleep_checked(max(startup_seconds - (time.monotonic() - launched), 15.0), check,
                          f"{side}: startup")
            before = Snapshot.take(cluster, api, hollow_cpu)
            if idle_minutes > 0:
                sleep_checked(idle_minutes * 60, check, f"{side}: idle window")
            held = apiserver_connections(cluster)
            after_idle = Snapshot.take(cluster, api, hollow_cpu)
            minutes = (after_idle.at - before.at) / 60
            result["connections"] = {"apiserver_established": held, "baseline": baseline,
                                     "per_node": round((held - baseline) / nodes, 2)}
            if minutes > 0:
                idle = window_cost(before, after_idle, nodes * minutes)
                own = result.get("control_plane_alone_per_minute")
                for key in ("apiserver_cpu_s", "etcd_cpu_s") if own else ():
                    idle[f"{key}_net_of_control_plane"] = round(idle[key] - own[key] / nodes, 5)
                result["idle_per_node_minute"] = idle
            save(result)
            if pods_per_node > 0:
                cycle = PodCycle(api, {side: names}, pods_per_node=pods_per_node, hold=hold,
                                 settle=settle)
                cycle.run(check=check)
                after_cycle = Snapshot.take(cluster, api, hollow_cpu)
                pods = cycle.pods(side)
                raw = window_cost(after_idle, after_cycle, pods)
                idle_rate = result.get("idle_per_node_minute", {})
                cycle_minutes = (after_cycle.at - after_idle.at) / 60
                for key in ("apiserver_cpu_s", "etcd_cpu_s"):
                    # Net of what the idle fleet would have cost over the same time.
                    raw[f"{key}_net_of_idle"] = round(
                        raw[key] - idle_rate.get(key, 0.0) * nodes * cycle_minutes / pods, 5)
                result["per_pod_cycle"] = raw
    finally:
        with shielded():
            if fleet is not None:
                fleet.stop()
            save(result)
        tear_down(cluster, f"{name}-{side}", say_stopped=False)
    return result


def cost_ratios(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """pykubemark / Go for the apiserver-side rows; target within ±10 %."""
    go, py = runs.get("go", {}), runs.get("py", {})

    def ratio(a: float | None, b: float | None) -> float | None:
        return b / a if a and b is not None else None

    rows: dict[str, Any] = {}
    for window in ("idle_per_node_minute", "per_pod_cycle"):
        g, p = go.get(window, {}), py.get(window, {})
        for key in ("apiserver_cpu_s", "etcd_cpu_s", "apiserver_cpu_s_net_of_control_plane",
                    "etcd_cpu_s_net_of_control_plane", "apiserver_cpu_s_net_of_idle",
                    "etcd_cpu_s_net_of_idle"):
            if key in g or key in p:
                rows[f"{window} {key}"] = {"go": g.get(key), "py": p.get(key),
                                           "ratio_py_go": ratio(g.get(key), p.get(key))}
        if g or p:
            gb = round(sum(g["response_bytes"].values())) if g else None
            pb_ = round(sum(p["response_bytes"].values())) if p else None
            rows[f"{window} response_bytes"] = {"go": gb, "py": pb_,
                                                "ratio_py_go": ratio(gb, pb_)}
    gc, pc = go.get("connections", {}), py.get("connections", {})
    rows["connections per node"] = {"go": gc.get("per_node"), "py": pc.get("per_node"),
                                    "ratio_py_go": ratio(gc.get("per_node"), pc.get("per_node"))}
    for values in rows.values():
        r = values["ratio_py_go"]
        values["flag"] = "–" if r is None else ("ok" if abs(r - 1) <= TOLERANCE else "OUT")
    return rows


def print_cost(data: dict[str, Any]) -> None:
    side = data.get("apiserver_side")
    if not side:
        return
    table = Table(title="the apiserver's side: one fleet per fresh control plane "
                  "(per node-minute idle, per pod cycle; CPU-seconds, bytes)",
                  title_justify="left")
    for column in ("row", "go", "py", "py/go", "±10 %"):
        table.add_column(column, justify="left" if column == "row" else "right")
    for row, values in side.get("ratios", {}).items():
        flag = values["flag"]
        table.add_row(row, fmt(values["go"]), fmt(values["py"]), fmt(values["ratio_py_go"]),
                      f"[{'green' if flag == 'ok' else 'bold red'}]{flag}[/]")
    out.print(table)
    for name, run in side.get("runs", {}).items():
        apf = {w: run.get(w, {}).get("apf_dispatched") for w in
               ("idle_per_node_minute", "per_pod_cycle")}
        out.print(f"{name}: APF dispatched (flow schema, priority level) {apf}")
        hollow = {w: run.get(w, {}).get("hollow_cpu_s") for w in
                  ("idle_per_node_minute", "per_pod_cycle")}
        out.print(f"{name}: the hollow fleet's own CPU-s {hollow}")


# -- command ------------------------------------------------------------------------------
@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--nodes", type=click.IntRange(1, 200), default=10, show_default=True,
              help="Hollow nodes per side (Go costs ~117 MiB per node).")
@click.option("--idle-minutes", type=click.FloatRange(0), default=10.0, show_default=True,
              help="Length of the idle window (0: skip it).")
@click.option("--startup-seconds", type=click.FloatRange(0), default=90.0, show_default=True,
              help="Startup window, from launch; the idle window starts after it.")
@click.option("--pods-per-node", type=click.IntRange(0, 110), default=10, show_default=True,
              help="Pods per node in the pod cycle (0: skip the cycle).")
@click.option("--hold-seconds", type=click.FloatRange(0), default=60.0, show_default=True,
              help="How long the pods stay Running before the scale-down.")
@click.option("--settle-seconds", type=click.FloatRange(0), default=10.0, show_default=True,
              help="Added after all pods are Running / gone, for trailing requests.")
@click.option("--name", default="bench-fidelity", show_default=True,
              help="Cluster name (must not be running).")
@results_dir_option()
@click.option("--bin-dir", type=click.Path(path_type=Path), default=None,
              help="Kubernetes binaries (default: as `pykubemark up` finds them).")
@click.option("--go-start-interval", type=click.FloatRange(0), default=0.5,
              show_default=True, help="Seconds between node launches, on both sides "
              "(pykubemark's --register-rate is its inverse unless given with --py-arg).")
@click.option("--go-real-proxier", is_flag=True,
              help="Run the Go hollow proxy with its real (fake-iptables) proxier.")
@click.option("--apiserver-side/--no-apiserver-side", default=True, show_default=True,
              help="After the side-by-side run, one run per side on a fresh control plane "
              "with the same schedule: apiserver and etcd CPU, response bytes, APF flow "
              "schemas and connections per node, from the apiserver's side.")
@click.option("--baseline-minutes", type=click.FloatRange(0), default=3.0, show_default=True,
              help="In the apiserver-side runs, the control plane alone for this long before "
              "the fleet starts; its CPU per minute, divided by the nodes, is subtracted from "
              "the idle rows (the *_net_of_control_plane rows). 0: skip it.")
@click.option("--solo-order", type=click.Choice(["go,py", "py,go"]), default="go,py",
              show_default=True, help="Which side's apiserver-side run comes first (to "
              "tell a difference between the sides from an effect of running second).")
@click.option("--side-by-side/--no-side-by-side", default=True, show_default=True,
              help="The side-by-side run (request counts from the audit log); without it, "
              "only the apiserver-side runs.")
@click.option("--py-arg", "py_args", multiple=True,
              help="Extra argument for `pykubemark hollow`, e.g. --py-arg=--events.")
def main(nodes: int, idle_minutes: float, startup_seconds: float, pods_per_node: int,
         hold_seconds: float, settle_seconds: float, name: str, results_dir: Path,
         bin_dir: Path | None, go_start_interval: float, go_real_proxier: bool,
         apiserver_side: bool, baseline_minutes: float, solo_order: str, side_by_side: bool,
         py_args: tuple[str, ...]) -> None:
    """Compare pykubemark's hollow nodes with the Go kubemark's, request for request."""
    if go_start_interval > 0 and not any(a.startswith("--register-rate") for a in py_args):
        # The same start schedule on both sides: nodes started together renew their
        # leases together, so the apiserver and etcd see the writes in bursts rather than
        # spread over the period (suspected, not shown, to make etcd cheaper: 2026-11-24).
        py_args = ("--register-rate", f"{1 / go_start_interval:g}", *py_args)

    def body() -> None:
        results = ResultFile("fidelity", results_dir)
        results.data.update({
            "benchmark": "fidelity", "status": "running", "started": iso(utcnow()),
            "params": {"nodes_per_side": nodes, "idle_minutes": idle_minutes,
                       "startup_seconds": startup_seconds, "pods_per_node": pods_per_node,
                       "hold_seconds": hold_seconds, "settle_seconds": settle_seconds,
                       "py_args": list(py_args), "go_real_proxier": go_real_proxier,
                       "baseline_minutes": baseline_minutes, "side_by_side": side_by_side,
                       "solo_order": solo_order,
                       "apiserver_side": apiserver_side, "tolerance": TOLERANCE},
            "environment": environment(), "users": USERS,
        })
        results.save()
        console.print(f"results: {results.path}")
        if side_by_side:
            compare_side_by_side(results)
        if apiserver_side:
            results.data["apiserver_side"] = {"runs": {}, "status": "running"}
            try:
                with recording_status(results.data["apiserver_side"], "status"):
                    compare_apiserver_side(results)
            finally:
                if not side_by_side:
                    results.data["status"] = results.data["apiserver_side"]["status"]
                results.data["finished"] = iso(utcnow())
                with shielded():
                    results.save()

    def compare_side_by_side(results: ResultFile) -> None:
        cluster = start_cluster(name, audit=True, bin_dir=bin_dir)
        results.data["cluster"] = {"name": name, "server": cluster.state.server,
                                   "audit_log": str(cluster.dir / "logs" / "audit.log")}
        try:
            fleet = GoFleet.for_cluster(cluster, nodes, start_interval=go_start_interval,
                                        real_proxier=go_real_proxier)
            with fleet:
                bench = Fidelity(cluster, fleet, nodes, results)
                try:
                    with recording_status(results.data):
                        bench.run(startup_seconds=startup_seconds, idle_minutes=idle_minutes,
                                  pods_per_node=pods_per_node, hold=hold_seconds,
                                  settle=settle_seconds, py_args=py_args)
                finally:
                    with shielded():
                        bench.close_open_phases()
                        with console.status("stopping hollow nodes (their open watches "
                                            "reach the audit log only when they end)"):
                            bench.stop_nodes()
                        bench.analyse(final=True)
                        results.data["finished"] = iso(utcnow())
                        results.save()
                        print_results(results.data)
                        console.print(f"results: {results.path}")
        finally:
            tear_down(cluster, name)

    def compare_apiserver_side(results: ResultFile) -> None:
        runs: dict[str, Any] = results.data["apiserver_side"]["runs"]

        def save(run: dict[str, Any]) -> None:
            runs[run["side"]] = run
            results.data["apiserver_side"]["ratios"] = cost_ratios(runs)
            results.save()

        for side in solo_order.split(","):
            cost_run(side, nodes, name=name, bin_dir=bin_dir, startup_seconds=startup_seconds,
                     idle_minutes=idle_minutes, pods_per_node=pods_per_node, hold=hold_seconds,
                     settle=settle_seconds, py_args=py_args,
                     go_start_interval=go_start_interval, go_real_proxier=go_real_proxier,
                     baseline_minutes=baseline_minutes, save=save)
        print_cost(results.data)
        console.print(f"results: {results.path}")

    run_cli(body)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
