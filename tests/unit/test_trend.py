"""`trend`: a shift in a synthetic series is found at its run, a flat series has none."""

from __future__ import annotations

import json
import random
from pathlib import Path

from run_files import make_run

from pykubemark.ab.trend import detect, trend, write_trend_html


def series(n: int, shift_at: int | None, factor: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [100 * (factor if shift_at is not None and i >= shift_at else 1.0)
            * rng.lognormvariate(0, 0.05) for i in range(n)]


def test_a_shift_is_found_at_the_first_run_after_it() -> None:
    for seed in range(5):
        assert detect(series(40, 25, 1.3, seed)) == [25]


def test_a_flat_series_has_no_shift() -> None:
    assert all(detect(series(40, None, 1.0, seed)) == [] for seed in range(10))


def test_a_shift_within_the_floor_is_dropped() -> None:
    tiny = [v / 100 for v in series(40, 25, 1.5, 1)]  # 1 ms → 1.5 ms
    assert detect(tiny) == [25]
    assert detect(tiny, floor=10.0) == []


def test_too_short_a_history_has_no_shift() -> None:
    assert detect([1.0, 2.0, 3.0, 4.0, 5.0]) == []


def test_trend_over_run_directories(tmp_path: Path) -> None:
    for i in range(12):
        directory = make_run(tmp_path / "history" / f"run-{i:02d}", seed=i,
                             startup_scale=1.0 if i < 7 else 2.0)
        summary = json.loads((directory / "summary.json").read_text())
        summary["started"] = f"2026-11-{10 + i:02d}T05:14:00Z"
        (directory / "summary.json").write_text(json.dumps(summary))
    result = trend([tmp_path / "history"])
    assert len(result.runs) == 12
    shifted = {m.name: m.shifts for m in result.metrics if m.shifts}
    p50 = "PodStartupLatency_SaturationPodStartupLatency{Metric=run_to_watch}.Perc50"
    assert [s.run for s in shifted[p50]] == ["run-07"]
    assert shifted[p50][0].ratio > 1.5
    # the control plane's figures are the same in every run
    assert not any(name.startswith("ResourceUsageSummary") for name in shifted)
    page = write_trend_html(result, tmp_path / "trend.html").read_text()
    assert "run-07" in page and "<svg" in page
