"""Fidelity: does a hollow node ask the apiserver what a real node of the same release
asks, as often? Judged from the apiserver's side, against the real kubelet and
kube-proxy first.

Each side runs on a fresh control plane of the release, with an audit log, through the
same schedule:

* ``real`` — N real nodes: the release's kubelet on containerd and its kube-proxy;
* ``pykubemark`` — N pykubemark hollow nodes, acting as that release's kubelet;
* ``kubemark`` — N Go kubemark hollow nodes of the same release (its own default
  proxier), a column beside them.

The schedule: startup (launch until settled, per node), an idle window (per node-minute),
then a pod cycle (per pod): a namespace with a Secret, a ConfigMap and a Service, and a
Deployment of ``--pods-per-node`` pods on every node whose pods mount both (and the
projected service-account token every pod gets), create → all Running (``start``), held
Running (``hold``, per node-minute), scaled to 0 → all gone (``stop``).

For every (component, verb, resource[/subresource]) each side's rate, the ratio to the
real side, flagged outside ±10 %; the answers ≥ 400 each side got (a hollow node must get
no 4xx the real one does not); the watch sets (resource and selectors, node names
folded). Results go to ``results/fidelity-<release>-<timestamp>.json`` after every side;
clusters are always torn down, also on Ctrl-C.

``--record`` also writes the real side's rates as ``reference/real-<minor>.json``: the
fixture the tests hold the hollow kubelet's request mix against, so that the next
release is one command away.

    .venv/bin/python benchmarks/fidelity.py                    # newest release, 3 nodes each
    .venv/bin/python benchmarks/fidelity.py --release 1.35.4 --record
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import msgspec
import numpy
import psutil
from benchlib import (
    Api,
    ResultFile,
    console,
    environment,
    hollow_runtime_option,
    iso,
    live_tree,
    out,
    recording_status,
    results_dir_option,
    run_cli,
    runtime_name,
    sleep_checked,
    tear_down,
    utcnow,
)
from rich.table import Table

from pykubemark.cluster.control_plane import LocalCluster, UpOptions
from pykubemark.cluster.hollow import HollowArgs, start_hollow
from pykubemark.errors import UserError
from pykubemark.measure.audit import Request, read_audit, watch_set
from pykubemark.measure.resources import cpu_seconds
from pykubemark.provision import Binaries, ensure_binaries
from pykubemark.provision.releases import default_release, parse_release

#: ``kwok``: one KWOK controller playing N nodes (`--engine kwok`), another column.
SIDES = ("real", "pykubemark", "kubemark", "kwok")
REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
TOLERANCE = 0.10
#: When no side sent this many requests, a deviation says little (a watch reopened
#: every 5–10 minutes is ~1 request per node in a short window): flagged "few".
FEW = 20
NAMESPACE = "fidelity"
#: The controller-manager's and scheduler's own default client budgets: how fast pods
#: reach a kubelet decides how much its status manager coalesces.
PACE = UpOptions(name="", controller_manager_args=("--kube-api-qps=20", "--kube-api-burst=30"),
                 scheduler_args=("--kube-api-qps=50", "--kube-api-burst=100"))
UNITS = {"node": "per node", "node-minute": "per node per minute", "pod": "per pod",
         "minute": "per minute"}


def component(request: Request) -> str | None:
    """kubelet or proxy, by the user the apiserver authenticated."""
    if request.user.startswith("system:node:"):
        return "kubelet"
    if request.user == "system:kube-proxy":
        return "proxy"
    if request.user == "kwok:controller":
        # KWOK's one controller acts for every node with one identity, and what it does
        # is the kubelet's part: node and pod statuses, leases, watches of nodes and pods,
        # the final pod delete. It plays no proxy (no Service, Endpoints or EndpointSlice
        # watch), so KWOK's proxy column stays empty. Its Node objects are created by the
        # cluster's admin, as `kwokctl scale node` does: not counted here.
        return "kubelet"
    return None


# -- sides ---------------------------------------------------------------------------------
def start_nodes(side: str, cluster: LocalCluster, binaries: Binaries, nodes: int,
                progress: Callable[[str], None], runtime: Path | None = None) -> list[str]:
    """Start ``nodes`` nodes of one side on the cluster; their names. ``runtime``: a
    profile on top of the hollow nodes' release profile (the real nodes' runtime)."""
    if side == "real":
        from pykubemark.cluster.real_node import start_real_nodes

        return start_real_nodes(cluster, binaries, nodes, progress=progress)
    if side == "pykubemark":
        start_hollow(cluster, HollowArgs(nodes=nodes, prefix="py", profile=runtime), progress)
        return [f"py-{i}" for i in range(nodes)]
    if side == "kwok":
        from pykubemark.engines import ENGINES, NodeOptions

        engine, options = ENGINES["kwok"], NodeOptions(count=nodes, prefix="kw")
        engine.check_runtime(binaries, options)  # builds KWOK once per machine
        engine.start(cluster, binaries, options, progress)
        return engine.node_names(options)
    from pykubemark.engines.gokubemark import GoFleet, require_runtime

    fleet = GoFleet.for_cluster(cluster, nodes, kubemark=require_runtime(binaries.kubemark),
                                prefix="go", users=("go-kubelet", "hollow-proxy"),
                                real_proxier=True)
    fleet.start(progress)
    fleet.wait_ready(cluster, progress=progress)
    return fleet.names


@dataclass
class Snapshot:
    """What the control plane has spent and sent so far (counters only): CPU seconds of
    kube-apiserver and etcd, response bytes by verb and resource, APF dispatches by
    flow schema."""

    cpu: dict[str, float]
    response_bytes: dict[str, float]
    dispatched: dict[str, float]

    @classmethod
    def take(cls, cluster: LocalCluster, api: Api) -> Snapshot:
        cpu = {}
        for name in ("kube-apiserver", "etcd"):
            cpu[name] = cpu_seconds(live_tree(cluster.state.proc(name)))
        text = api.text("/metrics")
        sizes: Counter[str] = Counter()
        for m in re.finditer(r'^apiserver_response_sizes_sum\{([^}]*)\} (\S+)$', text, re.M):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            sizes[f"{labels.get('verb', '')} {labels.get('resource', '')}"] += float(m.group(2))
        flows: Counter[str] = Counter()
        for m in re.finditer(r'^apiserver_flowcontrol_dispatched_requests_total\{[^}]*'
                             r'flow_schema="([^"]+)"[^}]*\} (\S+)$', text, re.M):
            flows[m.group(1)] += float(m.group(2))
        return cls(cpu, dict(sizes), dict(flows))

    def since(self, before: Snapshot, divisor: float) -> dict[str, Any]:
        def delta(now: dict[str, float], then: dict[str, float]) -> dict[str, float]:
            out = {k: (v - then.get(k, 0.0)) / divisor for k, v in now.items()}
            return {k: v for k, v in sorted(out.items()) if v}
        return {"cpu_seconds": delta(self.cpu, before.cpu),
                "response_bytes": delta(self.response_bytes, before.response_bytes),
                "dispatched": delta(self.dispatched, before.dispatched)}


@dataclass
class Window:
    name: str
    unit: str
    start: dt.datetime
    end: dt.datetime | None = None
    first: Snapshot | None = None
    last: Snapshot | None = None


def pod_objects(nodes: list[str], pods: int, image: str) -> list[tuple[str, dict[str, Any]]]:
    """(path, body) of the cycle's objects: a Secret, a ConfigMap, a Service and a
    Deployment spread evenly over ``nodes`` whose pods mount the Secret and ConfigMap."""
    ns = f"/api/v1/namespaces/{NAMESPACE}"
    labels = {"app": "fidelity"}
    return [
        (f"{ns}/secrets", {"metadata": {"name": "fidelity"}, "stringData": {"token": "x"}}),
        (f"{ns}/configmaps", {"metadata": {"name": "fidelity"}, "data": {"mode": "test"}}),
        (f"{ns}/services", {"metadata": {"name": "fidelity"}, "spec": {
            "selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}}),
        (f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments", {
            "metadata": {"name": "fidelity", "labels": labels},
            "spec": {"replicas": pods, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "affinity": {"nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpressions": [{
                                "key": "kubernetes.io/hostname", "operator": "In",
                                "values": nodes}]}]}}},
                    "topologySpreadConstraints": [{
                        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {
                            "matchLabels": labels}}],
                    "containers": [{"name": "c", "image": image,
                                    "imagePullPolicy": "IfNotPresent",
                                    "ports": [{"containerPort": 8080}],
                                    "volumeMounts": [{"name": "s", "mountPath": "/s"},
                                                     {"name": "c", "mountPath": "/c"}]}],
                    "volumes": [{"name": "s", "secret": {"secretName": "fidelity"}},
                                {"name": "c", "configMap": {"name": "fidelity"}}],
                }}}}),
    ]


@dataclass
class SideRun:
    """One side through the schedule on its own control plane; counted afterwards from
    that control plane's audit log."""

    side: str
    binaries: Binaries
    nodes: int
    name: str
    #: The runtime profile put on the hollow nodes (None: the release's alone).
    runtime: Path | None = None
    windows: list[Window] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    pods: int = 0
    launched: dt.datetime | None = None
    running_after: float | None = None
    gone_after: float | None = None
    cluster: LocalCluster | None = None
    api: Any = None
    #: ESTABLISHED connections to the apiserver per node, at the end of the idle window.
    connections_per_node: float | None = None

    def begin(self, name: str, unit: str) -> Window:
        window = Window(name, unit, utcnow(), first=self._snapshot())
        self.windows.append(window)
        return window

    def finish(self, window: Window) -> None:
        window.end = utcnow()
        window.last = self._snapshot()

    def _snapshot(self) -> Snapshot | None:
        return Snapshot.take(self.cluster, self.api) if self.cluster is not None else None

    def run(self, cluster: LocalCluster, *, startup: float, idle: float, pods_per_node: int,
            hold: float, settle: float, baseline_minutes: float = 0.0) -> None:
        api = Api(cluster)
        self.cluster, self.api = cluster, api
        if baseline_minutes > 0:
            # The control plane alone: what the idle window's CPU is net of.
            window = self.begin("baseline", "minute")
            sleep_checked(baseline_minutes * 60, lambda: None, f"{self.side}: no nodes yet")
            self.finish(window)
        baseline = apiserver_connections(cluster)
        self.launched = utcnow()
        first = self.begin("startup", "node")
        with console.status(f"{self.side}: starting {self.nodes} nodes") as status:
            self.names = start_nodes(self.side, cluster, self.binaries, self.nodes,
                                     status.update, runtime=self.runtime)
        left = max(startup - (utcnow() - self.launched).total_seconds(), 15.0)
        sleep_checked(left, lambda: None, f"{self.side}: settling")
        self.finish(first)
        if idle > 0:
            window = self.begin("idle", "node-minute")
            sleep_checked(idle * 60, lambda: None, f"{self.side}: idle")
            self.finish(window)
            self.connections_per_node = (apiserver_connections(cluster) - baseline) / \
                len(self.names)
        if pods_per_node > 0:
            self.cycle(cluster, api, pods_per_node, hold, settle)

    def cycle(self, cluster: LocalCluster, api: Api, pods_per_node: int, hold: float,
              settle: float) -> None:
        from pykubemark.cluster.real_node import PAUSE_IMAGE

        self.pods = pods_per_node * len(self.names)
        with console.status("namespace"):
            api.request("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
            deadline = time.monotonic() + 60
            while not cluster.namespace_ready(NAMESPACE):
                if time.monotonic() > deadline:
                    raise UserError(f"namespace {NAMESPACE} not ready for pods after 60 s")
                time.sleep(0.5)
        objects = pod_objects(self.names, self.pods, PAUSE_IMAGE)
        for path, body in objects[:-1]:
            api.request("POST", path, body)
        start = self.begin("start", "pod")
        api.request("POST", *objects[-1])
        self.running_after = self._wait(api, start.start, lambda pods: len(
            [p for p in pods if p.get("status", {}).get("phase") == "Running"]) >= self.pods,
            "Running")
        sleep_checked(settle, lambda: None, "settling")
        self.finish(start)
        window = self.begin("hold", "node-minute")
        sleep_checked(max(0.0, hold - settle), lambda: None, "holding pods Running")
        self.finish(window)
        stop = self.begin("stop", "pod")
        api.request("PATCH", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/fidelity",
                    {"spec": {"replicas": 0}}, content_type="application/merge-patch+json")
        self.gone_after = self._wait(api, stop.start, lambda pods: not pods, "gone")
        sleep_checked(settle, lambda: None, "settling")
        self.finish(stop)

    def _wait(self, api: Api, since: dt.datetime, done: Callable[[list[Any]], bool],
              what: str) -> float:
        timeout = 180 + self.pods / 2
        with console.status(f"{self.side}: waiting for pods {what}"):
            while True:
                pods = api.get(f"/api/v1/namespaces/{NAMESPACE}/pods")["items"]
                waited = (utcnow() - since).total_seconds()
                if done(pods):
                    return waited
                if waited > timeout:
                    raise UserError(f"{self.side}: pods not {what} after {timeout:.0f}s")
                time.sleep(0.5)

    # -- counting ---------------------------------------------------------------------
    def divisor(self, window: Window) -> float:
        assert window.end is not None
        if window.unit == "node":
            return len(self.names)
        if window.unit == "node-minute":
            return len(self.names) * (window.end - window.start).total_seconds() / 60
        if window.unit == "minute":
            return (window.end - window.start).total_seconds() / 60
        return self.pods

    def count(self, audit_log: Path) -> dict[str, Any]:
        requests = [r for r in read_audit(audit_log, since=self.launched) if component(r)]
        windows = {}
        for window in self.windows:
            if window.end is None:
                continue
            inside = [r for r in requests if window.start <= r.time < window.end]
            rows = Counter(f"{component(r)} {r.verb} {r.row[2]}" for r in inside)
            errors = Counter(f"{component(r)} {r.verb} {r.row[2]} {r.code}" for r in inside
                             if r.code >= 400)
            divisor = self.divisor(window)
            windows[window.name] = {
                "unit": UNITS[window.unit], "start": iso(window.start),
                "end": iso(window.end), "divisor": divisor,
                "counts": dict(sorted(rows.items())),
                "rates": {k: v / divisor for k, v in sorted(rows.items())},
                "errors": dict(sorted(errors.items())),
            }
            if window.first is not None and window.last is not None:
                # The control plane's side of it, per the window's unit.
                windows[window.name]["apiserver"] = window.last.since(window.first, divisor)
        folded = [msgspec.structs.replace(r, user=component(r) or "") for r in requests]
        watches = sorted(watch_set(folded, self.names))
        for window in self.windows:
            if window.end is not None and window.unit == "pod" and self.pods:
                only = resources_only_patches(audit_log, window.start, window.end)
                if only is not None:
                    windows[window.name]["resources_only_status_patches"] = only / self.pods
        return {"nodes": self.names, "pods": self.pods, "windows": windows,
                "watches": [list(w) for w in watches],
                "running_after_seconds": self.running_after,
                "gone_after_seconds": self.gone_after,
                "connections_per_node": self.connections_per_node,
                "pod_startup_seconds": pod_startup(requests_all(audit_log, self.launched))}


def requests_all(audit_log: Path, since: dt.datetime | None) -> list[Request]:
    return list(read_audit(audit_log, since=since))


def pod_startup(requests: list[Request]) -> dict[str, dict[str, float]]:
    """Per pod of the cycle, from the apiserver's own clock: scheduled (the scheduler's
    binding) → running (the kubelet's status write that said so: its last before the
    deletion began), and deleted (the controller's DELETE) → gone (the kubelet's own);
    percentiles. The scheduler and controllers are the same real ones on every side: the
    kubelet's part is what differs."""
    marks: dict[str, dict[str, dt.datetime]] = {}
    for r in requests:
        if r.resource != "pods" or r.namespace != NAMESPACE or not r.name:
            continue
        pod = marks.setdefault(r.name, {})
        if r.verb == "create" and r.subresource == "binding":
            pod["scheduled"] = r.time
        elif r.verb == "delete" and not component(r):
            pod.setdefault("deleted", r.time)
        elif r.verb == "delete":
            pod["gone"] = r.time
        elif r.verb == "patch" and r.subresource == "status" and component(r) \
                and "deleted" not in pod:
            pod["running"] = r.time
    spans: dict[str, list[float]] = {}
    for pod in marks.values():
        for span, (a, b) in {"schedule_to_running": ("scheduled", "running"),
                             "delete_to_gone": ("deleted", "gone")}.items():
            if a in pod and b in pod:
                spans.setdefault(span, []).append((pod[b] - pod[a]).total_seconds())
    return {name: percentiles(values) for name, values in spans.items()}


def percentiles(values: list[float]) -> dict[str, float]:
    p50, p90, p99 = numpy.percentile(values, [50, 90, 99])
    return {"n": len(values), "p50": float(p50), "p90": float(p90), "p99": float(p99)}


def apiserver_connections(cluster: LocalCluster) -> int:
    """ESTABLISHED TCP connections to the apiserver's port, as the host sees them."""
    port = cluster.state.ports["apiserver"]
    return sum(1 for c in psutil.net_connections("tcp")
               if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port)


def resources_only_patches(audit_log: Path, start: dt.datetime, end: dt.datetime) -> int | None:
    """Pod status patches from kubelets that write nothing but ``status.resources`` (the
    pod-level resources a kubelet reads from its cgroups; on a cgroup v1 host it reads
    an unlimited memory limit as 8 EiB and writes it, then its removal when the pod
    stops). None when the log has no request bodies."""
    found, bodies = 0, False
    with audit_log.open("rb") as handle:
        for line in handle:
            if b'"subresource":"status"' not in line or b'"requestObject"' not in line:
                continue
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            if ref.get("resource") != "pods" or event.get("stage") != "ResponseComplete" \
                    or not event["user"]["username"].startswith("system:node:"):
                continue
            stamp = dt.datetime.fromisoformat(event["requestReceivedTimestamp"]
                                              .replace("Z", "+00:00"))
            if not start <= stamp < end:
                continue
            bodies = True
            status = (event.get("requestObject") or {}).get("status") or {}
            if set(status) == {"resources"}:
                found += 1
    return found if bodies else None


# -- comparison ----------------------------------------------------------------------------
def compare(sides: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (window, component, verb, resource): each side's rate, its ratio to
    the real side, and a flag."""
    names = [s for s in SIDES if s in sides]
    keys = sorted({(w, key) for data in sides.values() for w, window in data["windows"].items()
                   for key in window["rates"]})
    rows = []
    for window, key in keys:
        rates = {s: sides[s]["windows"].get(window, {}).get("rates", {}).get(key, 0.0)
                 for s in names}
        counts = {s: sides[s]["windows"].get(window, {}).get("counts", {}).get(key, 0)
                  for s in names}
        row: dict[str, Any] = {"window": window, "row": key, "rates": rates, "counts": counts}
        real = rates.get("real")
        for s in names:
            if s == "real" or real is None:
                continue
            row[f"{s}/real"] = rates[s] / real if real else None
            row[f"{s}_flag"] = flag(rates[s], real, max(counts.values()))
        rows.append(row)
    return rows


def flag(value: float, real: float, most: int) -> str:
    if not real and not value:
        return "ok"
    if not real or not value:
        verdict = "only real" if real else "not real"
    elif abs(value / real - 1) > TOLERANCE:
        verdict = "OUT"
    else:
        return "ok"
    return verdict + (" (few)" if most < FEW else "")


def apiserver_figures(side: dict[str, Any]) -> dict[str, float]:
    """One side's control-plane figures: CPU and response bytes per unit of each window,
    connections per node, the kubelet's part of pod start-up and deletion."""
    out: dict[str, float] = {}
    baseline = side["windows"].get("baseline", {}).get("apiserver", {}).get("cpu_seconds", {})
    nodes = len(side["nodes"]) or 1
    for name, window in side["windows"].items():
        if name in ("startup", "baseline") or "apiserver" not in window:
            continue
        unit = "node-minute" if window["unit"] == UNITS["node-minute"] else "pod"
        spent = window["apiserver"]
        for process, seconds in spent["cpu_seconds"].items():
            out[f"{name}: {process} CPU ms per {unit}"] = seconds * 1000
            if unit == "node-minute" and process in baseline:
                # Net of the control plane alone (its own per-minute CPU shared by nodes).
                out[f"{name}: {process} CPU ms per {unit}, net"] = \
                    (seconds - baseline[process] / nodes) * 1000
        out[f"{name}: response KiB per {unit}"] = sum(spent["response_bytes"].values()) / 1024
    if side.get("connections_per_node") is not None:
        out["idle: apiserver connections per node"] = side["connections_per_node"]
    for span, stats in side.get("pod_startup_seconds", {}).items():
        for q in ("p50", "p90"):
            out[f"pods: {span} {q} s"] = stats[q]
    return out


def compare_apiserver(sides: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    names = [s for s in SIDES if s in sides]
    figures = {s: apiserver_figures(sides[s]) for s in names}
    keys = sorted({k for f in figures.values() for k in f})
    rows = []
    for key in keys:
        values = {s: figures[s].get(key) for s in names}
        row: dict[str, Any] = {"row": key, "values": values}
        real = values.get("real")
        for s in names:
            if s != "real" and real and values[s] is not None:
                row[f"{s}/real"] = values[s] / real
        rows.append(row)
    return rows


def extra_errors(sides: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Per non-real side, the (component, verb, resource, code) answers ≥ 400 it got and
    the real side did not."""
    if "real" not in sides:
        return {}
    real = {k for w in sides["real"]["windows"].values() for k in w["errors"]}
    return {s: sorted({k for w in data["windows"].values() for k in w["errors"]} - real)
            for s, data in sides.items() if s != "real"}


def real_side(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """The real side of an earlier run, if it ran this release on this schedule."""
    try:
        earlier = json.loads(path.read_text())
        real = earlier["sides"]["real"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"--real-from: {path} is not a fidelity result with a real side") \
            from None
    if earlier.get("release") != data["release"]:
        raise UserError(f"--real-from: {path} ran {earlier.get('release')}, not "
                        f"{data['release']}")
    theirs = {k: v for k, v in earlier.get("schedule", {}).items() if k != "hollow_runtime"}
    ours = {k: v for k, v in data["schedule"].items() if k != "hollow_runtime"}
    if theirs != ours:
        raise UserError(f"--real-from: {path} ran another schedule ({theirs})")
    return real


def print_table(data: dict[str, Any]) -> None:
    sides = [s for s in SIDES if s in data["sides"]]
    table = Table(title=f"requests per node (idle, hold: per node-minute) or per pod, "
                        f"Kubernetes {data['release']}")
    for column in ("window", "component verb resource", *sides,
                   *(f"{s}/real" for s in sides if s != "real")):
        table.add_column(column, justify="left" if column[0] in "wc" else "right")
    for row in data["rows"]:
        if row["window"] == "startup":
            continue
        cells = [row["window"], row["row"], *(f"{row['rates'][s]:.3f}" for s in sides)]
        for s in sides:
            if s == "real":
                continue
            ratio = row.get(f"{s}/real")
            text = "-" if ratio is None else f"{ratio:.2f}"
            if row.get(f"{s}_flag", "ok") != "ok":
                text += f" {row[f'{s}_flag']}"
            cells.append(text)
        table.add_row(*cells)
    out.print(table)
    side_table = Table(title="the control plane's side (each side on its own control plane; "
                             "one run, not paired)")
    for column in ("figure", *sides, *(f"{s}/real" for s in sides if s != "real")):
        side_table.add_column(column, justify="left" if column == "figure" else "right")
    for row in data.get("apiserver_rows", []):
        side_table.add_row(row["row"], *(
            "-" if row["values"].get(s) is None else f"{row['values'][s]:.3g}" for s in sides),
            *("-" if row.get(f"{s}/real") is None else f"{row[f'{s}/real']:.2f}"
              for s in sides if s != "real"))
    out.print(side_table)
    for side, extra in data.get("extra_errors", {}).items():
        out.print(f"{side}: answers ≥ 400 the real nodes did not get: "
                  f"{', '.join(extra) or 'none'}")


def record_reference(data: dict[str, Any], command: str) -> Path:
    """The real side's rates, as the fixture the tests compare hollow nodes with."""
    release = parse_release(data["release"])
    real = data["sides"]["real"]
    path = REFERENCE_DIR / f"real-{release.major}.{release.minor}.json"
    path.write_text(json.dumps({
        "source": f"real kubelet and kube-proxy {release.tag}, {len(real['nodes'])} nodes, "
                  "apiserver audit log",
        "command": command, "release": str(release),
        "pods_per_node": data["schedule"]["pods_per_node"],
        "windows": {name: {k: w[k] for k in ("unit", "rates", "counts", "errors",
                                             "resources_only_status_patches") if k in w}
                    for name, w in real["windows"].items()},
        "watches": real["watches"],
    }, indent=2) + "\n")
    return path


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--release", default=None, metavar="X.Y.Z",
              help="Kubernetes release (default: pykubemark's default; built if needed).")
@click.option("--sides", default=",".join(SIDES), show_default=True,
              help="Which sides to run, in order.")
@click.option("--nodes", type=click.IntRange(1, 200), default=3, show_default=True,
              help="Nodes per side (real nodes cost far more than hollow ones).")
@click.option("--startup-seconds", type=click.FloatRange(0), default=60.0, show_default=True)
@click.option("--idle-minutes", type=click.FloatRange(0), default=10.0, show_default=True)
@click.option("--pods-per-node", type=click.IntRange(0, 110), default=10, show_default=True)
@click.option("--hold-seconds", type=click.FloatRange(0), default=60.0, show_default=True)
@click.option("--settle-seconds", type=click.FloatRange(0), default=10.0, show_default=True)
@click.option("--baseline-minutes", type=click.FloatRange(0), default=3.0, show_default=True,
              help="The control plane alone before the nodes start: CPU per node is net "
              "of it.")
@click.option("--record", is_flag=True,
              help="Write the real side's rates as reference/real-<minor>.json.")
@click.option("--record-from", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Write the reference from this result file (of a run with "
              "the real side) instead of running.")
@click.option("--real-from", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Take the real side from this result file (a run of the "
              "same release and schedule) instead of running real nodes again.")
@click.option("--name", default="bench-fidelity", show_default=True,
              help="Cluster name prefix (one cluster per side, one after the other).")
@hollow_runtime_option()
@results_dir_option()
def main(release: str | None, sides: str, nodes: int, startup_seconds: float,
         idle_minutes: float, pods_per_node: int, hold_seconds: float, settle_seconds: float,
         baseline_minutes: float, record: bool, record_from: Path | None,
         real_from: Path | None, name: str, runtime: Path | None, results_dir: Path) -> None:
    """Each side on its own control plane of the release, the same schedule; rates from
    the audit log, compared with the real nodes'."""
    if record_from is not None:
        data = json.loads(record_from.read_text())
        if "real" not in data.get("sides", {}):
            raise UserError(f"{record_from} has no real side to record")
        argv = data.get("environment", {}).get("argv", [])
        command = shlex.join(["python", "benchmarks/fidelity.py", *argv[1:]])
        console.print(f"reference: {record_reference(data, command)}")
        return
    chosen = [s.strip() for s in sides.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SIDES]
    if unknown or not chosen:
        raise UserError(f"--sides: unknown {', '.join(unknown) or '(none)'} "
                        f"(known: {', '.join(SIDES)})")
    if record and "real" not in chosen:
        raise UserError("--record needs the real side (--sides real,...)")
    if real_from is not None and "real" in chosen:
        raise UserError("--real-from takes the real side from a file: leave it out of --sides")
    wanted = parse_release(release) if release else default_release()
    binaries = ensure_binaries(release=wanted)
    result = ResultFile(f"fidelity-{wanted}", results_dir)
    data = result.data
    data.update({"what": "requests per node and per pod from the apiserver's audit log: "
                         "real nodes, pykubemark and the Go kubemark of one release, each on "
                         "its own control plane", "release": str(wanted),
                 "schedule": {"nodes": nodes, "startup_seconds": startup_seconds,
                              "idle_minutes": idle_minutes, "pods_per_node": pods_per_node,
                              "hold_seconds": hold_seconds, "settle_seconds": settle_seconds,
                              "baseline_minutes": baseline_minutes,
                              "hollow_runtime": runtime_name(runtime)},
                 "environment": environment(), "sides": {}})
    if real_from is not None:
        data["sides"]["real"] = real_side(real_from, data)
        data["real_from"] = real_from.name
    with recording_status(data):
        try:
            for side in chosen:
                run = SideRun(side, binaries, nodes, f"{name}-{side}"[:40], runtime)
                options = UpOptions(name=run.name, audit=True, audit_bodies=side == "real",
                                    controller_manager_args=PACE.controller_manager_args,
                                    scheduler_args=PACE.scheduler_args, size=nodes)
                with console.status(f"{side}: starting cluster '{run.name}'"):
                    cluster = LocalCluster.up(options, binaries)
                try:
                    run.run(cluster, startup=startup_seconds, idle=idle_minutes,
                            pods_per_node=pods_per_node, hold=hold_seconds,
                            settle=settle_seconds, baseline_minutes=baseline_minutes)
                    time.sleep(3)  # the audit backend writes asynchronously
                    data["sides"][side] = run.count(cluster.dir / "logs" / "audit.log")
                finally:
                    tear_down(cluster, run.name)
                data["rows"] = compare(data["sides"])
                data["apiserver_rows"] = compare_apiserver(data["sides"])
                data["extra_errors"] = extra_errors(data["sides"])
                result.save()
        finally:
            result.save()
    print_table(data)
    console.print(f"results: {result.path}")
    if record:
        path = record_reference(data, shlex.join(["python", "benchmarks/fidelity.py",
                                                  *sys.argv[1:]]))
        console.print(f"reference: {path}")


if __name__ == "__main__":
    run_cli(main)
