"""Pod timestamps: when each kubelet writes startTime, startedAt and the conditions, Go
kubemark against pykubemark, side by side on one control plane.

N Go hollow nodes and N pykubemark hollow nodes run against one local cluster whose
apiserver writes an audit log; a Deployment per side, pinned to its side's nodes, puts
the same number of pods on every node (``benchlib.PodCycle``). Once all are Running and
the status managers have settled, each pod is read back, and two sources are compared:

* the pod's own timestamps (second precision, as the API serialises them):
  creationTimestamp, the PodScheduled / Initialized / ContainersReady / Ready
  lastTransitionTime, status.startTime and the containers' ``state.running.startedAt``;
* the audit log (microseconds, the apiserver's clock): the scheduler's binding, and
  every status PATCH the pod's kubelet sent, by the side's own kubelet user.

The deltas are what clusterloader2's pod-startup measurement sees (schedule→run is
startedAt − PodScheduled), so a hollow node that writes them differently from the Go
kubelet skews its results. The result JSON is written as soon as it is measured::

    .venv/bin/python benchmarks/timestamps.py --nodes 3 --pods-per-node 10
"""

from __future__ import annotations

import contextlib
import datetime as dt
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import click
from benchlib import (
    Api,
    PodCycle,
    ResultFile,
    check_proc,
    console,
    environment,
    iso,
    out,
    results_dir_option,
    run_cli,
    shielded,
    start_cluster,
    start_py_hollow,
    utcnow,
    wait_ready,
)
from rich.table import Table

from pykubemark.cluster.control_plane import USERS, LocalCluster
from pykubemark.engines.gokubemark import GoFleet
from pykubemark.measure.audit import read_audit

RESULTS = Path(__file__).resolve().parent / "results"
KUBELET_USERS = {"go": USERS["go-kubelet"][0], "py": USERS["hollow-kubelet"][0]}
SCHEDULER_USER = USERS["scheduler"][0]
#: Per-pod deltas, seconds: (name, later field, earlier field). Fields from the pod are
#: whole seconds; ``bind`` and ``patch*`` are the audit log's microsecond times.
DELTAS = (
    ("created→scheduled", "scheduled", "created"),
    ("scheduled→startTime", "start_time", "scheduled"),
    ("scheduled→initialized", "initialized", "scheduled"),
    ("scheduled→startedAt (schedule→run)", "started_at", "scheduled"),
    ("startTime→startedAt", "started_at", "start_time"),
    ("startedAt→Ready", "ready", "started_at"),
    ("startedAt→ContainersReady", "containers_ready", "started_at"),
    ("bind→first status PATCH", "patch1", "bind"),
    ("bind→second status PATCH", "patch2", "bind"),
    ("first→second status PATCH", "patch2", "patch1"),
)


def parse(stamp: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None


def pod_times(pod: dict[str, Any]) -> dict[str, dt.datetime | None]:
    """The timestamps the kubelet (and the scheduler, and the apiserver) wrote."""
    status = pod.get("status", {})
    conditions = {c["type"]: c.get("lastTransitionTime") for c in status.get("conditions", [])}
    started = [cs["state"]["running"].get("startedAt")
               for cs in status.get("containerStatuses", []) if "running" in cs.get("state", {})]
    return {
        "created": parse(pod["metadata"]["creationTimestamp"]),
        "scheduled": parse(conditions.get("PodScheduled")),
        "initialized": parse(conditions.get("Initialized")),
        "containers_ready": parse(conditions.get("ContainersReady")),
        "ready": parse(conditions.get("Ready")),
        "start_time": parse(status.get("startTime")),
        "started_at": max((t for s in started if (t := parse(s))), default=None),
    }


def audit_times(audit_log: Path, since: dt.datetime, until: dt.datetime, namespace: str
                ) -> tuple[dict[str, dt.datetime], dict[str, list[dt.datetime]]]:
    """Per pod name: the scheduler's binding, and every kubelet status PATCH (any side)."""
    binds: dict[str, dt.datetime] = {}
    patches: dict[str, list[dt.datetime]] = defaultdict(list)
    users = {SCHEDULER_USER, *KUBELET_USERS.values()}
    for request in read_audit(audit_log, since=since, until=until, users=users):
        if request.namespace != namespace or request.resource != "pods":
            continue
        if request.subresource == "binding" and request.verb == "create":
            binds.setdefault(request.name, request.time)
        elif request.subresource == "status" and request.verb == "patch":
            patches[request.name].append(request.time)
    return binds, patches


def stats(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def pct(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {"n": len(ordered), "min": round(ordered[0], 3), "p50": pct(0.5), "p90": pct(0.9),
            "p99": pct(0.99), "max": round(ordered[-1], 3),
            "mean": round(statistics.fmean(ordered), 3)}


def measure(api: Api, audit_log: Path, sides: dict[str, str], namespace: str,
            since: dt.datetime, until: dt.datetime, *, rows_wanted: bool = True) -> dict[str, Any]:
    """Per side (side → Deployment name): the deltas' distributions, and per-pod rows of
    the raw times they were computed from (``rows_wanted``)."""
    binds, patches = audit_times(audit_log, since, until, namespace)
    result: dict[str, Any] = {}
    for side, app in sides.items():
        pods = api.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=f"app={app}")
        rows = []
        deltas: dict[str, list[float]] = defaultdict(list)
        for pod in pods["items"]:
            name = pod["metadata"]["name"]
            times: dict[str, dt.datetime | None] = pod_times(pod)
            times["bind"] = binds.get(name)
            sent = sorted(patches.get(name, []))
            times["patch1"] = sent[0] if sent else None
            times["patch2"] = sent[1] if len(sent) > 1 else None
            row: dict[str, Any] = {"pod": name, "node": pod["spec"].get("nodeName"),
                                   "status_patches": len(sent)}
            row.update({k: iso(v) for k, v in times.items()})
            rows.append(row)
            for label, later, earlier in DELTAS:
                a, b = times.get(later), times.get(earlier)
                if a and b:
                    deltas[label].append((a - b).total_seconds())
        result[side] = {
            "pods": len(rows),
            "deltas_seconds": {label: stats(deltas[label]) for label, _, _ in DELTAS},
            "status_patches_per_pod": stats([r["status_patches"] for r in rows]),
        }
        if rows_wanted:
            result[side]["rows"] = rows
    return result


def show(measured: dict[str, Any]) -> None:
    table = Table(title="pod timestamps, seconds (p50 / p90 / p99)")
    table.add_column("delta")
    for side in measured:
        table.add_column(side)
    for label in [*(d[0] for d in DELTAS), "status PATCHes per pod"]:
        cells = []
        for side in measured:
            s = measured[side]["status_patches_per_pod"] if label.startswith("status") \
                else measured[side]["deltas_seconds"][label]
            cells.append("-" if not s.get("n") else f"{s['p50']:g} / {s['p90']:g} / {s['p99']:g}")
        table.add_row(label, *cells)
    out.print(table)


def run(name: str, nodes: int, pods_per_node: int, settle: float, go_start_interval: float,
        results_dir: Path) -> None:
    results = ResultFile("timestamps", results_dir)
    results.data = {"benchmark": "timestamps", "nodes_per_side": nodes,
                    "pods_per_node": pods_per_node, "environment": environment(),
                    "command": f"benchmarks/timestamps.py --nodes {nodes} "
                               f"--pods-per-node {pods_per_node} --settle {settle:g}"}
    results.save()
    cluster: LocalCluster | None = None
    try:
        cluster = start_cluster(name, audit=True)
        fleet = GoFleet.for_cluster(cluster, nodes, prefix="go", start_interval=go_start_interval)
        py = start_py_hollow(cluster, nodes, prefix="py")

        def check() -> None:
            fleet.check_alive()
            check_proc(py)

        with console.status("launching Go hollow nodes") as status:
            fleet.start(status.update)
        wait_ready(cluster, {"go": nodes, "py": nodes}, check=check, timeout=180 + nodes)
        api = Api(cluster)
        namespace = "timestamps"
        sides = {"go": fleet.names, "py": [f"py-{i}" for i in range(nodes)]}

        def mark(boundary: str) -> None:
            if boundary != "start_end":
                return
            # Give the audit backend time to write the last PATCHes of the window.
            time.sleep(3.0)
            measured = measure(api, cluster.dir / "logs" / "audit.log",
                               {s: cycle.name(s) for s in sides}, namespace,
                               cycle.times["create"], utcnow())
            results.data["window"] = {"create": iso(cycle.times["create"]),
                                      "measured": iso(utcnow())}
            results.data["sides"] = measured
            results.save()
            show(measured)

        cycle = PodCycle(api, sides, pods_per_node=pods_per_node, hold=settle, settle=settle,
                         namespace=namespace, mark=mark)
        cycle.run(check=check)
        results.data["running_after_seconds"] = cycle.running_after
        results.save()
    finally:
        with shielded():
            results.save()
            console.print(f"results: {results.path}")
        if cluster is not None:
            with shielded():
                cluster.down()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--nodes", type=click.IntRange(1, 50), default=3, show_default=True,
              help="Hollow nodes per side (Go and pykubemark).")
@click.option("--pods-per-node", type=click.IntRange(1, 110), default=10, show_default=True)
@click.option("--settle", type=float, default=12.0, show_default=True,
              help="Seconds after all pods are Running before they are read (a status "
              "manager's batch is 10 s).")
@click.option("--go-start-interval", type=float, default=0.5, show_default=True)
@click.option("--name", default="bench-timestamps", show_default=True,
              help="Name of the throw-away cluster.")
@results_dir_option(RESULTS)
def main(nodes: int, pods_per_node: int, settle: float, go_start_interval: float, name: str,
         results_dir: Path) -> None:
    """Pod timestamps written by Go kubemark and pykubemark hollow nodes, side by side."""
    run_cli(lambda: run(name, nodes, pods_per_node, settle, go_start_interval, results_dir))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
