"""Percentile and histogram maths against values worked out by hand.

Nearest rank (clusterloader2): sorted[ceil(n * p / 100) - 1].
histogram_quantile (PromQL): rank = q * count, find the first bucket whose cumulative
count reaches the rank, interpolate linearly between that bucket's bounds.
"""

from __future__ import annotations

import math

import pytest

from pykubemark.measure.stats import (
    Histogram,
    count_above,
    delta,
    histogram_quantile,
    is_reset,
    merge,
    percentiles,
    quantiles_ms,
)

INF = math.inf


def hist(buckets: dict[float, float], total: float = 0.0) -> Histogram:
    return Histogram.from_buckets(buckets, total)


# -- nearest rank --------------------------------------------------------------------
def test_percentiles_of_ten_values_unsorted():
    # n=10: p50 -> ceil(5)=5th value, p90 -> 9th, p99 -> ceil(9.9)=10th.
    got = percentiles([7, 3, 10, 1, 9, 2, 8, 5, 4, 6])
    assert got == {"Perc50": 5.0, "Perc90": 9.0, "Perc99": 10.0}


def test_percentiles_of_three_values_round_up():
    # n=3: p50 -> ceil(1.5)=2nd, p90 -> ceil(2.7)=3rd, p99 -> ceil(2.97)=3rd.
    assert percentiles([30.0, 10.0, 20.0]) == {"Perc50": 20.0, "Perc90": 30.0, "Perc99": 30.0}


def test_percentiles_of_two_hundred_values_exact_ranks():
    # n=200: p50 -> 100th, p90 -> 180th, p99 -> 198th (no interpolation, no rounding up).
    got = percentiles(range(200, 0, -1))
    assert got == {"Perc50": 100.0, "Perc90": 180.0, "Perc99": 198.0}


def test_percentiles_with_max_and_single_value():
    assert percentiles([4.5], with_max=True) == {
        "Perc50": 4.5, "Perc90": 4.5, "Perc99": 4.5, "Max": 4.5}
    assert percentiles([1.0, 2.0, 0.5], with_max=True)["Max"] == 2.0


def test_percentiles_of_nothing_is_empty():
    assert percentiles([]) == {}


# -- histogram_quantile ----------------------------------------------------------------
# 10 observations <= 0.1 s, 20 in (0.1, 0.5], 10 in (0.5, 1], none above: 40 in all.
H = {0.1: 10, 0.5: 30, 1.0: 40, INF: 40}


@pytest.mark.parametrize(("q", "expected"), [
    (0.5, 0.3),     # rank 20 -> (0.1, 0.5]: 0.1 + 0.4 * (20-10)/20
    (0.9, 0.8),     # rank 36 -> (0.5, 1]:   0.5 + 0.5 * (36-30)/10
    (0.99, 0.98),   # rank 39.6 ->           0.5 + 0.5 * 9.6/10
    (0.25, 0.1),    # rank 10 -> first bucket reached exactly: its upper bound
    (0.1, 0.04),    # rank 4 -> lowest bucket starts at 0: 0.1 * 4/10
])
def test_histogram_quantile_interpolates_inside_the_bucket(q, expected):
    assert histogram_quantile(q, hist(H)) == pytest.approx(expected)


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound():
    # 10 observations above 1 s: rank 18 of 20 is beyond every finite bucket.
    assert histogram_quantile(0.9, hist({0.1: 10, 1.0: 10, INF: 20})) == 1.0


def test_quantile_special_cases():
    assert math.isnan(histogram_quantile(0.5, hist({1.0: 0, INF: 0})))
    assert math.isnan(histogram_quantile(0.5, hist({INF: 5})))
    assert histogram_quantile(1.5, hist(H)) == INF
    assert histogram_quantile(-0.1, hist(H)) == -INF


def test_quantile_forces_monotonic_buckets_like_promql():
    # The 0.5 bucket (8) below the 0.1 bucket (10) is read as 10. Rank 15 then falls in
    # (0.5, 1] with 10 observations, 5 into it: 0.5 + 0.5 * 5/10 = 0.75
    # (0.7917 if the dip were taken at face value).
    got = histogram_quantile(0.75, hist({0.1: 10, 0.5: 8, 1.0: 20, INF: 20}))
    assert got == pytest.approx(0.75)


def test_quantiles_ms_are_milliseconds():
    got = quantiles_ms(hist(H))
    assert got == pytest.approx({"Perc50": 300.0, "Perc90": 800.0, "Perc99": 980.0})


def test_histogram_needs_an_inf_bucket():
    with pytest.raises(ValueError):
        Histogram.from_buckets({0.1: 1, 1.0: 2})


# -- deltas between two scrapes ------------------------------------------------------------
def test_delta_subtracts_bucket_by_bucket():
    before = hist({0.1: 5, 1.0: 8, INF: 9}, 2.0)
    after = hist({0.1: 15, 1.0: 28, INF: 30}, 6.5)
    got = delta(before, after)
    assert got.buckets == ((0.1, 10.0), (1.0, 20.0), (INF, 21.0))
    assert got.sum == pytest.approx(4.5)
    assert got.count == 21.0


def test_delta_after_a_restart_is_the_later_scrape_alone():
    before = hist({0.1: 50, 1.0: 80, INF: 90}, 30.0)
    after = hist({0.1: 3, 1.0: 4, INF: 4}, 0.7)
    assert is_reset(before, after)
    assert delta(before, after) == after


def test_a_single_bucket_going_down_is_a_reset():
    before = hist({0.1: 5, 1.0: 8, INF: 9})
    after = hist({0.1: 4, 1.0: 20, INF: 30})
    assert is_reset(before, after)
    assert not is_reset(before, hist({0.1: 5, 1.0: 8, INF: 9}))


def test_delta_of_a_new_series_is_the_series():
    after = hist({1.0: 2, INF: 3}, 1.0)
    assert delta(None, after) == after


def test_quantile_of_a_delta_ignores_what_came_before():
    # Before: 100 slow calls (all in (1, 5]). Window: 10 calls, all in (0, 0.1].
    before = hist({0.1: 0, 1.0: 0, 5.0: 100, INF: 100})
    after = hist({0.1: 10, 1.0: 10, 5.0: 110, INF: 110})
    window = delta(before, after)
    # rank 9.9 of 10 in (0, 0.1]: 0.1 * 9.9/10
    assert histogram_quantile(0.99, window) == pytest.approx(0.099)


# -- sums and slow counts --------------------------------------------------------------------
def test_merge_sums_buckets_and_sums():
    a = hist({0.1: 1, 1.0: 3, INF: 4}, 1.5)
    b = hist({0.1: 2, 1.0: 2, INF: 6}, 9.0)
    got = merge([a, b])
    assert got is not None
    assert got.buckets == ((0.1, 3.0), (1.0, 5.0), (INF, 10.0))
    assert got.sum == 10.5
    assert merge([]) is None


def test_count_above_a_bucket_bound_is_exact():
    window = hist({0.1: 10, 1.0: 20, INF: 21})
    assert count_above(window, 1.0) == 1     # 21 - 20
    assert count_above(window, 0.1) == 11    # 21 - 10


def test_count_above_between_bounds_counts_the_straddling_bucket_as_slow():
    window = hist({0.1: 10, 1.0: 20, INF: 21})
    assert count_above(window, 0.5) == 11    # (0.1, 1] cannot be split: 21 - 10
    assert count_above(window, 0.05) == 21   # below the first bound: everything
