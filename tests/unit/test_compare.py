"""Pairing and judging two runs' perfdata, from hand-made run directories."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest
from helpers import run_cli
from run_files import clusterloader2_results, make_run, perfdata_name, write

from pykubemark.errors import UserError
from pykubemark.report.compare import (
    IMPROVEMENT,
    OK,
    ONLY_BASELINE,
    ONLY_CANDIDATE,
    REGRESSION,
    compare_runs,
    judge,
    load_run,
    load_tolerances,
)

SATURATION_P99 = "PodStartupLatency_SaturationPodStartupLatency{Metric=pod_startup}.Perc99"


def scale_data(directory: Path, summary: str, factor: float, key: str | None = None,
               metric: str | None = None) -> None:
    """Multiply values of one perfdata file in place (key/Metric label: only those)."""
    path = directory / perfdata_name(summary)
    loaded = orjson.loads(path.read_bytes())
    for item in loaded["dataItems"]:
        if metric is not None and item["labels"].get("Metric") != metric:
            continue
        for k in item["data"]:
            if key is None or k == key:
                item["data"][k] *= factor
    write(path, loaded)


def verdicts(comparison) -> dict[str, str]:
    return {row.name: row.verdict for row in comparison.rows}


def test_run_against_itself_has_no_regression(tmp_path: Path) -> None:
    run = make_run(tmp_path / "a")
    comparison = compare_runs(load_run(run), load_run(run))
    assert comparison.rows
    assert {row.verdict for row in comparison.rows} == {OK}
    assert all(row.change_pct == 0.0 for row in comparison.rows)
    names = verdicts(comparison)
    assert SATURATION_P99 in names
    # Count/SlowCount are not part of a metric's identity
    assert "APIResponsivenessPrometheus{Resource=pods,Scope=cluster,Subresource=,Verb=LIST}" \
        ".Perc99" in names
    assert not any("Count=" in name for name in names)


def test_doubled_pod_startup_p99_is_a_regression(tmp_path: Path) -> None:
    base = make_run(tmp_path / "base")
    cand = shutil.copytree(base, tmp_path / "cand")
    scale_data(cand, "PodStartupLatency_SaturationPodStartupLatency", 2.0, key="Perc99",
               metric="pod_startup")
    comparison = compare_runs(load_run(base), load_run(cand))
    assert [row.name for row in comparison.regressions] == [SATURATION_P99]
    row = comparison.regressions[0]
    assert row.change_pct == pytest.approx(100.0)
    assert not row.higher_is_better
    assert comparison.rows[0] is row  # regressions come first


def test_halved_throughput_is_a_regression_and_doubled_an_improvement(tmp_path: Path) -> None:
    base = make_run(tmp_path / "base")
    slower = make_run(tmp_path / "slow", throughput_scale=0.5)
    faster = make_run(tmp_path / "fast", throughput_scale=2.0)
    down = compare_runs(load_run(base), load_run(slower))
    assert {row.name for row in down.regressions} == {
        f"SchedulingThroughput.{key}" for key in ("Perc50", "Perc90", "Perc99", "Max")}
    assert all(row.higher_is_better and row.change_pct == pytest.approx(-50.0)
               for row in down.regressions)
    up = compare_runs(load_run(base), load_run(faster))
    assert not up.regressions
    assert verdicts(up)["SchedulingThroughput.Max"] == IMPROVEMENT


def test_faster_pod_startup_is_an_improvement(tmp_path: Path) -> None:
    comparison = compare_runs(load_run(make_run(tmp_path / "a")),
                              load_run(make_run(tmp_path / "b", startup_scale=0.5)))
    assert not comparison.regressions
    assert verdicts(comparison)[SATURATION_P99] == IMPROVEMENT


def test_metrics_present_in_one_run_only(tmp_path: Path) -> None:
    base = make_run(tmp_path / "base")
    cand = make_run(tmp_path / "cand", extra_perfdata=False)
    comparison = compare_runs(load_run(base), load_run(cand))
    assert verdicts(comparison)["EtcdMetrics{Metric=dbSize}.Max"] == ONLY_BASELINE
    reverse = compare_runs(load_run(cand), load_run(base))
    assert verdicts(reverse)["EtcdMetrics{Metric=dbSize}.Max"] == ONLY_CANDIDATE
    assert not comparison.regressions and not reverse.regressions


def test_percentiles_of_too_few_calls_are_not_judged(tmp_path: Path) -> None:
    base = make_run(tmp_path / "base")  # LIST pods: 12 calls; PUT leases: 2400 calls
    cand = shutil.copytree(base, tmp_path / "cand")
    path = cand / perfdata_name("APIResponsivenessPrometheus")
    loaded = orjson.loads(path.read_bytes())
    for item in loaded["dataItems"]:
        item["data"] = {k: v * 3 for k, v in item["data"].items()}
    write(path, loaded)
    rows = {row.name: row for row in compare_runs(load_run(base), load_run(cand)).rows}
    leases = "APIResponsivenessPrometheus{Resource=leases,Scope=resource,Subresource=,Verb=PUT}"
    lists = "APIResponsivenessPrometheus{Resource=pods,Scope=cluster,Subresource=,Verb=LIST}"
    assert rows[f"{leases}.Perc99"].verdict == REGRESSION  # 6 ms → 18 ms, 2400 calls
    assert rows[f"{lists}.Perc99"].verdict == OK  # 900 ms → 2.7 s, but of 12 calls
    assert rows[f"{lists}.Perc99"].note == "only 12 samples"
    assert rows[f"{lists}.Perc90"].verdict == REGRESSION  # 12 calls are enough for a p90


def test_tiny_absolute_changes_are_not_regressions() -> None:
    assert judge(2.0, 3.0, 10.0, 10.0, False) == (pytest.approx(50.0), OK)  # 2 ms → 3 ms
    assert judge(2.0, 30.0, 10.0, 10.0, False)[1] == REGRESSION
    assert judge(100.0, 105.0, 10.0, 0.0, False)[1] == OK  # within tolerance
    assert judge(0.0, 50.0, 10.0, 10.0, False) == (None, REGRESSION)


def test_tolerance_overrides_from_file(tmp_path: Path) -> None:
    base = make_run(tmp_path / "base")
    cand = shutil.copytree(base, tmp_path / "cand")
    scale_data(cand, "PodStartupLatency_SaturationPodStartupLatency", 1.5, metric="pod_startup")
    assert compare_runs(load_run(base), load_run(cand)).regressions
    overrides_file = tmp_path / "tol.yaml"
    overrides_file.write_text("'PodStartupLatency_*': 20\n"
                              "'PodStartupLatency_Saturation*{Metric=pod_startup}.Perc*': 60\n")
    overrides = load_tolerances(overrides_file)
    comparison = compare_runs(load_run(base), load_run(cand), overrides=overrides)
    assert not comparison.regressions
    row = next(r for r in comparison.rows if r.name == SATURATION_P99)
    assert row.tolerance == 60.0  # the longer, more specific pattern wins
    latency = next(r for r in comparison.rows if r.name.startswith("PodStartupLatency_Latency"))
    assert latency.tolerance == 20.0
    assert load_tolerances(overrides_file)["PodStartupLatency_*"].floor is None
    # a floor as large as the change also keeps it from counting
    floors = tmp_path / "floors.yaml"
    floors.write_text("'*{Metric=pod_startup}.*': {floor: 5000}\n")
    assert not compare_runs(load_run(base), load_run(cand),
                            overrides=load_tolerances(floors)).regressions
    # patterns that match nothing leave the default tolerance
    assert compare_runs(load_run(base), load_run(cand), overrides={"Etcd*": 80}).regressions


def test_clusterloader2_result_files_pair_across_times(tmp_path: Path) -> None:
    base = clusterloader2_results(tmp_path / "a", started="2021-01-12T03:43:21Z")
    cand = clusterloader2_results(tmp_path / "b", started="2021-02-01T10:00:00Z", p99_scale=2)
    comparison = compare_runs(load_run(base), load_run(cand))
    assert [r.name for r in comparison.regressions] == [
        "PodStartupLatency_PodStartupLatency{Metric=pod_startup}.Perc99"]
    assert any(r.name.startswith("APIResponsivenessPrometheus_simple{") for r in comparison.rows)
    # a list of files, or a glob, is a run too
    files = sorted(base.glob("*_load_*.json"))
    assert load_run(files).metrics == load_run(base).metrics
    assert load_run(str(base / "PodStartupLatency_*.json")).metrics.keys() < \
        load_run(base).metrics.keys()


@pytest.mark.parametrize("content, message", [
    ("- a\n- b\n", "no mapping"),
    ("'*': fast\n", "must be a number"),
    ("'*': {tolerance: -1}\n", "must be a number"),
    ("'*': {toleranse: 5}\n", "unknown key 'toleranse'"),
    ("'*': [\n", "not valid YAML"),
])
def test_bad_tolerances_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tol.yaml"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_tolerances(path)


def test_bad_runs(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.json").write_text("{}")
    with pytest.raises(UserError, match="no perfdata"):
        load_run(tmp_path / "empty")
    with pytest.raises(UserError, match="no file matches"):
        load_run(str(tmp_path / "nothing*.json"))


def test_cli_exit_codes(tmp_path: Path) -> None:
    base = make_run(tmp_path / "base")
    same = run_cli("compare", str(base), str(base), check=False)
    assert same.returncode == 0, same.stderr
    assert "regression" not in same.stdout.replace("0 regression", "")
    cand = shutil.copytree(base, tmp_path / "cand")
    scale_data(cand, "PodStartupLatency_SaturationPodStartupLatency", 2.0, key="Perc99")
    page = tmp_path / "cmp.html"
    worse = run_cli("compare", str(base), str(cand), "--html", str(page), check=False)
    assert worse.returncode == 1, worse.stderr
    assert "regression" in worse.stdout
    assert "<svg" in page.read_text()
    for args in (["compare", str(base), str(tmp_path / "nope")],
                 ["compare", str(base), str(base), "--tolerances", str(tmp_path / "nope.yaml")],
                 ["report", str(tmp_path / "nope")]):
        bad = run_cli(*args, check=False)
        assert bad.returncode == 2, (args, bad.stderr)
        lines = [line for line in bad.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("pykubemark: "), bad.stderr
