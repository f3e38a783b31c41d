"""The output directory: clusterloader2's file names and shape, atomic rewrites."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from pykubemark.errors import UserError
from pykubemark.report.output import DataItem, Output

STARTED = dt.datetime(2026, 11, 23, 5, 14, 0, 700000, tzinfo=dt.UTC)


def test_perfdata_file_name_and_content(tmp_path):
    out = Output(tmp_path / "run", "density", STARTED)
    path = out.perfdata("PodStartupLatency_SaturationPodStartupLatency", [
        DataItem({"Perc50": 1.0, "Perc90": 2.0, "Perc99": 3.0}, "ms", {"Metric": "pod_startup"}),
        DataItem({"Perc50": 0.5}, "ms"),
    ])
    assert path.name == ("PodStartupLatency_SaturationPodStartupLatency_density_"
                         "2026-11-23T05:14:00Z.json")
    assert json.loads(path.read_text()) == {"version": "v1", "dataItems": [
        {"data": {"Perc50": 1.0, "Perc90": 2.0, "Perc99": 3.0}, "unit": "ms",
         "labels": {"Metric": "pod_startup"}},
        {"data": {"Perc50": 0.5}, "unit": "ms", "labels": {}},
    ]}


def test_rewrite_replaces_and_leaves_no_temporary_file(tmp_path):
    out = Output(tmp_path, "t", STARTED)
    out.write_json("series/X.json", {"a": 1})
    out.series("X", "1/s", {"pods": [[5.0, 2.0]]})
    assert json.loads((tmp_path / "series" / "X.json").read_text()) == {
        "unit": "1/s", "series": {"pods": [[5.0, 2.0]]}}
    assert sorted(os.listdir(tmp_path / "series")) == ["X.json"]


def test_naive_start_is_utc_and_elapsed_counts_from_it(tmp_path):
    out = Output(tmp_path, "t", dt.datetime(2026, 1, 2, 3, 4, 5))
    assert out.stamp == "2026-01-02T03:04:05Z"
    assert out.elapsed(dt.datetime(2026, 1, 2, 3, 4, 15, tzinfo=dt.UTC)) == 10.0


def test_unwritable_directory_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match=r"output directory .* cannot be written"):
        Output(blocker / "run", "t")
