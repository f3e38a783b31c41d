"""Did the candidate run regress against the baseline? Pairs every perfdata value of two runs.

A metric is one number of a perfdata file, named by its summary name (the file name without
`_<test>_<time>.json`, so two runs of different times pair), its labels without `Count` and
`SlowCount` (they are counts, not identities) and its data key (Perc50, Perc99, Max...).
Both pykubemark `--out` directories and plain clusterloader2 result files are read.

Direction: lower is better, except for throughputs (a measurement the registry says so of,
`measure.registry`; or, in a foreign file, a summary name containing `Throughput` or the
unit `1/s`), where higher is better.

A change is a regression (or an improvement) when it is worse (better) by more than the
tolerance, in percent of the baseline, AND by more than the absolute floor of its unit, so
that noise on tiny values (an API call going from 2 ms to 3 ms is +50 %) never fails a run:

    ms: 10 ms    s: 0.01 s    1/s: 1 per second    cores: 0.05 cores    MiB: 10 MiB
    bytes (B): 10 MiB    any other unit: no floor

A percentile is only judged when both runs have the samples it needs, where the perfdata
says (the `Count` label of API calls and etcd): 1/(1-q), i.e. 100 for Perc99, 10 for Perc90;
with fewer, the p99 is just the slowest call, and its change is shown but not judged.

Tolerances can be set per metric in a YAML file mapping glob patterns of metric names (as
shown in the table, e.g. `PodStartupLatency_*{Metric=pod_startup}.Perc99`) to percentages,
or to `{tolerance: percent, floor: value in the metric's unit}`; when several patterns
match, the longest one wins. (Pod-startup phases between two apiserver timestamps are whole
seconds: a floor of 1000 ms for `*{Metric=create_to_schedule}*` ignores one-tick changes.)
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any

from pykubemark.errors import UserError, read_yaml_mapping
from pykubemark.measure import registry
from pykubemark.report.rundir import RunFiles, read_perfdata_files, read_run
from pykubemark.report.summary import RunSummary

ABSOLUTE_FLOORS: dict[str, float] = {
    "ms": 10.0,
    "s": 0.01,
    "1/s": 1.0,
    "cores": 0.05,
    "MiB": 10.0,
    "B": 10 * 2**20,
    "bytes": 10 * 2**20,
}
DEFAULT_TOLERANCE = 10.0
IGNORED_LABELS = frozenset({"Count", "SlowCount"})

REGRESSION = "regression"
IMPROVEMENT = "improvement"
OK = "ok"
ONLY_BASELINE = "only in baseline"
ONLY_CANDIDATE = "only in candidate"
_ORDER = {REGRESSION: 0, ONLY_BASELINE: 1, ONLY_CANDIDATE: 2, IMPROVEMENT: 3, OK: 4}


@dataclass(frozen=True, order=True)
class MetricKey:
    summary: str
    labels: tuple[tuple[str, str], ...]
    key: str

    @property
    def name(self) -> str:
        labels = ",".join(f"{k}={v}" for k, v in self.labels)
        return f"{self.summary}{{{labels}}}.{self.key}" if labels else f"{self.summary}.{self.key}"


@dataclass(frozen=True)
class Value:
    value: float
    unit: str
    count: int | None = None  # the Count label (API calls, etcd): samples behind a percentile


@dataclass
class Run:
    """The metrics of one run, and its files when it was an output directory."""

    label: str
    metrics: dict[MetricKey, Value]
    files: RunFiles | None = None

    @property
    def summary(self) -> RunSummary | None:
        """Its summary.json, when it was a pykubemark output directory that has one."""
        return self.files.summary if self.files is not None else None


@dataclass
class Row:
    metric: MetricKey
    unit: str
    baseline: float | None
    candidate: float | None
    change_pct: float | None  # None when not computable (missing side, zero baseline)
    tolerance: float
    floor: float
    higher_is_better: bool
    verdict: str
    note: str = ""

    @property
    def name(self) -> str:
        return self.metric.name

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


@dataclass
class Comparison:
    baseline: Run
    candidate: Run
    rows: list[Row] = field(default_factory=list)

    @property
    def regressions(self) -> list[Row]:
        return [row for row in self.rows if row.verdict == REGRESSION]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(_ORDER, 0)
        for row in self.rows:
            counts[row.verdict] += 1
        return counts


def load_run(source: Path | str | Sequence[Path | str]) -> Run:
    """A run from an output directory, a directory of clusterloader2 results, one perfdata
    file, a glob pattern of them, or a list of any of these."""
    sources = [source] if isinstance(source, (str, Path)) else list(source)
    if not sources:
        raise UserError("no run given")
    files: RunFiles | None = None
    paths: list[Path] = []
    test: str | None = None
    for item in sources:
        text = str(item)
        if any(ch in text for ch in "*?[") and not Path(text).exists():
            matched = sorted(glob(text))
            if not matched:
                raise UserError(f"no file matches {text}")
            paths.extend(Path(p) for p in matched)
            continue
        path = Path(item)
        if path.is_dir():
            run = read_run(path)
            if len(sources) == 1:
                files = run
            test = test or (run.summary.test if run.summary is not None else None)
            paths.extend(p.path for p in run.perfdata.values())
        elif path.is_file():
            paths.append(path)
        else:
            raise UserError(f"{path} does not exist")
    perfdata = read_perfdata_files(paths, test)
    if not perfdata:
        shown = ", ".join(str(s) for s in sources)
        raise UserError(f"no perfdata (clusterloader2 result JSON) found in {shown}")
    metrics: dict[MetricKey, Value] = {}
    for summary, data in perfdata.items():
        for item in data.items:
            labels = item.get("labels") if isinstance(item.get("labels"), dict) else {}
            kept = tuple(sorted((str(k), str(v)) for k, v in labels.items()
                                if k not in IGNORED_LABELS))
            unit = str(item.get("unit", ""))
            count = _count(labels.get("Count"))
            for key, value in item["data"].items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) \
                        and math.isfinite(value):
                    metrics[MetricKey(summary, kept, str(key))] = Value(float(value), unit, count)
    label = str(sources[0]) if len(sources) == 1 else f"{sources[0]} (+{len(sources) - 1})"
    return Run(label, metrics, files)


@dataclass(frozen=True)
class Limit:
    """A per-metric override: tolerance in percent and/or absolute floor (None: default)."""

    tolerance: float | None = None
    floor: float | None = None


def load_tolerances(path: Path) -> dict[str, Limit]:
    """Per-metric overrides from a YAML file: glob pattern of metric names → a percentage,
    or → {tolerance: percent, floor: absolute value in the metric's unit}."""
    loaded = read_yaml_mapping(path, "tolerances file", empty_ok=True)
    limits: dict[str, Limit] = {}
    for pattern, value in loaded.items():
        spec = value if isinstance(value, dict) else {"tolerance": value}
        unknown = set(spec) - {"tolerance", "floor"}
        if unknown:
            raise UserError(f"tolerances file {path}: {pattern!r} has unknown key "
                            f"{sorted(unknown)[0]!r} (tolerance, floor)")
        for key, number in spec.items():
            if isinstance(number, bool) or not isinstance(number, (int, float)) or number < 0:
                raise UserError(f"tolerances file {path}: {key} of {pattern!r} must be a "
                                f"number >= 0, not {number!r}")
        limits[str(pattern)] = Limit(
            *(float(spec[k]) if k in spec else None for k in ("tolerance", "floor")))
    return limits


def _count(label: Any) -> int | None:
    try:
        return int(str(label))
    except ValueError:
        return None


def samples_needed(key: str) -> int:
    """Samples for a percentile to be more than the largest one: 1/(1-q), so 100 for Perc99,
    10 for Perc90, 2 for Perc50; 0 (always judged) for anything else."""
    match = re.fullmatch(r"Perc(\d+)", key)
    if not match:
        return 0
    q = int(match[1]) / 10 ** len(match[1])
    return math.ceil(1 / (1 - q) - 1e-9) if q < 1 else 0


def higher_is_better(metric: MetricKey, unit: str) -> bool:
    measurement = registry.by_perfdata(metric.summary)
    if measurement is not None and measurement.higher_is_better:
        return True
    return "Throughput" in metric.summary or unit == "1/s"


def limits_for(name: str, tolerance: float, floor: float,
               overrides: Mapping[str, float | Limit]) -> tuple[float, float]:
    """Tolerance and floor of one metric: of the patterns that match its name and set the
    value, the longest wins."""
    found = {"tolerance": tolerance, "floor": floor}
    for key in found:
        best = -1
        for pattern, limit in overrides.items():
            limit = limit if isinstance(limit, Limit) else Limit(tolerance=float(limit))
            value = getattr(limit, key)
            if value is not None and len(pattern) > best and fnmatch.fnmatchcase(name, pattern):
                found[key], best = value, len(pattern)
    return found["tolerance"], found["floor"]


def judge(baseline: float, candidate: float, tolerance: float, floor: float,
          higher_better: bool) -> tuple[float | None, str]:
    """Change in percent of the baseline, and the verdict."""
    delta = candidate - baseline
    change = delta / abs(baseline) * 100 if baseline else (0.0 if not delta else None)
    if abs(delta) <= floor or delta == 0:
        return (change, OK)
    worse = delta < 0 if higher_better else delta > 0
    if change is not None and abs(change) <= tolerance:
        return (change, OK)
    return (change, REGRESSION if worse else IMPROVEMENT)


def compare_runs(baseline: Run, candidate: Run, tolerance: float = DEFAULT_TOLERANCE,
                 overrides: Mapping[str, float | Limit] | None = None) -> Comparison:
    """Every metric of either run, paired, with its verdict; regressions first."""
    if tolerance < 0:
        raise UserError(f"tolerance must be >= 0, not {tolerance}")
    overrides = overrides or {}
    rows: list[Row] = []
    for metric in sorted(baseline.metrics.keys() | candidate.metrics.keys()):
        base = baseline.metrics.get(metric)
        cand = candidate.metrics.get(metric)
        unit = (cand or base).unit  # type: ignore[union-attr]
        higher = higher_is_better(metric, unit)
        allowed, floor = limits_for(metric.name, tolerance, ABSOLUTE_FLOORS.get(unit, 0.0),
                                    overrides)
        note = ""
        if base is None or cand is None:
            verdict = ONLY_CANDIDATE if base is None else ONLY_BASELINE
            change = None
        else:
            change, verdict = judge(base.value, cand.value, allowed, floor, higher)
            needed = samples_needed(metric.key)
            fewest = min((v.count for v in (base, cand) if v.count is not None), default=None)
            if fewest is not None and needed and fewest < needed and verdict != OK:
                verdict, note = OK, f"only {fewest} samples"
        rows.append(Row(metric, unit, base.value if base else None,
                        cand.value if cand else None, change, allowed, floor, higher, verdict,
                        note))
    rows.sort(key=lambda row: (_ORDER[row.verdict], row.metric))
    return Comparison(baseline, candidate, rows)

