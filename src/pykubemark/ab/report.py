"""report.html of an A/B: the verdict, every metric ordered by severity with both sides'
runs and the ratio's interval, and links to each run's own report. Self-contained, in
the house style of the run report (report/templates/style.css, inline SVG)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from markupsafe import Markup

from pykubemark.ab.metrics import GROUPS
from pykubemark.ab.result import AbResult, MetricResult
from pykubemark.ab.stats import REGRESSION
from pykubemark.errors import UserError
from pykubemark.files import write_atomic
from pykubemark.report import plots
from pykubemark.report.html import render


def ratio_text(value: float) -> str:
    if not math.isfinite(value):
        return "∞"
    return f"×{value:.3f}" if abs(value - 1) < 0.1 else f"×{value:.2f}"


def interval_text(metric: MetricResult) -> str:
    r = metric.result
    low = "0" if r.low <= 0 else f"{r.low:.3f}"
    high = "∞" if r.high is None else f"{r.high:.3f}"
    return f"[{low}, {high}]"


def detectable_text(metric: MetricResult) -> str:
    d = metric.result.detectable
    return "none (too few runs)" if d is None else f"{d * 100:.1f} %"


def _strip(metric: MetricResult) -> plots.Strip:
    # as the statistics count them: a value below the floor is the floor
    median = max(metric.result.baseline_median, metric.floor) or 1.0
    return plots.Strip(label=metric.title,
                       baseline=[max(v, metric.floor) / median for v in metric.baseline],
                       candidate=[max(v, metric.floor) / median for v in metric.candidate],
                       ratio=metric.result.ratio, low=metric.result.low,
                       high=math.inf if metric.result.high is None else metric.result.high,
                       verdict=metric.result.verdict)


def report_context(result: AbResult) -> dict[str, Any]:
    groups = []
    for number, group in enumerate(GROUPS):
        metrics = [m for m in result.metrics if m.group == group]
        if not metrics:
            continue
        groups.append({"name": group, "plot": Markup(plots.ab_strips(
            [_strip(m) for m in metrics], salt=f"ab-{number}"))})
    counts: dict[str, int] = {}
    for m in result.metrics:
        counts[m.result.verdict] = counts.get(m.result.verdict, 0) + 1
    runs = []
    for run in result.runs:
        report = Path(run.directory) / "report.html"
        runs.append({"r": run, "report": str(report)})
    return {"a": result, "groups": groups, "counts": counts, "runs": runs,
            "usable": {side: sum(1 for r in result.runs if r.side == side and r.usable)
                       for side in ("baseline", "candidate")},
            "ratio": ratio_text, "interval": interval_text, "detectable": detectable_text,
            "regression": REGRESSION,
            "title": f"pykubemark ab {result.scenario}: {result.baseline.described} vs "
                     f"{result.candidate.described}"}


def write_report(result: AbResult, directory: Path) -> Path:
    try:
        return write_atomic(directory / "report.html",
                            render("ab.html.j2", **report_context(result)))
    except OSError as exc:
        raise UserError(f"cannot write {directory / 'report.html'}: {exc.strerror}") from None
