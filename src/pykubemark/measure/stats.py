"""Percentiles and Prometheus histogram arithmetic, as clusterloader2 and PromQL do them.

Two kinds of numbers reach a report:

- per-object values (pod startup, throughput windows, resource samples): clusterloader2
  sorts them and takes the nearest rank, ``sorted[ceil(n * p / 100) - 1]``; numpy's
  ``inverted_cdf`` method is that same definition;
- the apiserver's and etcd's own histograms: cumulative buckets scraped twice, the
  difference is what happened in between (``increase()``), and the quantile is
  interpolated linearly inside its bucket exactly as PromQL's ``histogram_quantile``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

PERCENTILES = (50, 90, 99)
INF = math.inf


def percentiles(values: Iterable[float], *, with_max: bool = False) -> dict[str, float]:
    """{"Perc50", "Perc90", "Perc99"} (and "Max") by nearest rank; {} when empty."""
    array = np.fromiter(values, dtype=float)
    if array.size == 0:
        return {}
    result = np.percentile(array, PERCENTILES, method="inverted_cdf")
    out = {f"Perc{p}": float(v) for p, v in zip(PERCENTILES, result, strict=True)}
    if with_max:
        out["Max"] = float(array.max())
    return out


@dataclass(frozen=True)
class Histogram:
    """A cumulative Prometheus histogram: (upper bound, count of observations ≤ bound).

    Buckets are sorted by bound and the last one is +Inf, whose count is the total.
    """

    buckets: tuple[tuple[float, float], ...]
    sum: float = 0.0

    @classmethod
    def from_buckets(cls, buckets: Mapping[float, float] | Iterable[tuple[float, float]],
                     sum: float = 0.0) -> Histogram:
        items = buckets.items() if isinstance(buckets, Mapping) else buckets
        ordered = tuple(sorted((float(le), float(n)) for le, n in items))
        if not ordered or ordered[-1][0] != INF:
            raise ValueError("a histogram needs a +Inf bucket")
        return cls(ordered, float(sum))

    @property
    def count(self) -> float:
        return self.buckets[-1][1]

    def bounds(self) -> tuple[float, ...]:
        return tuple(le for le, _ in self.buckets)

    def cumulative(self, le: float) -> float:
        """Observations ≤ the largest bound that is ≤ ``le`` (0 below the first bound)."""
        found = 0.0
        for bound, n in self.buckets:
            if bound > le:
                break
            found = n
        return found


def is_reset(before: Histogram, after: Histogram) -> bool:
    """A counter went down: the process restarted between the two scrapes."""
    if before.bounds() != after.bounds():
        return True
    return any(b > a for (_, b), (_, a) in zip(before.buckets, after.buckets, strict=True))


def delta(before: Histogram | None, after: Histogram) -> Histogram:
    """What was observed between two scrapes of the same series.

    A series first seen in ``after`` counts whole. A reset (restart of the process) means
    the earlier counts are gone: the later scrape alone is what the new process observed,
    which is the most that can be known (PromQL's ``increase()`` does the same per step).
    """
    if before is None or is_reset(before, after):
        return after
    buckets = tuple((le, a - b) for (le, a), (_, b) in
                    zip(after.buckets, before.buckets, strict=True))
    return Histogram(buckets, after.sum - before.sum)


def merge(histograms: Iterable[Histogram]) -> Histogram | None:
    """Sum of histograms with the same bounds (PromQL's ``sum by (...)``)."""
    total: dict[float, float] = {}
    total_sum = 0.0
    seen = False
    for hist in histograms:
        seen = True
        total_sum += hist.sum
        for le, n in hist.buckets:
            total[le] = total.get(le, 0.0) + n
    return Histogram.from_buckets(total, total_sum) if seen else None


def histogram_quantile(q: float, hist: Histogram) -> float:
    """PromQL's ``histogram_quantile`` over one histogram's buckets.

    The quantile's rank ``q * count`` falls into the first bucket whose cumulative count
    reaches it; the value is interpolated linearly between that bucket's lower and upper
    bounds (the lowest bucket starts at 0). A rank in the +Inf bucket returns the highest
    finite bound. No observations, or fewer than two buckets: NaN.
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -INF
    if q > 1:
        return INF
    buckets = _monotonic(hist.buckets)
    if len(buckets) < 2:
        return math.nan
    observations = buckets[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    last = len(buckets) - 1
    b = next((i for i in range(last) if buckets[i][1] >= rank), last)
    if b == last:
        return buckets[-2][0]
    if b == 0 and buckets[0][0] <= 0:
        return buckets[0][0]
    start, end, count = 0.0, buckets[b][0], buckets[b][1]
    if b > 0:
        start = buckets[b - 1][0]
        count -= buckets[b - 1][1]
        rank -= buckets[b - 1][1]
    return start + (end - start) * (rank / count)


def _monotonic(buckets: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """PromQL's ensureMonotonic: a bucket never counts less than the one below it."""
    out, high = [], -INF
    for le, n in buckets:
        high = max(high, n)
        out.append((le, high))
    return out


def count_above(hist: Histogram, threshold: float) -> float:
    """Observations above ``threshold`` (clusterloader2's SlowCount: count - bucket(le)).

    Exact when ``threshold`` is a bucket bound; otherwise the observations of the bucket
    that straddles it count as slow (the histogram cannot say more).
    """
    return hist.count - hist.cumulative(threshold)


def quantiles_ms(hist: Histogram) -> dict[str, float]:
    """Perc50/90/99 in milliseconds of a histogram in seconds."""
    return {f"Perc{p}": histogram_quantile(p / 100, hist) * 1000.0 for p in PERCENTILES}
