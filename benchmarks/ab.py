"""How honest `pykubemark ab`'s verdicts are: false alarms on A/A comparisons, and the
detection of a known slowdown.

- A/A: ``--aa`` comparisons of the default release against itself, same flags: every
  verdict other than "no change" is a false alarm; the figure is false alarms over all
  (metric, comparison) verdicts (the issue asks for at most 5 %).
- Slowdown: ``--slow`` comparisons whose candidate runs its apiserver with API Priority
  and Fairness cut to one seat per priority level (``--max-requests-inflight=1
  --max-mutating-requests-inflight=1``). Its cost is known in kind and large here: every
  non-exempt request (kubelets', controllers', the scheduler's; the run's own admin client
  is exempt) waits in its level's queue for the one seat, so the latency of single-object
  calls goes up: `AFFECTED` is the SLO's p99 of that class (flagged as a regression in at
  least 8 of 10 comparisons is the goal). The per-resource rows of such calls (GET pods,
  POST events, PATCH pods/status) go up with it and are counted apart. The saturation
  pods' start-up is not among the affected: at 5 nodes and 50 pods created at 20/s the
  queue is short-lived: a first comparison found their start-up unchanged (×0.95,
  interval 0.88–1.01), and its p99 was flagged in 1 of the 10 since. `UNAFFECTED` are
  metrics that no queue holds: the memory of etcd, the scheduler and the
  controller-manager (a regression flagged there is a false one).
- ``--design both``: the A/A comparisons are run once per design (interleaved, then
  together), for the choice of `ab`'s default: the figures per design are the false
  alarms, the median half-width of the intervals and the minutes per comparison.

Defaults: `ab`'s own verdict settings (6 runs a side, its default design) on density at
5 nodes and 10 pods a node, 10 A/A and 10 slowdown comparisons. The size is what makes
20 comparisons of 12 fresh clusters each fit in hours rather than a day (a run is about
30 s here; at `ab`'s own 100 nodes, minutes). The figures are those of the statistics
against this machine's run-to-run noise, which a small run has more of, not less. The
comparisons of earlier result files of the same settings count with ``--pool``, so the
set can be built over several sittings; another size writes the same figures, labelled
with its command (`environment.argv`).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import math
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import click
from benchlib import (
    ResultFile,
    console,
    environment,
    recording_status,
    results_dir_option,
    run_cli,
    utcnow,
)

from pykubemark.ab.result import AbResult, read_result
from pykubemark.ab.runner import DEFAULT_DESIGN, DEFAULT_REPEAT, AbOptions, AbRun, analyse
from pykubemark.ab.spec import resolve_side
from pykubemark.ab.stats import NO_CHANGE, REGRESSION

SLOWDOWN = ("--max-requests-inflight=1", "--max-mutating-requests-inflight=1")
AFFECTED = ("APIResponsivenessPrometheus{Class=single-object}.Perc99",)
UNAFFECTED = (
    "ResourceUsageSummary{Name=etcd,Resource=memory}.*",
    "ResourceUsageSummary{Name=kube-scheduler,Resource=memory}.*",
    "ResourceUsageSummary{Name=kube-controller-manager,Resource=memory}.*",
)


def matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def half_width(low: float, high: float | None) -> float | None:
    """Half the interval's width on the log scale (None: unbounded)."""
    if low <= 0 or high is None:
        return None
    return (math.log(high) - math.log(low)) / 2


def metric_rows(result: AbResult) -> list[dict[str, Any]]:
    return [{"name": m.name, "group": m.group, "slo": m.slo, "verdict": m.result.verdict,
             "ratio": round(m.result.ratio, 4), "low": round(m.result.low, 4),
             "high": None if m.result.high is None else round(m.result.high, 4),
             "detectable": None if m.result.detectable is None
             else round(m.result.detectable, 4)} for m in result.metrics]


def reusable(out: Path, options: dict[str, Any], design: str) -> AbResult | None:
    """A completed comparison of the same settings left in its directory (--resume)."""
    if not (out / "ab.json").is_file() or not (out / "runs").is_dir():
        return None
    earlier = read_result(out / "ab.json")
    if earlier.status != "completed" or earlier.design != design \
            or earlier.nodes != options["nodes"] \
            or sum(r.usable for r in earlier.runs) != 2 * options["repeat"]:
        return None
    return analyse(earlier, out)


def comparison(kind: str, index: int, design: str, options: dict[str, Any],
               work: Path, keep_runs: bool, resume: bool = False) -> dict[str, Any]:
    out = work / f"{kind}-{design}-{index:02d}"
    result = reusable(out, options, design) if resume else None
    minutes = 0.0
    if result is not None:
        console.print(f"  reusing the completed comparison in {out}")
        started_at = dt.datetime.fromisoformat(result.started.replace("Z", "+00:00"))
        ended_at = dt.datetime.fromisoformat(str(result.finished).replace("Z", "+00:00"))
        minutes = (ended_at - started_at).total_seconds() / 60
    else:
        shutil.rmtree(out, ignore_errors=True)
        candidate_flags = {"apiserver": SLOWDOWN} if kind == "slow" else {}
        ab_options = AbOptions(
            scenario=options["scenario"], baseline=resolve_side("baseline", None),
            candidate=resolve_side("candidate", None, candidate_flags), out=out,
            nodes=options["nodes"], run_args=tuple(options["run_args"]),
            parameters=options["parameters"], repeat=options["repeat"], design=design,
            name=options["name"])
        started = time.monotonic()
        result = AbRun(ab_options, say=lambda line: console.print(
            f"  [{kind} {index}] {line}", highlight=False)).run()
        minutes = (time.monotonic() - started) / 60
    row: dict[str, Any] = {
        "kind": kind, "index": index, "design": design, "status": result.status,
        "minutes": round(minutes, 2), "directory": str(out),
        "runs": {side: sum(1 for r in result.runs if r.side == side and r.usable)
                 for side in ("baseline", "candidate")},
        "verdict": result.verdict, "metrics": metric_rows(result)}
    if design == "together":  # the same runs judged as pairs, for the design's figures
        result.paired = True
        row["paired_metrics"] = metric_rows(analyse(result, out))
    if not keep_runs:
        shutil.rmtree(out / "runs", ignore_errors=True)
    return row


def aa_figures(rows: list[dict[str, Any]], key: str = "metrics") -> dict[str, Any]:
    verdicts = [m for row in rows for m in row.get(key, [])]
    false = [m for m in verdicts if m["verdict"] != NO_CHANGE]
    widths = [w for m in verdicts if (w := half_width(m["low"], m["high"])) is not None]
    groups: dict[str, dict[str, Any]] = {}
    for m in verdicts:
        g = groups.setdefault(m["group"], {"verdicts": 0, "false_alarms": 0, "widths": []})
        g["verdicts"] += 1
        g["false_alarms"] += m["verdict"] != NO_CHANGE
        w = half_width(m["low"], m["high"])
        if w is not None:
            g["widths"].append(w)
    for g in groups.values():
        widths_g = g.pop("widths")
        g["median_half_width_pct"] = round(100 * (math.exp(statistics.median(widths_g)) - 1),
                                           1) if widths_g else None
    return {
        "comparisons": len(rows), "verdicts": len(verdicts), "false_alarms": len(false),
        "false_alarm_rate": round(len(false) / len(verdicts), 4) if verdicts else None,
        "false_alarm_names": sorted({m["name"] for m in false}),
        "median_half_width_pct": round(100 * (math.exp(statistics.median(widths)) - 1), 1)
        if widths else None,
        "minutes_per_comparison": round(statistics.mean(r["minutes"] for r in rows), 2)
        if rows else None,
        "by_group": groups}


def slow_figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    affected: dict[str, int] = {}
    unaffected_regressions = unaffected_verdicts = 0
    other_regressions: dict[str, int] = {}
    for row in rows:
        for m in row["metrics"]:
            if matches(m["name"], AFFECTED):
                affected[m["name"]] = affected.get(m["name"], 0) + (m["verdict"] == REGRESSION)
            elif matches(m["name"], UNAFFECTED):
                unaffected_verdicts += 1
                unaffected_regressions += m["verdict"] == REGRESSION
            elif m["verdict"] == REGRESSION:
                other_regressions[m["name"]] = other_regressions.get(m["name"], 0) + 1
    return {"comparisons": len(rows), "slowdown": list(SLOWDOWN),
            "affected_flagged": affected,
            "affected_flagged_in_all": min(affected.values()) if affected else 0,
            "comparisons_failing": sum(1 for r in rows if r["verdict"] == REGRESSION),
            "unaffected_verdicts": unaffected_verdicts,
            "unaffected_regressions": unaffected_regressions,
            "other_regressions": dict(sorted(other_regressions.items()))}


def figures(rows: list[dict[str, Any]], designs: list[str]) -> dict[str, Any]:
    """The A/A and slowdown figures of the completed comparisons (one cut short by an
    interrupt judged fewer runs than the settings say: it does not count)."""
    done = [r for r in rows if r["status"] == "completed"]
    aa = {d: aa_figures([r for r in done if r["kind"] == "aa" and r["design"] == d])
          for d in designs}
    if "together" in designs:
        aa["together-paired"] = aa_figures(
            [r for r in done if r["kind"] == "aa" and r["design"] == "together"],
            key="paired_metrics")
    return {"aa": aa, "slow": slow_figures([r for r in done if r["kind"] == "slow"])}


@click.command()
@click.option("--scenario", default="density", show_default=True)
@click.option("--nodes", type=int, default=5, show_default=True)
@click.option("--pods-per-node", type=int, default=10, show_default=True)
@click.option("--repeat", type=int, default=DEFAULT_REPEAT, show_default=True)
@click.option("--aa", "aa", type=int, default=10, show_default=True,
              help="A/A comparisons (per design with --design both).")
@click.option("--slow", type=int, default=10, show_default=True,
              help="Comparisons against the known slowdown.")
@click.option("--design", type=click.Choice(["interleaved", "together", "both"]),
              default=DEFAULT_DESIGN, show_default=True)
@click.option("--name", default="abbench", show_default=True, help="Cluster name prefix.")
@click.option("--work-dir", type=click.Path(path_type=Path),
              default=Path("/tmp/pykubemark-ab-bench"), show_default=True,
              help="Where the comparisons' directories go.")
@click.option("--keep-runs", is_flag=True, help="Keep each run's directory.")
@click.option("--resume", is_flag=True,
              help="Reuse the completed comparisons of the same settings in --work-dir.")
@click.option("--label", default="", help="Part of the result file's name.")
@click.option("--pool", "pool", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="An earlier result file of the same settings whose comparisons count "
              "with this run's (e.g. the A/A comparisons of a --design both run).")
@results_dir_option()
def main(scenario: str, nodes: int, pods_per_node: int | None, repeat: int, aa: int,
         slow: int, design: str, name: str, work_dir: Path, keep_runs: bool,
         label: str, pool: tuple[Path, ...], resume: bool, results_dir: Path) -> None:
    """A/A false alarms and known-slowdown detection of `pykubemark ab`."""
    run_args = ["--pods-per-node", str(pods_per_node)] if pods_per_node is not None else []
    options = {"scenario": scenario, "nodes": nodes, "run_args": run_args,
               "parameters": {"pods_per_node": pods_per_node} if pods_per_node else {},
               "repeat": repeat, "name": name}
    designs = ["interleaved", "together"] if design == "both" else [design]
    result = ResultFile(f"ab{'-' + label if label else ''}", results_dir)
    result.data = {"benchmark": "ab", "label": label, "started": utcnow(),
                   "params": {**options, "aa": aa, "slow": slow, "design": design,
                              "affected": list(AFFECTED), "unaffected": list(UNAFFECTED)},
                   "environment": environment(), "comparisons": []}
    rows: list[dict[str, Any]] = result.data["comparisons"]
    same = ("scenario", "nodes", "run_args", "repeat")
    for path in pool:
        earlier = ResultFile.reopen(path).data
        if any(earlier["params"].get(k) != options[k] for k in same):
            raise click.UsageError(f"--pool {path}: other settings ({earlier['params']})")
        pooled = [{**row, "pooled_from": path.name} for row in earlier["comparisons"]
                  if row["design"] in designs and row["status"] == "completed"]
        rows.extend(pooled)
        console.print(f"pooled {len(pooled)} comparisons from {path.name}")

    def summarise() -> None:
        result.data.update(figures(rows, designs))
        result.save()

    work_dir.mkdir(parents=True, exist_ok=True)
    def first(kind: str, which: str) -> int:  # numbered after the pooled ones
        return 1 + sum(1 for r in rows if r["kind"] == kind and r["design"] == which)

    plan = [("aa", i, d) for d in designs for i in range(first("aa", d), first("aa", d) + aa)]
    plan += [("slow", i, designs[0])
             for i in range(first("slow", designs[0]), first("slow", designs[0]) + slow)]
    try:
        with recording_status(result.data):
            for kind, index, which in plan:
                console.print(f"[bold]{kind} comparison {index} ({which})[/]")
                row = comparison(kind, index, which, options, work_dir, keep_runs, resume)
                rows.append(row)
                summarise()
                if row["status"] != "completed":
                    raise KeyboardInterrupt
    finally:
        summarise()  # with how it ended
    console.print_json(data={"aa": result.data["aa"], "slow": result.data["slow"]})
    console.print(str(result.path))


if __name__ == "__main__":
    run_cli(main)
