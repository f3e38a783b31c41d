"""The metrics `ab` and `trend` judge, read from each run's own files (summary.json and
its perfdata, through `report.compare.load_run`): nothing is measured again here.

- pod start-up: every pod group's p50/p90/p99 of start-up and of each of its phases;
- API call latency per class of call: the p99 of the SLO rows (the worst call of each
  class, as the run judged it);
- the worst calls: the `WORST_CALLS` calls of the highest p99 that have, in every run,
  the samples a percentile needs (`compare.samples_needed`), with p50, p90 and p99;
- scheduling throughput: its windows' p50 and max (higher is better);
- control-plane CPU (p50, p90 of the samples) and memory (p50, max) of etcd and each
  control-plane component.

SLO-bearing (what `ab` fails on by default): pod start-up p99 of each group and the API
call latency of each class. Names are `compare`'s (summary name, labels, statistic), so
that the same glob patterns select metrics in both.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pykubemark.measure.registry import (
    API_RESPONSIVENESS,
    POD_STARTUP,
    RESOURCE_USAGE,
    SCHEDULING_THROUGHPUT,
)
from pykubemark.report.compare import ABSOLUTE_FLOORS, load_run, samples_needed

POD_STARTUP_PREFIX = f"{POD_STARTUP.perfdata}_"
PHASES = ("pod_startup", "create_to_schedule", "schedule_to_run", "run_to_watch",
          "schedule_to_watch")
#: Phases between two apiserver timestamps, which have whole seconds: one tick is noise.
SECOND_PHASES = frozenset({"create_to_schedule", "schedule_to_run"})
PERCENTILES = ("Perc50", "Perc90", "Perc99")
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
RESOURCE_STATS = {"cpu": ("Perc50", "Perc90"), "memory": ("Perc50", "Max")}
SCHEDULING_STATS = ("Perc50", "Max")
WORST_CALLS = 5
#: The API call classes of the SLO rows, as they appear in a metric's name.
API_CLASSES = {
    "mutating and single-object calls": "single-object",
    "namespace LIST calls": "namespace-list",
    "cluster LIST calls": "cluster-list",
    "collection DELETE calls": "collection-delete",
}
_SLO_CLASS = re.compile(r"^API call latency p99, (?P<kind>[^(]+?)(?: \(|$)")

GROUPS = ("pod start-up", "API latency per class", "worst API calls",
          "scheduling throughput", "control plane")


@dataclass(frozen=True)
class Metric:
    name: str                 # compare's style: Summary{Label=value,...}.Stat
    title: str                # in words, for people
    unit: str
    group: str
    higher_is_better: bool = False
    slo: bool = False         # SLO-bearing: fails `ab` by default
    floor: float = 0.0        # changes within it are not news (the unit's, or more)


@dataclass(frozen=True)
class Sample:
    value: float
    count: int | None = None  # the samples behind a percentile, where the perfdata says


def _floor(unit: str) -> float:
    return ABSOLUTE_FLOORS.get(unit, 0.0)


def _short(label: str) -> str:
    return label.removesuffix("PodStartupLatency") or "Latency"


def run_values(directory: Path) -> dict[Metric, Sample]:
    """Every candidate metric one run has, with its value (worst calls: every call)."""
    run = load_run(directory)
    out: dict[Metric, Sample] = {}
    for key, value in run.metrics.items():
        labels = dict(key.labels)
        if key.summary.startswith(POD_STARTUP_PREFIX) and labels.get("Metric") in PHASES \
                and key.key in PERCENTILES:
            group = key.summary[len(POD_STARTUP_PREFIX):]
            phase = labels["Metric"]
            floor = 1000.0 if phase in SECOND_PHASES and value.unit == "ms" else _floor(
                value.unit)
            title = f"{_short(group)} pods: {phase} {key.key.replace('Perc', 'p')}"
            out[Metric(key.name, title, value.unit, GROUPS[0],
                       slo=phase == "pod_startup" and key.key == "Perc99",
                       floor=floor)] = Sample(value.value)
        elif key.summary == API_RESPONSIVENESS.perfdata and key.key in PERCENTILES \
                and "Verb" in labels:
            call = f"{labels['Verb']} {labels.get('Resource', '')}"
            if labels.get("Subresource"):
                call += f"/{labels['Subresource']}"
            title = f"{call} ({labels.get('Scope', '')}) {key.key.replace('Perc', 'p')}"
            out[Metric(key.name, title, value.unit, GROUPS[2],
                       floor=_floor(value.unit))] = Sample(value.value, value.count)
        elif key.summary == SCHEDULING_THROUGHPUT.perfdata and key.key in SCHEDULING_STATS:
            out[Metric(key.name, f"scheduling throughput {key.key.replace('Perc', 'p')}",
                       value.unit, GROUPS[3], higher_is_better=True,
                       floor=_floor(value.unit))] = Sample(value.value)
        elif key.summary == RESOURCE_USAGE.perfdata and labels.get("Name") in CONTROL_PLANE \
                and key.key in RESOURCE_STATS.get(labels.get("Resource", ""), ()):
            title = f"{labels['Name']} {labels['Resource']} {key.key.replace('Perc', 'p')}"
            out[Metric(key.name, title, value.unit, GROUPS[4],
                       floor=_floor(value.unit))] = Sample(value.value)
    summary = run.summary
    for slo in summary.slos if summary is not None else []:
        match = _SLO_CLASS.match(slo.name)
        if slo.measurement != API_RESPONSIVENESS.perfdata or not match or slo.value is None:
            continue
        kind = match["kind"].strip()
        short = API_CLASSES.get(kind, kind.replace(" ", "-"))
        out[Metric(f"{API_RESPONSIVENESS.perfdata}{{Class={short}}}.Perc99",
                   f"API call latency p99, {kind} (worst call)", slo.unit, GROUPS[1],
                   slo=True, floor=_floor(slo.unit))] = Sample(slo.value)
    return out


def _order(metric: Metric) -> tuple[int, str]:
    return (GROUPS.index(metric.group), metric.name)


def select(runs: Iterable[dict[Metric, Sample]]) -> list[Metric]:
    """The metrics to judge over these runs (of both sides): those every run has, except
    that of the API calls only the `WORST_CALLS` of the highest median p99 are kept,
    and only the percentiles whose samples suffice in every run."""
    runs = list(runs)
    if not runs:
        return []
    common = set(runs[0]).intersection(*runs[1:])
    chosen = [m for m in common if m.group != GROUPS[2]]
    calls: dict[str, list[Metric]] = {}
    for metric in common:
        if metric.group != GROUPS[2]:
            continue
        stat = metric.name.rsplit(".", 1)[1]
        needed = samples_needed(stat)
        if all((run[metric].count or 0) >= needed for run in runs):
            calls.setdefault(metric.name.rsplit(".", 1)[0], []).append(metric)
    p99 = {call: statistics.median(run[m].value for run in runs)
           for call, metrics in calls.items() for m in metrics if m.name.endswith(".Perc99")}
    for call in sorted(p99, key=lambda c: (-p99[c], c))[:WORST_CALLS]:
        chosen.extend(calls[call])
    return sorted(chosen, key=_order)


def values(runs: Sequence[dict[Metric, Sample]], metric: Metric) -> list[float]:
    return [run[metric].value for run in runs if metric in run]
