"""SchedulingThroughput of a run shorter than one sampling window."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from pykubemark.kube import Client
from pykubemark.kube.config import KubeConfig
from pykubemark.measure.base import Context
from pykubemark.measure.scheduling import SchedulingThroughput
from pykubemark.report.output import Output


def throughput(tmp_path: Path) -> SchedulingThroughput:
    client = Client(KubeConfig(server="https://127.0.0.1:1", ssl_context=None))
    return SchedulingThroughput(Context(client, Output(tmp_path, "unit")), selector="a=b")


def written(tmp_path: Path) -> list[dict]:
    [path] = tmp_path.glob("SchedulingThroughput_*.json")
    return json.loads(path.read_text())["dataItems"]


@pytest.mark.parametrize(("bound", "items"), [(30, 1), (0, 0)])
def test_pods_bound_before_the_first_window_closed_count_as_one_partial_window(
        tmp_path: Path, bound: int, items: int) -> None:
    """A run whose pods were all bound within the first 5 s still has its throughput
    (one window, from the start to the end); one where none was bound has none."""
    m = throughput(tmp_path)
    m._last = (0, time.monotonic() - 2.0)
    m.scheduled = {f"uid-{i}" for i in range(bound)}
    asyncio.run(m._end())
    m.write()
    data = written(tmp_path)
    assert len(data) == items
    if items:
        assert 0 < data[0]["data"]["Max"] <= bound / 2.0


def test_a_run_with_full_windows_gets_no_partial_one(tmp_path: Path) -> None:
    m = throughput(tmp_path)
    m._last = (30, time.monotonic() - 2.0)
    m.windows = [(5.0, 6.0)]
    m.scheduled = {f"uid-{i}" for i in range(31)}
    asyncio.run(m._end())
    assert m.windows == [(5.0, 6.0)]
