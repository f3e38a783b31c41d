"""The statistics of `ab`: the candidate/baseline ratio of one metric over repeated runs,
its confidence interval, the verdict and the smallest change the runs could detect.

Rank-based, because runs on a shared machine have outliers and a handful of runs is no
sample to assume a distribution from. On the log scale (a ratio is a shift there):

- independent runs (`shift_interval`): the Hodges–Lehmann estimate (the median of every
  candidate − baseline difference) and Moses' interval, the shifts that scipy's exact
  Mann–Whitney test does not reject at the stated confidence;
- paired runs (`paired_interval`): the median of the Walsh averages of the paired
  differences and the shifts scipy's exact Wilcoxon signed-rank test does not reject.

Both intervals are found by inverting the test: the statistic is constant between two
consecutive candidate shifts (pairwise differences, or Walsh averages), so the test is
asked once per gap, at its midpoint, and the interval runs from the first accepted gap's
lower edge to the last one's upper edge. With too few runs no shift is ever rejected
(Mann–Whitney needs 4 runs a side at 95 %, Wilcoxon 6 pairs): the interval is then
unbounded and the verdict "no change", with nothing detectable.

A value below its unit's floor (`compare.ABSOLUTE_FLOORS`: 10 ms, 0.05 cores, 10 MiB, 1
per second) is counted as the floor, so that zeros have a logarithm and the ratio of two
tiny values is not news; and a change is a regression or an improvement only when the
interval excludes 1 *and* the medians differ by more than that floor, as in `compare`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Final

import msgspec
import numpy as np
from scipy import stats

REGRESSION: Final = "regression"
IMPROVEMENT: Final = "improvement"
NO_CHANGE: Final = "no change"
#: Worst first: the order of the report and of the terminal table.
SEVERITY: Final = {REGRESSION: 0, IMPROVEMENT: 1, NO_CHANGE: 2}
DEFAULT_CONFIDENCE: Final = 0.95


class Interval(msgspec.Struct, frozen=True):
    """A shift on some scale: the estimate and its interval (±inf: not bounded)."""

    estimate: float
    low: float
    high: float


def _gaps(points: np.ndarray) -> list[tuple[float, float, float]]:
    """(lower edge, probe, upper edge) of every non-empty gap around sorted ``points``."""
    unique = np.unique(points)
    out = [(-math.inf, float(unique[0]) - 1.0, float(unique[0]))]
    out += [(float(a), (float(a) + float(b)) / 2, float(b))
            for a, b in itertools.pairwise(unique)]
    out.append((float(unique[-1]), float(unique[-1]) + 1.0, math.inf))
    return out


def _invert(points: np.ndarray, pvalue: Callable[[float], float], alpha: float) -> Interval:
    accepted = [(low, high) for low, probe, high in _gaps(points) if pvalue(probe) > alpha]
    estimate = float(np.median(points))
    if not accepted:  # cannot happen for a test whose p-value is 1 at the estimate
        return Interval(estimate, estimate, estimate)
    return Interval(estimate, accepted[0][0], accepted[-1][1])


def shift_interval(baseline: Sequence[float], candidate: Sequence[float],
                   confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Hodges–Lehmann shift candidate − baseline of two independent samples and Moses'
    interval: every shift d for which the exact Mann–Whitney test of (candidate − d)
    against baseline has a two-sided p-value above 1 − confidence."""
    x = np.asarray(baseline, dtype=float)
    y = np.asarray(candidate, dtype=float)
    if not len(x) or not len(y):
        raise ValueError("both samples need a value")
    differences = (y[:, None] - x[None, :]).ravel()
    method = "exact" if len(x) * len(y) <= 2500 else "asymptotic"

    def pvalue(shift: float) -> float:
        return float(stats.mannwhitneyu(y - shift, x, alternative="two-sided",
                                        method=method).pvalue)

    return _invert(differences, pvalue, 1 - confidence)


def paired_interval(baseline: Sequence[float], candidate: Sequence[float],
                    confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """The shift of paired samples (candidate[i] with baseline[i]): the median of the
    Walsh averages of the differences, and every shift the exact Wilcoxon signed-rank
    test does not reject (two-sided p above 1 − confidence)."""
    x = np.asarray(baseline, dtype=float)
    y = np.asarray(candidate, dtype=float)
    if len(x) != len(y) or not len(x):
        raise ValueError("paired samples need the same, non-zero, length")
    d = y - x
    i, j = np.triu_indices(len(d))
    walsh = (d[i] + d[j]) / 2
    method = "exact" if len(d) <= 50 else "approx"

    def pvalue(shift: float) -> float:
        return float(stats.wilcoxon(d - shift, alternative="two-sided",
                                    method=method).pvalue)

    return _invert(walsh, pvalue, 1 - confidence)


class Verdict(msgspec.Struct, frozen=True):
    """One metric's comparison: the ratio candidate/baseline with its interval, the
    verdict and the smallest change these runs could have flagged."""

    ratio: float
    low: float                    # of the ratio; 0 when not bounded below
    high: float | None            # None when not bounded above (JSON has no infinity)
    verdict: str                  # REGRESSION | IMPROVEMENT | NO_CHANGE
    baseline_median: float
    candidate_median: float
    #: The smallest change (a fraction: 0.12 = 12 %) in the worse direction that these
    #: runs' spread would have flagged; None when no change could have been (too few runs).
    detectable: float | None
    confidence: float
    paired: bool
    baseline_runs: int
    candidate_runs: int

    @property
    def change(self) -> float:
        """The estimated change, a fraction of the baseline (+0.10: 10 % higher)."""
        return self.ratio - 1.0


def _log(values: Sequence[float], floor: float) -> np.ndarray:
    smallest = floor if floor > 0 else 1e-9
    return np.log(np.maximum(np.asarray(values, dtype=float), smallest))


def compare_values(baseline: Sequence[float], candidate: Sequence[float], *,
                   higher_is_better: bool = False, floor: float = 0.0,
                   confidence: float = DEFAULT_CONFIDENCE, paired: bool = False) -> Verdict:
    """Judge one metric over the runs of both sides (see the module's docstring)."""
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), not {confidence}")
    base_log, cand_log = _log(baseline, floor), _log(candidate, floor)
    interval = (paired_interval if paired else shift_interval)(base_log, cand_log, confidence)
    base_median = float(np.median(baseline))
    cand_median = float(np.median(candidate))
    beyond_floor = abs(cand_median - base_median) > floor
    verdict = NO_CHANGE
    if beyond_floor and (interval.low > 0 or interval.high < 0):
        worse = (interval.high < 0) if higher_is_better else (interval.low > 0)
        verdict = REGRESSION if worse else IMPROVEMENT
    # a true change of log-size a is flagged when the estimate minus the interval's
    # half-width on the worse side stays beyond 0: a = that half-width
    half = (interval.high - interval.estimate) if higher_is_better \
        else (interval.estimate - interval.low)
    detectable: float | None = None
    if math.isfinite(half):
        ratio = math.exp(-half) if higher_is_better else math.exp(half)
        detectable = abs(ratio - 1.0)
        if base_median > 0:
            detectable = max(detectable, floor / base_median)
    return Verdict(
        ratio=math.exp(interval.estimate), low=math.exp(interval.low),
        high=math.exp(interval.high) if math.isfinite(interval.high) else None,
        verdict=verdict, baseline_median=base_median,
        candidate_median=cand_median, detectable=detectable, confidence=confidence,
        paired=paired, baseline_runs=len(baseline), candidate_runs=len(candidate))
