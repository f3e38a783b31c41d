"""What failure costs the control plane: the built-in ``failures`` scenario run twice on
one fresh local cluster of hollow nodes — once without failures (every failure fraction
set to 0), then with crash-looping pods, pods flapping their readiness and nodes
flapping — and the two runs compared (`pykubemark compare`).

Every figure comes from the apiserver's side or the operating system's: API calls and
their latency from the apiserver's /metrics (APIResponsiveness), CPU of kube-apiserver,
etcd and kube-controller-manager from /proc (ResourceUsage); which nodes flapped is read
from their Ready condition as the controller-manager set it. The machine may be shared
with other work: the result says so, and ratios matter more than absolute values.

    .venv/bin/python benchmarks/failures.py --nodes 50 --hold-seconds 180

Writes ``results/failures-<timestamp>.json``; the two run directories are kept (their
path is in the result).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click
from benchlib import (
    Api,
    ResultFile,
    check_proc,
    console,
    environment,
    iso,
    recording_status,
    results_dir_option,
    run_cli,
    shielded,
    start_cluster,
    start_py_hollow,
    tear_down,
    timestamp,
    utcnow,
    wait_ready,
)

from pykubemark.cluster.hollow import chaos_file
from pykubemark.kube.client import ApiError
from pykubemark.report.compare import compare_runs, load_run
from pykubemark.report.rundir import read_run

CLI = [sys.executable, "-m", "pykubemark"]
PROCESSES = ("kube-apiserver", "etcd", "kube-controller-manager")
FAILURES_OFF = {"crash_fraction": 0, "flap_fraction": 0, "node_flap_fraction": 0}


class ReadyWatch:
    """Which nodes the controller-manager marked not Ready (Unknown) while a run went
    on: the apiserver's view of the node failures, polled every few seconds."""

    def __init__(self, api: Api, every: float = 3.0) -> None:
        self.api = api
        self.every = every
        self.unready: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> ReadyWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                nodes = self.api.request("GET", "/api/v1/nodes")["items"]
            except (ApiError, OSError):
                continue
            for node in nodes:
                ready = next((c for c in node["status"].get("conditions", [])
                              if c["type"] == "Ready"), None)
                if ready and ready["status"] != "True":
                    self.unready.add(node["metadata"]["name"])


def run_scenario(cluster_name: str, out: Path, sets: dict[str, Any]) -> dict[str, Any]:
    argv = [*CLI, "run", "failures", "--cluster", cluster_name, "--out", str(out), "--quiet"]
    for key, value in sets.items():
        argv += ["--set", f"{key}={value}"]
    console.print(" ".join(argv[2:]))
    started = time.monotonic()
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, check=False)
    return {"exit_code": result.returncode, "seconds": round(time.monotonic() - started, 1),
            "out": str(out), "set": sets}


def figures(out: Path) -> dict[str, Any]:
    """API calls (count by verb, the p99 of the slowest kind of call) and the CPU of each
    control-plane process (mean over the run, and its percentiles)."""
    run = read_run(out)
    calls: dict[str, int] = {}
    worst_p99 = 0.0
    cpu: dict[str, dict[str, float]] = {}
    for summary, perfdata in run.perfdata.items():
        for item in perfdata.items:
            labels = item.get("labels") or {}
            if summary.startswith("APIResponsiveness"):
                verb = labels.get("Verb", "")
                calls[verb] = calls.get(verb, 0) + int(labels.get("Count", "0") or 0)
                worst_p99 = max(worst_p99, float(item["data"].get("Perc99", 0.0)))
            elif summary.startswith("ResourceUsageSummary") and labels.get("Resource") == "cpu" \
                    and labels.get("Name") in PROCESSES:
                cpu[labels["Name"]] = {k: round(float(v), 3) for k, v in item["data"].items()}
    series = (run.series("ResourceUsage_cpu") or {}).get("series", {})
    for name, points in series.items():
        if name in cpu and points:
            cpu[name]["mean"] = round(sum(v for _, v in points) / len(points), 3)
    return {"status": run.summary.status if run.summary is not None else None,
            "api_calls": sum(calls.values()), "api_calls_by_verb": dict(sorted(calls.items())),
            "api_worst_p99_ms": round(worst_p99, 1), "cpu_cores": cpu}


def ratios(without: dict[str, Any], with_: dict[str, Any]) -> dict[str, float | None]:
    def ratio(a: float | None, b: float | None) -> float | None:
        return round(b / a, 2) if a and b is not None else None

    out = {"api_calls": ratio(without["api_calls"], with_["api_calls"])}
    for proc in PROCESSES:
        for key in ("mean", "Perc50", "Perc90"):
            out[f"{proc}_cpu_{key}"] = ratio(without["cpu_cores"].get(proc, {}).get(key),
                                             with_["cpu_cores"].get(proc, {}).get(key))
    return out


def compared(baseline: Path, candidate: Path) -> dict[str, Any]:
    result = compare_runs(load_run(str(baseline)), load_run(str(candidate)))
    return {"verdicts": result.counts(),
            "regressions": [{"metric": r.name, "unit": r.unit, "without": r.baseline,
                             "with": r.candidate, "change_pct": r.change_pct}
                            for r in result.regressions]}


@click.command()
@click.option("--nodes", type=click.IntRange(1), default=50, show_default=True)
@click.option("--pods-per-node", type=click.IntRange(1), default=10, show_default=True)
@click.option("--crash-fraction", type=float, default=0.05, show_default=True,
              help="Share of crash-looping pods (of the healthy ones).")
@click.option("--flap-fraction", type=float, default=0.01, show_default=True,
              help="Share of pods flapping their readiness.")
@click.option("--node-flap-fraction", type=float, default=0.04, show_default=True,
              help="Share of nodes flapping (at 50 nodes, 1 %% would often pick none).")
@click.option("--node-flap-period", type=float, default=60.0, show_default=True,
              help="Seconds down, then as many up (beyond the 40 s node-monitor grace).")
@click.option("--hold-seconds", type=float, default=180.0, show_default=True)
@click.option("--name", default="bench-failures", show_default=True,
              help="Cluster name (must not be running).")
@results_dir_option()
@click.option("--runs-dir", type=click.Path(path_type=Path), default=None,
              help="Where the two run directories go (default: a new temporary directory).")
def main(nodes: int, pods_per_node: int, crash_fraction: float, flap_fraction: float,
         node_flap_fraction: float, node_flap_period: float, hold_seconds: float, name: str,
         results_dir: Path, runs_dir: Path | None) -> None:
    """Run the failures scenario without and with failures; compare the two."""

    def body() -> None:
        results = ResultFile("failures", results_dir)
        runs = runs_dir or Path(tempfile.mkdtemp(prefix=f"failures-bench-{timestamp()}-"))
        common = {"pods_per_node": pods_per_node, "hold_seconds": hold_seconds,
                  "node_flap_period": node_flap_period}
        failing = {**common, "crash_fraction": crash_fraction, "flap_fraction": flap_fraction,
                   "node_flap_fraction": node_flap_fraction}
        results.data.update({
            "benchmark": "failures", "status": "running", "started": iso(utcnow()),
            "note": "shared machine (2 cores, other clusters running): compare the ratios, "
                    "not the absolute figures",
            "params": {"nodes": nodes, **failing}, "environment": environment(),
            "runs_dir": str(runs),
        })
        results.save()
        console.print(f"results: {results.path}")
        cluster = start_cluster(name)
        try:
            proc = start_py_hollow(cluster, nodes, prefix="hollow",
                                   extra=["--chaos-file", str(chaos_file(cluster))])
            wait_ready(cluster, {"hollow": nodes}, check=lambda: check_proc(proc),
                       timeout=120 + nodes)
            api = Api(cluster)
            try:
                with recording_status(results.data):
                    for side, sets in (("without", {**common, **FAILURES_OFF}),
                                       ("with", failing)):
                        with ReadyWatch(api) as watch:
                            run = run_scenario(name, runs / side, sets)
                        run["nodes_not_ready"] = sorted(watch.unready)
                        run.update(figures(runs / side))
                        results.data[side] = run
                        results.save()
                        if run["exit_code"] not in (0, 1):  # 1: an SLO missed, still measured
                            raise click.ClickException(f"the run {side} failures exited "
                                                       f"{run['exit_code']}")
                    results.data["ratio"] = ratios(results.data["without"], results.data["with"])
                    results.data["compare"] = compared(runs / "without", runs / "with")
            finally:
                with shielded():
                    results.data["finished"] = iso(utcnow())
                    results.save()
                    console.print(f"results: {results.path}")
        finally:
            tear_down(cluster, name)

    run_cli(body)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
