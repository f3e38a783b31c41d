"""Sensitivity's pooling: runs of an earlier sitting judged beside this one's, from the
values each run keeps in the result (its directory may be gone)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))

import sensitivity

from pykubemark.ab import metrics as ab_metrics
from pykubemark.errors import UserError

P50 = ab_metrics.Metric("PodStartupLatency{Metric=pod_startup}.Perc50",
                        "pod start-up p50", "ms", "pod start-up")


TABLE = {P50.name: dataclasses.asdict(P50)}


def run(fleet: str, change: str, value: float) -> dict:
    return {"fleet": fleet, "change": change, "usable": True, "directory": "/nonexistent",
            "values": {P50.name: value}, "counts": {P50.name: 100}}


def test_a_run_s_values_come_back_from_the_result_without_its_directory() -> None:
    assert sensitivity.run_values(run("real", "baseline", 1500.0), TABLE) == \
        {P50: ab_metrics.Sample(1500.0, 100)}


def test_an_emulator_of_this_sitting_is_judged_against_the_pooled_real_nodes(
        tmp_path: Path) -> None:
    earlier = tmp_path / "sensitivity-earlier.json"
    real = [run("real", "baseline", v) for v in (1500, 1510, 1490, 1505)] + \
        [run("real", "slow", v) for v in (3000, 3050, 2980, 3020)]
    earlier.write_text(json.dumps({"params": {"nodes": 3, "pods_per_node": 10},
                                   "runs": real, "metrics": TABLE}))
    table: dict = {}
    pooled = sensitivity.pooled_runs((earlier,), 3, 10, table)
    assert table == TABLE
    assert {r["pooled_from"] for r in pooled} == {earlier.name}
    kwok = [run("kwok", "baseline", v) for v in (1000, 1010, 990, 1005)] + \
        [run("kwok", "slow", v) for v in (1010, 995, 1000, 1008)]
    judged = sensitivity.judge([*pooled, *kwok], table, ["real", "kwok"], ["slow"],
                               0.95)
    [row] = judged["moved_on_real"]
    assert row["real"] == pytest.approx(1.0, abs=0.05)  # doubled
    assert row["kwok"]["within_tolerance"] is False  # did not move


def test_a_pool_of_another_size_is_refused(tmp_path: Path) -> None:
    earlier = tmp_path / "sensitivity-earlier.json"
    earlier.write_text(json.dumps({"params": {"nodes": 5, "pods_per_node": 10}, "runs": []}))
    with pytest.raises(UserError, match="5 nodes"):
        sensitivity.pooled_runs((earlier,), 3, 10, {})
