"""`ab`'s analysis and report from hand-made run directories (no cluster), its plan, and
the refusal of bad sides before anything starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from run_files import make_run

from pykubemark.ab import metrics as ab_metrics
from pykubemark.ab.report import write_report
from pykubemark.ab.result import AbResult, RunRecord, read_result
from pykubemark.ab.runner import analyse, fails, plan
from pykubemark.ab.spec import resolve_side
from pykubemark.errors import UserError


def comparison(tmp_path: Path, *, candidate_scale: float, runs: int = 5,
               paired: bool = False) -> AbResult:
    result = AbResult(scenario="density", nodes=20, paired=paired, fail_on=["slo"])
    for i in range(runs):
        for side, scale in (("baseline", 1.0), ("candidate", candidate_scale)):
            directory = Path("runs") / f"{side}-{i + 1}"
            make_run(tmp_path / directory, seed=100 * i + (side == "candidate"),
                     startup_scale=scale)
            result.runs.append(RunRecord(side=side, index=i + 1, unit=i + 1,
                                         directory=str(directory), status="completed"))
    return analyse(result, tmp_path)


def test_the_same_runs_both_sides_change_nothing(tmp_path: Path) -> None:
    result = comparison(tmp_path, candidate_scale=1.0)
    assert result.metrics and result.verdict == "pass" and not result.regressions
    names = {m.name for m in result.metrics}
    assert "PodStartupLatency_SaturationPodStartupLatency{Metric=pod_startup}.Perc99" in names
    assert "ResourceUsageSummary{Name=kube-apiserver,Resource=cpu}.Perc50" in names
    # the fleet is not the control plane
    assert not any("hollow" in name for name in names)


def test_a_slower_pod_start_up_is_a_regression_that_fails(tmp_path: Path) -> None:
    result = comparison(tmp_path, candidate_scale=1.6)
    p99 = next(m for m in result.metrics
               if m.name == "PodStartupLatency_SaturationPodStartupLatency"
                            "{Metric=pod_startup}.Perc99")
    assert p99.result.verdict == "regression" and p99.slo and p99.fails
    assert p99.result.low > 1
    assert result.verdict == "regression" and p99.name in result.regressions
    # worst first
    assert result.metrics[0].result.verdict == "regression"
    # the metrics of what did not change are no change
    cpu = next(m for m in result.metrics if m.name.startswith("ResourceUsageSummary"))
    assert cpu.result.verdict == "no change"


def test_only_the_metrics_fail_on_names_fail(tmp_path: Path) -> None:
    result = comparison(tmp_path, candidate_scale=1.6)
    result.fail_on = ["ResourceUsageSummary*"]
    analyse(result, tmp_path)
    assert result.verdict == "pass" and not result.regressions
    assert any(m.result.verdict == "regression" for m in result.metrics)


def test_worst_calls_need_their_samples(tmp_path: Path) -> None:
    result = comparison(tmp_path, candidate_scale=1.0, runs=4)
    calls = [m for m in result.metrics if m.group == "worst API calls"]
    # LIST pods (12 calls) has too few for a p99 or a p90, and 5 calls are kept at most
    assert not any("Resource=pods,Scope=cluster" in m.name and m.name.endswith("Perc99")
                   for m in calls)
    assert len({m.name.rsplit(".", 1)[0] for m in calls}) <= ab_metrics.WORST_CALLS


def test_report_and_result_file(tmp_path: Path) -> None:
    result = comparison(tmp_path, candidate_scale=1.6)
    result.partial, result.status = True, "interrupted"
    page = write_report(result, tmp_path).read_text()
    assert "<svg" in page and "Partial" in page and "regression" in page
    assert 'href="runs/baseline-1/report.html"' in page
    from test_report_html import Page

    assert Page(page).external == []  # self-contained
    result.write(tmp_path)
    again = read_result(tmp_path / "ab.json")
    assert again.metrics[0].result == result.metrics[0].result
    assert json.loads((tmp_path / "ab.json").read_text())["verdict"] == "regression"


def test_paired_analysis_uses_complete_units(tmp_path: Path) -> None:
    result = comparison(tmp_path, candidate_scale=1.6, runs=6, paired=True)
    result.runs[-1].status = "failed: no summary.json"  # the 6th candidate
    analyse(result, tmp_path)
    assert all(m.result.baseline_runs == 5 and m.result.paired for m in result.metrics)


def test_interleaved_plan_alternates_and_together_pairs() -> None:
    orders = [order for _, order in plan(4, "interleaved")]
    assert orders == [("baseline", "candidate"), ("candidate", "baseline")] * 2
    assert [u for u, _ in plan(3, "together")] == [1, 2, 3]


def test_fail_on_words_and_patterns() -> None:
    slo = ab_metrics.Metric("X{Metric=pod_startup}.Perc99", "x", "ms", "pod start-up", slo=True)
    cpu = ab_metrics.Metric("ResourceUsageSummary{Name=etcd,Resource=cpu}.Perc50", "y",
                            "cores", "control plane")
    assert fails(slo, ("slo",)) and not fails(cpu, ("slo",))
    assert fails(cpu, ("any",)) and fails(cpu, ("ResourceUsage*",))


def test_a_directory_without_binaries_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"--candidate .* lacks kube-apiserver"):
        resolve_side("candidate", str(tmp_path))


def test_an_unknown_release_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import pykubemark.ab.spec as spec

    monkeypatch.setattr(spec, "served_releases", lambda: [])
    with pytest.raises(UserError, match="no such Kubernetes release"):
        resolve_side("baseline", "1.99.0")
    with pytest.raises(UserError, match="neither a release"):
        resolve_side("baseline", "latest")
    with pytest.raises(UserError, match="a flag starts with --"):
        resolve_side("baseline", None, {"apiserver": ("max-requests-inflight=1",)})


def test_the_command_refuses_a_bad_spec_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "pykubemark", "ab", "density",
                             "--candidate", str(tmp_path), "--out", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "lacks kube-apiserver" in result.stderr
    assert not out.exists()
