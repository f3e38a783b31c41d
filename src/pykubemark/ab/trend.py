"""`pykubemark trend`: the history of one scenario over many runs, per metric, with the
change points found in it and the first run after each.

Each metric's series (the same metrics as `ab` judges, `ab.metrics`) goes to ruptures'
PELT with a least-squares cost on the log of the values (a shift is a ratio, as in `ab`;
values below the unit's floor count as the floor), a minimum segment of `MIN_SEGMENT`
runs and a penalty of `PENALTY`·σ²·ln n, σ being the run-to-run noise estimated from the
median absolute difference of successive runs (robust to the shifts themselves). A change
point whose segments' medians differ by no more than the unit's floor is dropped, as `ab`
ignores such changes.

ruptures was chosen by measuring it, E-divisive means (signal-processing-algorithms) and
Apache Otava on one synthetic history with known shifts (benchmarks/changepoints.py,
docs/ab.md): E-divisive found the most for the fewest false ones, but it and Otava pin
numpy and scipy versions that cannot install beside pykubemark's; at this penalty ruptures
comes closest.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path

import msgspec
import numpy as np

from pykubemark.ab import metrics as ab_metrics
from pykubemark.errors import UserError
from pykubemark.report.summary import read_summary

MIN_SEGMENT = 3
#: The penalty factor: penalty = PENALTY · σ² · ln n (benchmarks/changepoints.py).
PENALTY = 8.0


class TrendRun(msgspec.Struct):
    label: str                 # the directory's name
    directory: str
    started: str = ""
    run_id: str = ""


class Shift(msgspec.Struct):
    index: int                 # of the first run after the shift
    run: str                   # that run's label
    before: float              # the median of the segment before it
    after: float               # and of the segment it starts
    ratio: float


class TrendMetric(msgspec.Struct):
    name: str
    title: str
    unit: str
    group: str
    higher_is_better: bool
    slo: bool
    values: list[float | None]
    shifts: list[Shift]


class TrendResult(msgspec.Struct):
    scenario: str
    runs: list[TrendRun]
    metrics: list[TrendMetric]
    penalty: float = PENALTY
    min_segment: int = MIN_SEGMENT


def _is_run(directory: Path) -> bool:
    return (directory / "summary.json").is_file()


def find_runs(directories: Sequence[Path]) -> list[Path]:
    """Run directories: each one given, or the run directories under it (an `ab` output,
    a directory of `run --out` directories), to three levels down."""
    found: list[Path] = []
    for directory in directories:
        if not directory.is_dir():
            raise UserError(f"{directory} is not a directory")
        if _is_run(directory):
            found.append(directory)
            continue
        below = sorted({p.parent for pattern in ("*/summary.json", "*/*/summary.json",
                                                  "*/*/*/summary.json")
                        for p in directory.glob(pattern)})
        if not below:
            raise UserError(f"{directory} holds no run (no summary.json in it or below)")
        found.extend(below)
    return found


def detect(values: Sequence[float], floor: float = 0.0, *, penalty: float = PENALTY,
           min_segment: int = MIN_SEGMENT) -> list[int]:
    """Indices of the first value after each change point of a series."""
    import ruptures

    if len(values) < 2 * min_segment:
        return []
    logs = np.log(np.maximum(np.asarray(values, dtype=float), floor if floor > 0 else 1e-9))
    sigma = 1.4826 * float(np.median(np.abs(np.diff(logs)))) / math.sqrt(2)
    if sigma == 0:
        sigma = float(np.std(logs)) or 1e-6
    algo = ruptures.Pelt(model="l2", min_size=min_segment, jump=1).fit(logs)
    points = [b for b in algo.predict(pen=penalty * sigma ** 2 * math.log(len(values)))
              if b < len(values)]
    kept = []
    edges = [0, *points, len(values)]
    for i, point in enumerate(points):
        before = statistics.median(values[edges[i]:point])
        after = statistics.median(values[point:edges[i + 2]])
        if abs(after - before) > floor:
            kept.append(point)
    return kept


def trend(directories: Sequence[Path], *, penalty: float = PENALTY) -> TrendResult:
    paths = find_runs(directories)
    entries = []
    for path in paths:
        summary = read_summary(path / "summary.json")
        entries.append((summary.started if summary else "", path, summary))
    entries.sort(key=lambda e: (e[0], str(e[1])))
    scenarios = {(s.test or s.scenario) for _, _, s in entries if s is not None}
    if len(scenarios) > 1:
        raise UserError(f"runs of several scenarios ({', '.join(sorted(scenarios))}): a trend "
                        "is of one")
    if len(entries) < 2:
        raise UserError("a trend needs at least 2 runs")
    runs = [TrendRun(label=path.name, directory=str(path), started=started,
                     run_id=summary.run_id if summary else "")
            for started, path, summary in entries]
    samples = [ab_metrics.run_values(path) for _, path, _ in entries]
    # metrics most runs have; of the API calls, the worst of those with enough samples
    present: dict[ab_metrics.Metric, int] = {}
    for sample in samples:
        for metric in sample:
            present[metric] = present.get(metric, 0) + 1
    common = [s for s in samples if s]
    kept = {m for m, n in present.items() if n * 3 >= 2 * len(samples)}
    chosen = set(ab_metrics.select([{m: v for m, v in s.items() if m in kept}
                                    for s in common if kept <= set(s)] or common[:1]))
    chosen |= {m for m in kept if m.group != ab_metrics.GROUPS[2]}
    out = []
    for metric in sorted(chosen, key=lambda m: (ab_metrics.GROUPS.index(m.group), m.name)):
        series: list[float | None] = [s[metric].value if metric in s else None
                                      for s in samples]
        known = [(i, v) for i, v in enumerate(series) if v is not None]
        points = detect([v for _, v in known], metric.floor, penalty=penalty)
        shifts = []
        edges = [0, *points, len(known)]
        for k, point in enumerate(points):
            before = statistics.median(v for _, v in known[edges[k]:point])
            after = statistics.median(v for _, v in known[point:edges[k + 2]])
            index = known[point][0]
            shifts.append(Shift(index=index, run=runs[index].label, before=before, after=after,
                                ratio=after / before if before else math.inf))
        out.append(TrendMetric(name=metric.name, title=metric.title, unit=metric.unit,
                               group=metric.group, higher_is_better=metric.higher_is_better,
                               slo=metric.slo, values=series, shifts=shifts))
    out.sort(key=lambda m: (not m.shifts, ab_metrics.GROUPS.index(m.group), m.name))
    scenario = next(iter(scenarios)) if scenarios else ""
    return TrendResult(scenario=scenario, runs=runs, metrics=out, penalty=penalty)


def write_trend_html(result: TrendResult, out: Path) -> Path:
    from markupsafe import Markup

    from pykubemark.files import write_atomic
    from pykubemark.report import plots
    from pykubemark.report.html import render

    labels = [r.label for r in result.runs]
    sections = []
    for number, metric in enumerate(result.metrics):
        sections.append({"m": metric, "plot": Markup(plots.trend_series(
            metric.values, labels, metric.unit, shifts=[s.index for s in metric.shifts],
            salt=f"trend-{number}", title=metric.title))})
    page = render("trend.html.j2", t=result, sections=sections,
                  title=f"pykubemark trend: {result.scenario}",
                  shifted=sum(1 for m in result.metrics if m.shifts))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return write_atomic(out, page)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror}") from None
