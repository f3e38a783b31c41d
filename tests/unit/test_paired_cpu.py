"""The paired CPU benchmark's arithmetic: a fleet's cost from the windows of a round, and
hollow/real over rounds with an interval that pairs them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy
import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))

import paired_cpu


def test_a_ratio_its_interval_holds_and_one_does_not() -> None:
    rng = numpy.random.default_rng(1)
    drift = rng.uniform(0.5, 2.0, 12)  # the machine's speed, shared within a round
    real = list(100 * drift + rng.normal(0, 5, 12))
    hollow = list(150 * drift + rng.normal(0, 5, 12))
    r = paired_cpu.ratio_interval(real, hollow, 0.95)
    assert r["low"] < 1.5 < r["high"]
    assert r["low"] > 1.2  # the drift, a factor of 4, cancels: the rounds are paired


def test_too_few_rounds_give_a_ratio_without_interval() -> None:
    assert paired_cpu.ratio_interval([1.0, 2.0], [2.0, 4.0], 0.95) == \
        {"ratio": 2.0, "low": None, "high": None}


def test_summary_takes_each_fleet_from_its_windows() -> None:
    idle = {"real_ms_per_node_minute": 10.0, "hollow_ms_per_node_minute": 12.0}
    pods = {"real": {"ms_per_pod": 50.0}, "hollow": {"ms_per_pod": 45.0}}
    rounds = [{"idle": idle, "pods": pods}, {"idle": idle}]
    figures = paired_cpu.summarize(rounds, 3, 0.95)["figures"]
    idle_row = figures["idle: control-plane CPU ms per node-minute"]
    assert idle_row["rounds"] == 2 and idle_row["hollow/real"]["ratio"] == pytest.approx(1.2)
    pod_row = figures["pod cycle: control-plane CPU ms per pod"]
    assert pod_row["rounds"] == 1 and pod_row["hollow/real"]["ratio"] == pytest.approx(0.9)
