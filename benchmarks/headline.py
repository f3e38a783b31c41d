"""The headline: Kubernetes' 2000 nodes and 60 000 pods, on this machine, end to end.

Kubernetes 1.3 announced 2000 nodes and 60 000 pods; Kubemark needed 22 machines of 8
cores for the hollow nodes alone. This runs the same shape as a user would, with the
product's own commands: ``pykubemark up --nodes N`` (kubelet fidelity; the control
plane sized for N nodes as Kubernetes' kubemark master is) and ``pykubemark run density
--pods-per-node P``, then reads the run's own files to say which side was short, phase
by phase: each component's mean CPU, and pods turned Running (saturation) or deleted
(cleanup) per second per core of hollow-node CPU. The run directory (report.html,
perfdata) stays under ``--out``; the committed result keeps the summary's SLO table, the
phases and those figures.

    .venv/bin/python benchmarks/headline.py                  # 2000 nodes x 30 pods
    .venv/bin/python benchmarks/headline.py --nodes 20 --pods-per-node 2   # tiny
    .venv/bin/python benchmarks/headline.py --reanalyse benchmarks/results/headline-....json
    .venv/bin/python benchmarks/headline.py --nodes 5000 --processes 3 --idle 1800 \
        --pods-per-node 1                  # Kubernetes' 5000 nodes: 30 idle minutes first

``--idle`` leaves the Ready fleet alone that many seconds before the density run and
keeps, from the apiserver's side, every gap between two renewals of a node's Lease and
every node it reported NotReady, with each component's cores and memory over the window:
whether a fleet that size is carried at all, before pods make it harder.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import click
import psutil
from benchlib import (
    REPO,
    RESULTS_DIR,
    ResultFile,
    console,
    environment,
    results_dir_option,
    run_cli,
    shielded,
    timestamp,
)
from observe import (
    REQUESTS,
    Counts,
    Leases,
    Nodes,
    admin_client,
    by_labels,
    cores_between,
    cpu_readings,
    fleet_ports,
    read_fleet,
    rss_readings,
)

from pykubemark.cluster.control_plane import LocalCluster, python_argv
from pykubemark.errors import UserError

#: What the SLO table of the report calls the component rows of ResourceUsage.
CONTROL_PLANE = ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler")


#: What `pykubemark up --nodes` names its nodes (hollow-0, hollow-1, ...).
PREFIX = "hollow"


async def idle_window(cluster: LocalCluster, seconds: float, result: ResultFile,
                      every: float = 60.0) -> None:
    """The Ready fleet left alone for ``seconds``: lease gaps and NotReady nodes as the
    apiserver sees them (watched), and each process's cores over the window and memory
    at its end; ``result`` saved every ``every`` seconds, so a cut run keeps them."""
    async with admin_client(cluster) as client:
        leases, nodes = Leases(client, PREFIX), Nodes(client, PREFIX)
        watches = [asyncio.create_task(o.run()) for o in (leases, nodes)]
        try:
            await asyncio.wait_for(asyncio.gather(leases.synced.wait(), nodes.synced.wait()),
                                   300)
            leases.reset_gaps()
            before = cpu_readings(cluster)
            began, figures = time.monotonic(), {"ready_at_start": nodes.count_ready()}
            result.data["idle"] = figures
            while (elapsed := time.monotonic() - began) < seconds:
                await asyncio.sleep(min(every, seconds - elapsed))
                elapsed = time.monotonic() - began
                figures.update({
                    "seconds": round(elapsed, 1),
                    "cores": cores_between(cpu_readings(cluster), before, elapsed),
                    "rss_mib": rss_readings(cluster),
                    "leases": leases.summary(),
                    "ready_at_end": nodes.count_ready(),
                    "nodes_seen_not_ready": len({event[1] for event in nodes.not_ready}),
                    "not_ready": nodes.not_ready[:50],
                })
                result.save()
                console.print(f"idle {elapsed / 60:.1f} min: {figures['ready_at_end']} Ready, "
                              f"lease gap max {figures['leases']['max_gap_s']} s, cores "
                              f"{figures['cores']}")
        finally:
            for task in watches:
                task.cancel()
            await asyncio.gather(*watches, return_exceptions=True)


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def mean_cores(series: list[list[float]], start: float, end: float) -> float | None:
    """Mean of a ResourceUsage CPU series (seconds since the run's start, cores) over
    [start, end]; None when no sample fell inside."""
    inside = [cores for t, cores in series if start <= t <= end]
    return sum(inside) / len(inside) if inside else None


def phase_cores(run_dir: Path, summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per finished phase: its length and the mean cores of each side over it, from the
    run's ResourceUsage series — which side was short, phase by phase."""
    cpu_file = run_dir / "series" / "ResourceUsage_cpu.json"
    series = json.loads(cpu_file.read_text())["series"] if cpu_file.exists() else {}
    started = _when(summary["started"])
    figures = {}
    for phase in summary["phases"]:
        if not phase.get("finished"):
            continue
        start = (_when(phase["started"]) - started).total_seconds()
        end = (_when(phase["finished"]) - started).total_seconds()
        cores = {name: mean_cores(points, start, end) for name, points in series.items()}
        figures[phase["name"]] = {
            "seconds": round(end - start, 1),
            "mean_cores": {k: round(v, 3) for k, v in cores.items() if v is not None},
            "control_plane_cores": round(sum(cores.get(c) or 0.0 for c in CONTROL_PLANE), 3),
        }
    return figures


def pod_rates(pods: int, cores: dict[str, Any], verb: str) -> dict[str, float | None]:
    """Pods per second over a phase, and per core of hollow-node CPU (derived, its idle
    cost included)."""
    rate = pods / cores["seconds"] if cores["seconds"] > 0 else None
    hollow = cores["mean_cores"].get("hollow")
    return {f"pods_{verb}_per_s": round(rate, 2) if rate else None,
            f"hollow_pods_{verb}_per_s_per_core":
                round(rate / hollow, 1) if rate and hollow else None}


def saturation_figures(run_dir: Path, phases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Pods Running per second in the saturation phase, and the CPU each side spent on
    it, from the run's own files (summary.json, series/, raw/)."""
    if "saturation" not in phases:
        return {}
    cores = phases["saturation"]
    raw = run_dir / "raw" / "PodStartupLatency_SaturationPodStartupLatency.json"
    # a pod with a start-up latency was seen Running by the measurement's watch
    pods = sum(1 for p in json.loads(raw.read_text())["pods"].values()
               if p.get("pod_startup") is not None) if raw.exists() else 0
    return {**cores, "pods_seen_running": pods, **pod_rates(pods, cores, "running")}


def cleanup_figures(summary: dict[str, Any], phases: dict[str, dict[str, Any]],
                    pods: int) -> dict[str, Any]:
    """Pods deleted per second by the cleanup phase, when it completed (it removes the
    saturation pods; the latency pods are gone before it)."""
    cores = phases.get("cleanup")
    if cores is None or summary["status"] != "completed" or not pods:
        return {}
    return {**cores, "pods_deleted": pods, **pod_rates(pods, cores, "deleted")}


def perfdata_figures(run_dir: Path) -> dict[str, Any]:
    """The headline figures of the clusterloader2-format files, which the measurements
    write as they finish even when the run's summary is cut short."""
    figures: dict[str, Any] = {}
    for path in sorted(run_dir.glob("*.json")):
        if path.name == "summary.json":
            continue
        items = json.loads(path.read_text()).get("dataItems", [])
        kind = path.name.split("_")[0]
        if kind == "PodStartupLatency":
            which = path.name.split("_")[1]
            figures[which] = {i["labels"]["Metric"]: i["data"] for i in items}
        elif kind == "SchedulingThroughput" and items:
            figures["scheduling_throughput_pods_per_s"] = items[0]["data"]
        elif kind == "NodeReadiness" and items:
            figures["node_readiness"] = items[0]["data"]
        elif kind == "APIResponsivenessPrometheus":
            worst = sorted(items, key=lambda i: -i["data"].get("Perc99", 0.0))[:5]
            figures["api_call_latency_worst_p99_ms"] = [
                {**i["labels"], "Perc99": round(i["data"]["Perc99"])} for i in worst]
    return figures


def analyse(run_dir: Path) -> dict[str, Any]:
    """What the committed result keeps of a run directory."""
    summary = json.loads((run_dir / "summary.json").read_text())
    phases = phase_cores(run_dir, summary)
    saturation = saturation_figures(run_dir, phases)
    return {
        "run_status": summary["status"], "verdict": summary["verdict"],
        "parameters": summary["parameters"],
        "nodes_ready": summary["cluster"].get("ready_nodes"),
        "phases": summary["phases"], "slos": summary["slos"],
        "apiserver_flags": [f for f in summary["cluster"]["flags"].get("kube-apiserver", [])
                            if "inflight" in f or "ram" in f],
        "cpu_by_phase": phases,
        "saturation": saturation,
        "cleanup": cleanup_figures(summary, phases, saturation.get("pods_seen_running", 0)),
        "perfdata": perfdata_figures(run_dir),
    }


def _commit() -> str:
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()


def analyse_again(path: Path) -> None:
    """A finished run's figures by today's analysis, e.g. one added after the run began."""
    result = ResultFile.reopen(path)
    run_dir = Path(result.data.get("run_dir", ""))
    if not (run_dir / "summary.json").exists():
        raise UserError(f"{path}: its run directory {run_dir} has no summary.json")
    result.data.update(analyse(run_dir))
    result.data["analysed_with"] = f"benchmarks/headline.py of {_commit()}"
    if result.data["run_status"] == "completed":
        result.data["status"] = "complete"
    result.save()
    console.print(f"result: {result.path}")


#: The fleet's gauge of its nodes by state, as `observe.parse_counts` keys it.
NODES = "pykubemark_nodes{state="


class Ramp(threading.Thread):
    """While `up` starts the fleet: every ``every`` s the nodes the fleet has registered,
    each process's cores since the last sample and memory, and the fleet's requests by
    answer since the last sample — where registration slows, and which side was short."""

    def __init__(self, name: str, processes: int, result: ResultFile,
                 every: float = 30.0) -> None:
        super().__init__(daemon=True)
        self.cluster, self.processes, self.result, self.every = name, processes, result, every
        self.stopped = threading.Event()
        self.samples: list[dict[str, Any]] = result.data.setdefault("ramp", [])

    def run(self) -> None:
        began = time.monotonic()
        last: tuple[float, dict[str, tuple[int, float]], Counts] | None = None
        done = False
        while not done:
            # one sample more once `up` is done: the fleet as it left it
            done = self.stopped.wait(self.every)
            with contextlib.suppress(UserError, OSError, ValueError, psutil.Error):
                cluster = LocalCluster.load(self.cluster)
                now, cpu = time.monotonic(), cpu_readings(cluster)
                counts = read_fleet(fleet_ports(cluster, self.processes))
                sample: dict[str, Any] = {
                    "t": round(now - began),
                    "nodes": {key[len(NODES):-1]: int(v) for key, v in counts.items()
                              if key.startswith(NODES)},
                    "rss_mib": rss_readings(cluster, None)}
                if last is not None:
                    sample["cores"] = cores_between(cpu, last[1], now - last[0])
                    sample["answers"] = {code: n for code, n in _by_code(
                        by_labels(counts, last[2], REQUESTS)).items() if n}
                last = (now, cpu, counts)
                self.samples.append(sample)
                self.result.save()

    def stop(self) -> None:
        self.stopped.set()
        self.join(30)


def _by_code(requests: dict[str, int]) -> dict[str, int]:
    """Requests by answer: "code=200,resource=...,verb=..." summed per code."""
    codes: dict[str, int] = {}
    for labels, n in requests.items():
        code = dict(part.split("=", 1) for part in labels.split(",")).get("code", "?")
        codes[code] = codes.get(code, 0) + n
    return codes


def _pykubemark(*args: str, check: bool = True) -> int:
    console.print(f"[dim]$ pykubemark {' '.join(args)}[/]")
    code = subprocess.call(python_argv(*args))
    if check and code != 0:
        raise UserError(f"pykubemark {args[0]} exited with {code}")
    return code


@click.command()
@click.option("--nodes", type=click.IntRange(1), default=2000, show_default=True)
@click.option("--pods-per-node", type=click.IntRange(1), default=30, show_default=True)
@click.option("--qps", type=float, default=20.0, show_default=True,
              help="Saturation pods created per second (density's own default; at 100 "
              "the control plane on 2 cores fell minutes behind).")
@click.option("--processes", type=click.IntRange(1), default=2, show_default=True,
              help="Hollow processes (event loops) for the nodes.")
@click.option("--name", default="headline", show_default=True, help="Local cluster name.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run directory (default: results/headline-<time>, or under "
              "--results-dir when that is given).")
@results_dir_option()
@click.option("--idle", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Seconds the Ready fleet is left alone (and watched) before the density "
              "run.")
@click.option("--ramp-every", type=click.FloatRange(1), default=30.0, show_default=True,
              help="Seconds between samples of the fleet while `up` starts it.")
@click.option("--keep-cluster", is_flag=True, help="Leave the cluster running afterwards.")
@click.option("--reanalyse", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Read the run directory of this result file again with this script's "
              "analysis and rewrite the file in place; no cluster is started.")
def main(nodes: int, pods_per_node: int, qps: float, processes: int, name: str,
         out: Path | None, results_dir: Path, idle: float, ramp_every: float,
         keep_cluster: bool,
         reanalyse: Path | None) -> None:
    if reanalyse is not None:
        analyse_again(reanalyse)
        return
    started = timestamp()
    runs = REPO / "results" if results_dir == RESULTS_DIR else results_dir / "runs"
    out = out or runs / f"headline-{started}"
    result = ResultFile(f"headline-{nodes}-nodes", results_dir)
    result.data.update({
        "what": f"{nodes} hollow nodes (kubelet fidelity), density at {pods_per_node} pods "
                "per node, one local control plane, all on this machine",
        "command": f"python benchmarks/headline.py --nodes {nodes} --pods-per-node "
                   f"{pods_per_node} --qps {qps:g} --processes {processes}"
                   + (f" --idle {idle:g}" if idle else ""),
        "environment": environment(),
        "commit": _commit(),
        "run_dir": str(out),
    })
    up = ["up", "--name", name, "--nodes", str(nodes), "--processes", str(processes),
          "--etcd-tmpfs"]
    ramp = Ramp(name, processes, result, ramp_every)
    try:
        ramp.start()
        try:
            _pykubemark(*up)
        finally:
            ramp.stop()
            result.save()
        if idle:
            asyncio.run(idle_window(LocalCluster.load(name), idle, result))
        # exit 1: an SLO failed, which the result records; anything else is an error
        code = _pykubemark("run", "density", "--cluster", name, "--pods-per-node",
                           str(pods_per_node), "--qps", f"{qps:g}", "--quiet",
                           "--out", str(out), check=False)
        if code not in (0, 1):
            raise UserError(f"pykubemark run exited with {code} (run directory: {out})")
    except (UserError, KeyboardInterrupt) as exc:
        result.data["status"] = getattr(exc, "message", None) or "interrupted"
        raise
    finally:
        with shielded():
            if (out / "summary.json").exists():
                result.data.update(analyse(out))
                if result.data["run_status"] == "completed":
                    result.data["status"] = "complete"
            result.save()  # a run cut short keeps what it measured (the ramp, the idle)
            console.print(f"result: {result.path}")
        with shielded():
            if not keep_cluster:
                _pykubemark("down", "--name", name, check=False)


if __name__ == "__main__":
    run_cli(main)
