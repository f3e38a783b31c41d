"""Token bucket QPS/burst limiting on a fake clock."""

from __future__ import annotations

import pytest

from pykubemark.kube import ratelimit
from pykubemark.kube.ratelimit import UNLIMITED, TokenBucket


@pytest.fixture
def clock(fake_clock):
    return fake_clock(ratelimit, 1000.0)


def test_burst_is_free_then_delays_grow_by_one_over_qps(clock) -> None:
    bucket = TokenBucket(qps=5, burst=10)
    assert [bucket.reserve() for _ in range(10)] == [0.0] * 10
    delays = [bucket.reserve() for _ in range(4)]
    assert delays == pytest.approx([0.2, 0.4, 0.6, 0.8])


def test_tokens_refill_with_time(clock) -> None:
    bucket = TokenBucket(qps=2, burst=3)
    for _ in range(3):
        assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(0.5)  # owes one token
    clock.now += 1.0  # two tokens come back, one of them pays the debt
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(0.5)


def test_refill_caps_at_burst(clock) -> None:
    bucket = TokenBucket(qps=10, burst=2)
    clock.now += 3600.0
    assert [bucket.reserve() for _ in range(2)] == [0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.1)


def test_waiting_out_the_delay_makes_next_one_free_again(clock) -> None:
    bucket = TokenBucket(qps=4, burst=1)
    assert bucket.reserve() == 0.0
    delay = bucket.reserve()
    assert delay == pytest.approx(0.25)
    clock.now += delay + 0.25  # sleep the delay, then one more token's worth
    assert bucket.reserve() == pytest.approx(0.0)


def test_burst_below_one_is_one(clock) -> None:
    bucket = TokenBucket(qps=1, burst=0)
    assert bucket.burst == 1
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(1.0)


def test_zero_qps_is_unlimited(clock) -> None:
    bucket = TokenBucket(qps=0, burst=1)
    assert [bucket.reserve() for _ in range(100)] == [0.0] * 100
    assert [UNLIMITED.reserve() for _ in range(100)] == [0.0] * 100
