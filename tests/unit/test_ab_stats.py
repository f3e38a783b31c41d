"""The statistics of `ab` against cases computed by hand (and the textbook's tables)."""

from __future__ import annotations

import math
import random

import pytest

from pykubemark.ab.stats import (
    IMPROVEMENT,
    NO_CHANGE,
    REGRESSION,
    compare_values,
    paired_interval,
    shift_interval,
)


def test_moses_interval_of_five_against_five() -> None:
    # differences y - x of {6..10} - {1..5}: 1..9 with counts 1,2,3,4,5,4,3,2,1; the exact
    # two-sided 5 % critical U of 5 and 5 is 2, so the interval is [d(3), d(23)] = [2, 8]
    # and the Hodges-Lehmann estimate the median difference, 5
    interval = shift_interval([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert (interval.estimate, interval.low, interval.high) == (5.0, 2.0, 8.0)


def test_moses_interval_matches_the_critical_value_table() -> None:
    # n = m = 8: the two-sided 5 % critical U is 13, so the interval is [d(14), d(51)]
    rng = random.Random(7)
    x = [rng.uniform(0, 10) for _ in range(8)]
    y = [rng.uniform(0, 10) + 3 for _ in range(8)]
    d = sorted(b - a for b in y for a in x)
    interval = shift_interval(x, y)
    assert interval.low == pytest.approx(d[13])
    assert interval.high == pytest.approx(d[50])
    assert interval.estimate == pytest.approx((d[31] + d[32]) / 2)


def test_three_runs_a_side_bound_nothing() -> None:
    # 2/20 = 10 % is the smallest two-sided p of 3 against 3: no shift is ever rejected
    interval = shift_interval([1, 2, 3], [6, 7, 8])
    assert interval.low == -math.inf and interval.high == math.inf


def test_wilcoxon_interval_of_six_pairs() -> None:
    # differences 1..6: 21 Walsh averages from 1 to 6, median 3.5; with 6 pairs the exact
    # two-sided p of T=0 is 2/64 and of T=1 is 4/64, so the 95 % interval is [W(1), W(21)]
    interval = paired_interval([0] * 6, [1, 2, 3, 4, 5, 6])
    assert (interval.estimate, interval.low, interval.high) == (3.5, 1.0, 6.0)


def test_wilcoxon_needs_six_pairs() -> None:
    interval = paired_interval([0] * 5, [1, 2, 3, 4, 5])
    assert interval.low == -math.inf and interval.high == math.inf


def test_ratio_interval_and_detectable_change() -> None:
    # on the log scale the samples are 1..5 and 6..10: ratio e^5 in [e^2, e^8], and the
    # smallest regression these runs flag is a log-shift of 5 - 2 = 3
    base = [math.exp(v) for v in (1, 2, 3, 4, 5)]
    cand = [math.exp(v) for v in (6, 7, 8, 9, 10)]
    verdict = compare_values(base, cand)
    assert verdict.ratio == pytest.approx(math.exp(5))
    assert verdict.low == pytest.approx(math.exp(2))
    assert verdict.high == pytest.approx(math.exp(8))
    assert verdict.verdict == REGRESSION
    assert verdict.detectable == pytest.approx(math.exp(3) - 1)


def test_no_change_when_the_interval_holds_one() -> None:
    verdict = compare_values([100, 110, 105, 98, 102], [101, 108, 104, 99, 103])
    assert verdict.verdict == NO_CHANGE
    assert verdict.low < 1 < verdict.high


def test_higher_is_better_turns_a_drop_into_a_regression() -> None:
    verdict = compare_values([20, 21, 22, 20.5, 21.5], [10, 11, 10.5, 9.5, 10.2],
                             higher_is_better=True, floor=1.0)
    assert verdict.verdict == REGRESSION
    rise = compare_values([20, 21, 22, 20.5, 21.5], [30, 31, 32, 30.5, 31.5],
                          higher_is_better=True, floor=1.0)
    assert rise.verdict == IMPROVEMENT


def test_a_change_within_the_floor_is_no_change() -> None:
    # 2.6 times slower, but by under 10 ms: noise on tiny values, as in `compare`
    verdict = compare_values([1.0, 1.1, 1.2, 1.3, 1.15], [3.0, 3.1, 3.2, 3.3, 3.15], floor=10)
    assert verdict.verdict == NO_CHANGE
    assert verdict.ratio == pytest.approx(1.0)


def test_too_few_runs_detect_nothing() -> None:
    verdict = compare_values([100, 101, 99], [200, 201, 199])
    assert verdict.verdict == NO_CHANGE
    assert verdict.detectable is None


def test_a_a_false_alarms_stay_near_the_stated_rate() -> None:
    # identical distributions, 6 runs a side: a two-sided 95 % interval excludes 1 in at
    # most 5 % of comparisons (less: the exact test is conservative)
    rng = random.Random(3)
    alarms = 0
    for _ in range(200):
        base = [rng.lognormvariate(0, 0.1) * 100 for _ in range(6)]
        cand = [rng.lognormvariate(0, 0.1) * 100 for _ in range(6)]
        alarms += compare_values(base, cand).verdict != NO_CHANGE
    assert alarms / 200 <= 0.06
