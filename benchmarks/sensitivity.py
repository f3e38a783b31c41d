"""Does a control-plane change show on hollow nodes as it shows on real ones?

The Kubemark blog's claim — "an improvement/regression in a real cluster is visible as a
similar percentage drop/increase in metrics in Kubemark" — measured: the same density
run at one small size, on N real nodes (`up --real-nodes`, real kubelets, containerd and
kube-proxy of the release) and on N nodes of each emulator (`--fleets`: pykubemark,
the Go kubemark, KWOK), under a baseline control plane and under each of `CHANGES`,
control-plane flags whose direction is known.

Every run is a fresh cluster (as `ab` runs them): rounds of every (change, fleet) in
turn, the order reversed every other round, so that this machine's drift falls on all
of them alike. Per fleet, change and metric (`pykubemark.ab.metrics`: pod start-up
percentiles and phases, API latency per class, scheduling throughput, control-plane CPU
and memory), the change against the baseline runs of the same fleet is judged as `ab`
judges it (`pykubemark.ab.stats`: Hodges–Lehmann ratio, Moses' interval, a verdict at
``--confidence``). Where the real nodes' verdict is not "no change", the row says
whether each emulator moved the same way, and by how much of the real change
(target: the same direction, within ±30 % of it).

Defaults: 3 nodes of each fleet (what this machine carries of real nodes beside the
control plane), 10 pods a node, the first four changes (``--changes`` adds
``scheduler-qps-fifth`` and ``etcd-json``), 4 runs of each (change, fleet) — 4 a side is
the fewest for which Mann–Whitney can reach 95 %: 40 runs for two fleets, about 40
minutes here. Smaller, e.g. ``--repeat 1 --changes inflight-tenth``, writes the same
file (verdicts need 3 or more runs a side).

Each run's metric values are kept in the result, so ``--pool FILE`` judges this
sitting's runs together with an earlier result's (same nodes and pods per node): the
emulators' columns can be run apart from the real nodes' reference, e.g.
``--fleets kubemark,kwok --pool sensitivity-....json``. Pooled runs come from another
sitting, and its drift is not spread over them as within one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import yaml
from benchlib import (
    ResultFile,
    console,
    environment,
    hollow_runtime_option,
    recording_status,
    results_dir_option,
    run_cli,
    runtime_name,
    shielded,
    utcnow,
)

from pykubemark.ab import metrics as ab_metrics
from pykubemark.ab.stats import NO_CHANGE, compare_values
from pykubemark.errors import Interrupted, UserError
from pykubemark.load.scenario import scenario_text

#: name: (component, flags). Each moves the SLIs one known way: the watch cache off sends
#: every LIST and WATCH to etcd; a tenth of the in-flight limits (APF's seats) queues
#: requests; the scheduler's client QPS cut to 2 (from 50) delays binding by seconds a
#: run, beyond the real nodes' run-to-run noise (a fifth of it, 10 QPS, binds 30 pods in
#: time: no real metric moved); the controller-manager's cut to a fifth slows the
#: ReplicaSets' pod creation; JSON in etcd is the blog's own example.
CHANGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "no-watch-cache": ("apiserver", ("--watch-cache=false",)),
    "inflight-tenth": ("apiserver", ("--max-requests-inflight=40",
                                     "--max-mutating-requests-inflight=20")),
    "scheduler-qps-2": ("scheduler", ("--kube-api-qps=2", "--kube-api-burst=4")),
    "controller-manager-qps-fifth": ("controller-manager", ("--kube-api-qps=4",
                                                            "--kube-api-burst=6")),
    "scheduler-qps-fifth": ("scheduler", ("--kube-api-qps=10", "--kube-api-burst=20")),
    "etcd-json": ("apiserver", ("--storage-media-type=application/json",)),
}
BASELINE = "baseline"
FLEETS = ("real", "pykubemark", "kubemark", "kwok")
#: How close an emulator's change must be to the real one's: a fraction of it.
TOLERANCE = 0.30
#: Real nodes run real containers: the release's pause, built locally (no registry).
REAL_IMAGE = "localhost/pykubemark-pause:3.4"


def scenario_file(work: Path) -> Path:
    """density, with the image every fleet can run (the real nodes have no registry)."""
    text, _ = scenario_text("density")
    data = yaml.safe_load(text)
    data["name"] = "density-sensitivity"
    data["image"] = REAL_IMAGE
    path = work / "density-sensitivity.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def up(name: str, fleet: str, change: str, nodes: int, runtime: Path | None = None) -> None:
    from pykubemark.cluster import lifecycle
    from pykubemark.cluster.control_plane import UpOptions
    from pykubemark.engines import NodeOptions

    component, flags = CHANGES.get(change, ("", ()))
    args = {f"{component.replace('-', '_')}_args": flags} if component else {}
    lifecycle.up(lifecycle.UpRequest(
        cluster=UpOptions(name=name, size=nodes, **args),
        engine="pykubemark" if fleet == "real" else fleet,
        nodes=NodeOptions(count=0 if fleet == "real" else nodes,
                          profile_file=runtime if fleet == "pykubemark" else None),
        real_nodes=nodes if fleet == "real" else 0, addons=()))


def down(name: str) -> None:
    from pykubemark.cluster import lifecycle

    with shielded(), contextlib.suppress(UserError):
        lifecycle.down(name)


def one_run(work: Path, scenario: Path, fleet: str, change: str, index: int, nodes: int,
            pods_per_node: int, name: str, runtime: Path | None = None,
            table: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    out = work / f"{fleet}-{change}-{index:02d}"
    # a directory of an earlier sitting: its files would stand in for any this run lacks
    shutil.rmtree(out, ignore_errors=True)
    cluster = f"{name}-{fleet}"
    row: dict[str, Any] = {"fleet": fleet, "change": change, "index": index,
                           "directory": str(out), "started": utcnow()}
    began = time.monotonic()
    try:
        try:
            up(cluster, fleet, change, nodes, runtime)
        except Interrupted:
            raise KeyboardInterrupt from None  # the whole benchmark stops, keeping its runs
        except UserError as exc:  # this run is lost, not the others
            console.print(f"  [red]{exc.message}[/]")
            row.update(usable=False, error=exc.message)
            return row
        with (work / f"{out.name}.log").open("wb") as log:
            code = subprocess.run(
                [sys.executable, "-m", "pykubemark", "run", str(scenario), "--cluster",
                 cluster, "--out", str(out), "--quiet", "--nodes", str(nodes),
                 "--pods-per-node", str(pods_per_node)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                check=False).returncode
        row["exit_code"] = code
        row["usable"] = (out / "summary.json").is_file() and code in (0, 1)
        if row["usable"] and table is not None:
            row.update(kept_values(out, table))
    finally:
        down(cluster)
        row["seconds"] = round(time.monotonic() - began, 1)
    return row


def kept_values(out: Path, table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A run's metrics as the result keeps them: values and sample counts by name, the
    definitions in ``table`` (one for all runs). API calls sampled too rarely to be
    judged in this run are left out: `ab_metrics.select` would drop them anyway."""
    values: dict[str, float] = {}
    counts: dict[str, int] = {}
    for metric, sample in ab_metrics.run_values(out).items():
        stat = metric.name.rsplit(".", 1)[-1]
        if metric.group == ab_metrics.GROUPS[2] and \
                (sample.count or 0) < ab_metrics.samples_needed(stat):
            continue
        table[metric.name] = dataclasses.asdict(metric)
        values[metric.name] = sample.value
        if sample.count is not None:
            counts[metric.name] = sample.count
    return {"values": values, "counts": counts}


def run_values(run: dict[str, Any], table: dict[str, dict[str, Any]]
               ) -> dict[ab_metrics.Metric, ab_metrics.Sample]:
    """A run's metrics from the result, or (one written before they were kept) read
    again from its directory."""
    if "values" not in run:
        return ab_metrics.run_values(Path(run["directory"]))
    counts = run.get("counts", {})
    return {ab_metrics.Metric(**table[name]): ab_metrics.Sample(value, counts.get(name))
            for name, value in run["values"].items()}


def pooled_runs(paths: tuple[Path, ...], nodes: int, pods_per_node: int,
                table: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs of earlier results of the same size, each marked with its file; their
    metric definitions join ``table``."""
    runs = []
    for path in paths:
        try:
            earlier = json.loads(path.read_text())
            params = earlier["params"]
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"--pool {path}: not a sensitivity result ({exc})") from None
        if (params.get("nodes"), params.get("pods_per_node")) != (nodes, pods_per_node):
            raise UserError(f"--pool {path}: {params.get('nodes')} nodes and "
                            f"{params.get('pods_per_node')} pods a node, not {nodes} and "
                            f"{pods_per_node}")
        table.update(earlier.get("metrics", {}))
        runs += [{**run, "pooled_from": path.name} for run in earlier.get("runs", [])]
    return runs


def judge(runs: list[dict[str, Any]], table: dict[str, dict[str, Any]], fleets: list[str],
          changes: list[str], confidence: float) -> dict[str, Any]:
    """Per fleet and change, every metric's verdict against the fleet's baseline; then the
    rows where the real nodes moved, with each emulator beside them."""
    values: dict[tuple[str, str], list[dict[ab_metrics.Metric, ab_metrics.Sample]]] = {}
    for run in runs:
        if run.get("usable"):
            values.setdefault((run["fleet"], run["change"]), []).append(run_values(run, table))
    verdicts: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for fleet in fleets:
        base = values.get((fleet, BASELINE), [])
        for change in changes:
            moved = values.get((fleet, change), [])
            if len(base) < 3 or len(moved) < 3:
                continue
            for metric in ab_metrics.select([*base, *moved]):
                v = compare_values(ab_metrics.values(base, metric),
                                   ab_metrics.values(moved, metric),
                                   higher_is_better=metric.higher_is_better,
                                   floor=metric.floor, confidence=confidence)
                verdicts.setdefault(fleet, {}).setdefault(change, {})[metric.name] = {
                    "title": metric.title, "unit": metric.unit, "verdict": v.verdict,
                    "change": round(v.change, 4), "low": round(v.low - 1, 4),
                    "high": None if v.high is None else round(v.high - 1, 4),
                    "baseline_median": v.baseline_median, "median": v.candidate_median}
    rows = []
    emulators = [f for f in fleets if f != "real"]
    for change, metrics in verdicts.get("real", {}).items():
        for name, real in metrics.items():
            if real["verdict"] == NO_CHANGE:
                continue
            row: dict[str, Any] = {"change": change, "metric": name, "title": real["title"],
                                   "real": real["change"], "real_interval": [real["low"],
                                                                             real["high"]]}
            for fleet in emulators:
                other = verdicts.get(fleet, {}).get(change, {}).get(name)
                if other is None:
                    row[fleet] = None
                    continue
                same_way = other["change"] != 0 and \
                    (other["change"] > 0) == (real["change"] > 0)
                close = abs(other["change"] - real["change"]) <= TOLERANCE * abs(real["change"])
                row[fleet] = {"change": other["change"],
                              "interval": [other["low"], other["high"]],
                              "verdict": other["verdict"], "same_direction": same_way,
                              "within_tolerance": same_way and close}
            rows.append(row)
    summary = {fleet: {"rows": sum(1 for r in rows if r.get(fleet) is not None),
                       "same_direction": sum(1 for r in rows if (r.get(fleet) or {}).get(
                           "same_direction")),
                       "within_tolerance": sum(1 for r in rows if (r.get(fleet) or {}).get(
                           "within_tolerance"))} for fleet in emulators}
    return {"verdicts": verdicts, "moved_on_real": rows, "summary": summary}


@click.command()
@click.option("--nodes", type=int, default=3, show_default=True,
              help="Nodes of each fleet (real nodes cost ~200 MiB each).")
@click.option("--pods-per-node", type=int, default=10, show_default=True)
@click.option("--repeat", type=int, default=4, show_default=True,
              help="Runs of each (change, fleet), the baseline's included.")
@click.option("--fleets", default="real,pykubemark", show_default=True,
              help=f"Comma-separated, of {', '.join(FLEETS)}; real first is the reference.")
@click.option("--changes", "changes_", default=",".join(list(CHANGES)[:4]), show_default=True,
              help="Comma-separated, of the names in CHANGES.")
@click.option("--confidence", type=float, default=0.95, show_default=True)
@click.option("--name", default="sens", show_default=True, help="Cluster name prefix.")
@hollow_runtime_option(", so that a change's share of pod start-up compares")
@click.option("--work-dir", type=click.Path(path_type=Path),
              default=Path("/tmp/pykubemark-sensitivity"), show_default=True,
              help="Where the runs' directories go (kept: each has its report).")
@click.option("--pool", multiple=True, type=click.Path(exists=True, dir_okay=False,
                                                      path_type=Path),
              help="An earlier result of the same size whose runs are judged with these "
              "(e.g. the real nodes' reference); may be given more than once.")
@results_dir_option()
def main(nodes: int, pods_per_node: int, repeat: int, fleets: str, changes_: str,
         confidence: float, name: str, runtime: Path | None, work_dir: Path,
         pool: tuple[Path, ...], results_dir: Path) -> None:
    """A density run on real and hollow nodes under control-plane changes, side by side."""
    fleet_list = [f.strip() for f in fleets.split(",") if f.strip()]
    change_list = [c.strip() for c in changes_.split(",") if c.strip()]
    for fleet in fleet_list:
        if fleet not in FLEETS:
            raise UserError(f"--fleets: {fleet} is not one of {', '.join(FLEETS)}")
    for change in change_list:
        if change not in CHANGES:
            raise UserError(f"--changes: {change} is not one of {', '.join(CHANGES)}")
    if nodes < 1 or repeat < 1 or pods_per_node < 1:
        raise UserError("--nodes, --repeat and --pods-per-node must be at least 1")
    table: dict[str, dict[str, Any]] = {}
    pooled = pooled_runs(pool, nodes, pods_per_node, table)
    # this sitting's fleets and the pool's, in FLEETS' order (`judge` finds real by name)
    judged = sorted({*fleet_list, *(r["fleet"] for r in pooled)}, key=FLEETS.index)
    work_dir.mkdir(parents=True, exist_ok=True)
    scenario = scenario_file(work_dir)
    result = ResultFile("sensitivity", results_dir)
    configs = [BASELINE, *change_list]
    result.data = {
        "benchmark": "sensitivity", "started": utcnow(),
        "params": {"nodes": nodes, "pods_per_node": pods_per_node, "repeat": repeat,
                   "fleets": fleet_list, "confidence": confidence, "tolerance": TOLERANCE,
                   "scenario": "density (image " + REAL_IMAGE + ")",
                   "hollow_runtime": runtime_name(runtime),
                   "pooled_with": [p.name for p in pool]},
        "changes": {c: {"component": CHANGES[c][0], "flags": list(CHANGES[c][1])}
                    for c in change_list},
        "environment": environment(), "runs": [], "metrics": table}
    runs: list[dict[str, Any]] = result.data["runs"]
    total = repeat * len(configs) * len(fleet_list)

    def analyse() -> None:
        result.data.update(judge([*pooled, *runs], table, judged, change_list, confidence))
        result.save()

    try:
        with recording_status(result.data):
            for round_ in range(1, repeat + 1):
                order = [(c, f) for c in configs for f in fleet_list]
                for change, fleet in order if round_ % 2 else reversed(order):
                    console.print(f"run {len(runs) + 1} of {total}: {fleet}, {change} "
                                  f"(round {round_})")
                    runs.append(one_run(work_dir, scenario, fleet, change, round_, nodes,
                                        pods_per_node, name, runtime, table))
                    result.save()
    finally:
        analyse()  # with how it ended
    console.print_json(data=result.data["summary"])
    console.print(str(result.path))


if __name__ == "__main__":
    run_cli(main)
