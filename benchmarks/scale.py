"""Scale: the largest fleet one pykubemark process holds on one core, judged by the apiserver.

For each size in ``--sizes`` (smallest first) a fresh local cluster with an audit log,
one `pykubemark hollow` process pinned to one core (``taskset -c --cpu``), the time until
every node is Ready, then a ``--window`` of idling during which the apiserver's audit
log gives every lease renewal its own receive time. A size *holds* when the p99 of the
gaps between a node's renewals stays under ``--max-gap`` (12 s: the lease is renewed
every 10 s), no node is NotReady at the end, and every node's Ready heartbeat is younger
than the status report period plus a minute; a size whose nodes are not all Ready
within 120 s + 0.2 s per node does not hold either. The first size that does not hold ends the
search; "nodes per core" is the largest size that held — measured, not derived from
millicores. RSS and PSS per node, the hollow process's CPU over the window and the
control plane's are recorded beside it (and both over the ramp), and each gap is split
into the apiserver's own time on the update before it (from the audit log) and the rest,
so the reader sees which side was short.

    .venv/bin/python benchmarks/scale.py                    # 1000 to 4000, kubelet fidelity
    .venv/bin/python benchmarks/scale.py --fidelity lite
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import click
from benchlib import (
    Api,
    NotReadyInTime,
    ResultFile,
    check_proc,
    console,
    environment,
    iso,
    results_dir_option,
    run_cli,
    shielded,
    sleep_checked,
    start_cluster,
    start_py_hollow,
    utcnow,
    wait_ready,
)

from pykubemark.cluster.control_plane import LocalCluster
from pykubemark.measure.audit import Request, read_audit
from pykubemark.measure.resources import cpu_seconds, process_tree
from pykubemark.measure.stats import percentiles

MIB = 1 << 20


def lease_renewals(audit_log: Path, since: dt.datetime, until: dt.datetime,
                   prefix: str) -> dict[str, list[tuple[float, float]]]:
    """Per node, the gaps between consecutive lease updates as the apiserver received
    them (the audit log's requestReceivedTimestamp), each with the apiserver's own time on
    the update before it: a kubelet sleeps its renew interval only after its last update
    was answered, so that part of a long gap is the control plane's, the rest the node's."""
    updates: dict[str, list[Request]] = defaultdict(list)
    for request in read_audit(audit_log, since=since, until=until):
        if (request.resource == "leases" and request.verb == "update"
                and request.name.startswith(prefix) and 200 <= request.code < 300):
            updates[request.name].append(request)
    return {name: [((b.time - a.time).total_seconds(), a.seconds or 0.0)
                   for a, b in itertools.pairwise(done)]
            for name, done in updates.items()}


def node_health(api: Api, prefix: str, report_period: float) -> dict[str, int]:
    nodes = [n for n in api.get("/api/v1/nodes")["items"]
             if n["metadata"]["name"].startswith(prefix + "-")]
    now = utcnow()
    not_ready = stale = 0
    for node in nodes:
        ready = next((c for c in node["status"].get("conditions", [])
                      if c["type"] == "Ready"), {})
        if ready.get("status") != "True":
            not_ready += 1
        beat = dt.datetime.fromisoformat(ready.get("lastHeartbeatTime", "1970-01-01T00:00:00Z")
                                         .replace("Z", "+00:00"))
        if (now - beat).total_seconds() > report_period + 60:
            stale += 1
    return {"nodes": len(nodes), "not_ready": not_ready, "status_late": stale}


def measure_size(size: int, *, fidelity: str, cpu: int, window: float, max_gap: float,
                 name: str, bin_dir: Path | None) -> dict[str, Any]:
    cluster: LocalCluster = start_cluster(name, audit=True, bin_dir=bin_dir)
    result: dict[str, Any] = {"nodes": size, "fidelity": fidelity, "cpu": cpu}
    try:
        control = [p for proc in cluster.state.running() for p in process_tree(proc.pid)]
        ramp_start, control_cpu = time.monotonic(), cpu_seconds(control)
        hollow = start_py_hollow(cluster, size, prefix="scale", fidelity=fidelity, cpu=cpu,
                                 extra=["--register-rate", "100"])
        fleet = process_tree(hollow.pid)
        try:
            result["ramp_seconds"] = round(wait_ready(
                cluster, {"scale": size}, check=lambda: check_proc(hollow),
                timeout=120 + size / 5), 1)
        except NotReadyInTime as exc:
            result.update({"holds": False, "ramp_failed": str(exc)})
            return result
        finally:
            # which side was short while the nodes registered: a pinned hollow core near
            # 1.0, or the control plane near the cores left to it
            seconds = time.monotonic() - ramp_start
            result["ramp_cores"] = {
                "hollow": round(cpu_seconds(fleet) / seconds, 3),
                "control_plane": round((cpu_seconds(control) - control_cpu) / seconds, 3)}
        start, fleet_cpu, control_cpu = utcnow(), cpu_seconds(fleet), cpu_seconds(control)
        sleep_checked(window, lambda: check_proc(hollow), f"{size} nodes idling")
        end = utcnow()
        fleet_cpu, control_cpu = cpu_seconds(fleet) - fleet_cpu, cpu_seconds(control) - control_cpu
        memory = [p.memory_full_info() for p in process_tree(hollow.pid)]
        gaps = lease_renewals(cluster.dir / "logs" / "audit.log", start, end, "scale-")
        pairs = [pair for node in gaps.values() for pair in node]
        every_gap = [gap for gap, _ in pairs]
        health = node_health(Api(cluster), "scale", 300)
        gap = percentiles(every_gap, with_max=True)
        p99 = gap.get("Perc99")
        result.update({
            "window": {"start": iso(start), "end": iso(end), "seconds": window},
            "lease_gap_seconds": {**gap, "nodes_renewing": len(gaps),
                                  "mean": statistics.fmean(every_gap) if every_gap else None},
            # where a long gap went: the apiserver answering the update before it, and
            # the rest (the renew interval with its jitter, and the hollow side's delay)
            "lease_update_apiserver_seconds": percentiles([a for _, a in pairs],
                                                          with_max=True),
            "lease_gap_less_apiserver_seconds": percentiles([g - a for g, a in pairs],
                                                            with_max=True),
            "health": health,
            "rss_mib_per_node": round(sum(m.rss for m in memory) / MIB / size, 3),
            "pss_mib_per_node": round(sum(m.pss for m in memory) / MIB / size, 3),
            "hollow_cores": round(fleet_cpu / window, 3),
            "control_plane_cores": round(control_cpu / window, 3),
        })
        result["holds"] = bool(
            p99 is not None and p99 < max_gap and len(gaps) == size
            and health["not_ready"] == 0 and health["status_late"] == 0)
    finally:
        with shielded():
            cluster.down()
    return result


@click.command()
@click.option("--sizes", default="1000,2000,3000,4000", show_default=True,
              help="Fleet sizes to try, smallest first; the first that fails ends the search.")
@click.option("--fidelity", type=click.Choice(["kubelet", "lite"]), default="kubelet",
              show_default=True)
@click.option("--cpu", type=int, default=None,
              help="The core the hollow process is pinned to (default: the last one).")
@click.option("--window", type=click.FloatRange(10), default=90.0, show_default=True,
              help="Idle seconds judged after all nodes are Ready.")
@click.option("--max-gap", type=float, default=12.0, show_default=True,
              help="p99 of the gaps between a node's lease renewals must stay below this.")
@click.option("--name", default="bench-scale", show_default=True)
@results_dir_option()
@click.option("--bin-dir", type=click.Path(path_type=Path), default=None)
def main(sizes: str, fidelity: str, cpu: int | None, window: float, max_gap: float, name: str,
         results_dir: Path, bin_dir: Path | None) -> None:
    """Find the largest fleet one process holds on one core."""
    counts = [int(s) for s in sizes.split(",") if s.strip()]
    core = cpu if cpu is not None else (os.cpu_count() or 1) - 1
    result = ResultFile(f"scale-{fidelity}", results_dir)
    result.data = {"benchmark": "scale", "status": "running", "started": iso(utcnow()),
                   "params": {"sizes": counts, "fidelity": fidelity, "cpu": core,
                              "window": window, "max_gap": max_gap},
                   "environment": environment(), "sizes": []}
    result.save()

    def body() -> None:
        for size in counts:
            measured = measure_size(size, fidelity=fidelity, cpu=core, window=window,
                                    max_gap=max_gap, name=name, bin_dir=bin_dir)
            result.data["sizes"].append(measured)
            result.save()
            if "ramp_failed" in measured:
                console.print(f"{size} nodes: holds=False, {measured['ramp_failed']}; "
                              f"cores during the ramp {measured['ramp_cores']}")
            else:
                gap = measured.get("lease_gap_seconds", {})
                console.print(
                    f"{size} nodes: holds={measured['holds']} ramp "
                    f"{measured['ramp_seconds']} s, lease gap p99 {gap.get('Perc99')} s, "
                    f"{measured['health']}, RSS {measured['rss_mib_per_node']} MiB/node, "
                    f"hollow {measured['hollow_cores']} cores, control plane "
                    f"{measured['control_plane_cores']} cores")
            if not measured["holds"]:
                break
        held = [m["nodes"] for m in result.data["sizes"] if m["holds"]]
        result.data["nodes_per_core"] = max(held, default=0)
        result.data["status"] = "complete"
        result.data["finished"] = iso(utcnow())
        result.save()
        console.print(f"nodes per core ({fidelity}): {result.data['nodes_per_core']} "
                      f"(largest size that held); results: {result.path}")

    try:
        run_cli(body)
    finally:
        if result.data["status"] != "complete":
            result.data["status"] = "partial"
            with shielded():
                result.save()


if __name__ == "__main__":
    main()
