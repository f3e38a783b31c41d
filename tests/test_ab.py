"""`pykubemark ab` end to end at a tiny size: an A/A comparison says no change; the CI
recipe (scripts/ab-pr.sh) on two binary directories, the candidate's apiserver a wrapper
that throttles it hard, says regression and exits 1; Ctrl-C keeps what was measured;
an unknown release is refused before anything starts. Each starts its own clusters
(abtest-baseline, abtest-candidate), one at a time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from helpers import CLI, run_cli

REPO = Path(__file__).resolve().parent.parent
TINY = ("--nodes", "3", "--pods-per-node", "5")
THROTTLE = "--max-requests-inflight=1 --max-mutating-requests-inflight=1"


def no_cluster_left(name: str = "abtest") -> None:
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        assert f"/clusters/{name}-" not in line, f"left running: {line[:200]}"


def test_a_a_says_no_change(binaries, tmp_path: Path) -> None:
    out = tmp_path / "aa"
    # The whole path, both clusters at once: runs, metrics, verdicts, report. Three
    # pairs can never be a change at 95 % (Wilcoxon needs 6): that no SLO metric is
    # called one checks the path, not the statistics (tests/unit/test_ab_stats.py
    # does; the throttled apiserver below is a change that must be found).
    result = run_cli("ab", "density", *TINY, "--repeat", "3", "--design", "together",
                     "--name", "abtest", "--out", str(out), check=False, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ab = json.loads((out / "ab.json").read_text())
    assert ab["status"] == "completed" and not ab["partial"] and ab["verdict"] == "pass"
    assert sum(r["status"] == "completed" for r in ab["runs"]) == 6
    assert ab["paired"]
    slo = [m for m in ab["metrics"] if m["slo"]]
    assert slo and all(m["result"]["verdict"] == "no change" for m in slo)
    page = (out / "report.html").read_text()
    assert "runs/01-baseline-1/report.html" in page
    assert (out / "runs" / "01-baseline-1" / "report.html").is_file()
    no_cluster_left()


def wrapper_dirs(binaries, tmp_path: Path) -> tuple[Path, Path]:
    """The baseline: links to the release's binaries; the candidate: the same, but its
    kube-apiserver a script that runs the real one with API Priority and Fairness cut to
    one seat per priority level."""
    base, head = tmp_path / "base-bin", tmp_path / "head-bin"
    for directory in (base, head):
        directory.mkdir()
        for name in ("kube-apiserver", "kube-scheduler", "kube-controller-manager", "etcd"):
            source = binaries.path(name)
            if directory == head and name == "kube-apiserver":
                script = directory / name
                script.write_text(f'#!/bin/sh\nexec {source} "$@" {THROTTLE}\n')
                script.chmod(0o755)
            else:
                (directory / name).symlink_to(source)
    return base, head


#: Four pairs find the slowdown only if each pair shows it: a neighbour's load on a
#: baseline run (another xdist worker's 500 pods) once flipped one. `make test` runs it
#: alone, after the rest.
@pytest.mark.quiet
def test_ci_script_flags_a_throttled_apiserver(binaries, tmp_path: Path) -> None:
    base, head = wrapper_dirs(binaries, tmp_path)
    out, published = tmp_path / "ab-result", tmp_path / "published"
    env = {**os.environ, "PYKUBEMARK": f"{sys.executable} -m pykubemark"}
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "ab-pr.sh"), "--base-bin", str(base),
         "--head-bin", str(head), "--out", str(out), "--publish", str(published), "--",
         "--nodes", "5", "--pods-per-node", "20", "--repeat", "4", "--design",
         "interleaved", "--name", "abtest"],
        capture_output=True, text=True, timeout=2400, env=env, stdin=subprocess.DEVNULL)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "REGRESSION" in result.stderr
    ab = json.loads((published / "ab.json").read_text())
    assert ab["verdict"] == "regression" and ab["regressions"]
    assert ab["candidate"]["bin_dir"] == str(head)
    assert (published / "report.html").is_file() and (published / "runs").is_dir()
    failing = {m["name"] for m in ab["metrics"]
               if m["fails"] and m["result"]["verdict"] == "regression"}
    assert failing & {"PodStartupLatency_SaturationPodStartupLatency{Metric=pod_startup}.Perc99",
                      "APIResponsivenessPrometheus{Class=single-object}.Perc99"}
    no_cluster_left()


def test_ctrl_c_keeps_what_was_measured(binaries, tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    # latency pods one a second: each run lasts long enough to be caught in the middle
    proc = subprocess.Popen([*CLI, "ab", "density", *TINY, "--repeat", "3", "--name",
                             "abtest", "--out", str(out), "--set", "latency_qps=1",
                             "--set", "latency_pods=20"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            # the first run has ended, the second is under way (ab.json is written
            # after each pair of runs; a run's directory when it starts)
            if any((out / "runs").glob("02-*/run.log")):
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(1)
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout[-2000:] + stderr[-2000:]
    ab = json.loads((out / "ab.json").read_text())
    assert ab["partial"] and ab["status"] == "interrupted"
    assert ab["runs"][0]["status"] == "completed"
    assert ab["runs"][1]["status"] != "completed"
    assert "Partial" in (out / "report.html").read_text()
    no_cluster_left()


@pytest.mark.parametrize("spec", ["1.99.0", "v1.37"])
def test_an_unknown_release_is_one_line_and_exit_2(spec: str, tmp_path: Path) -> None:
    result = run_cli("ab", "density", "--baseline", spec, "--name", "abtest", "--out",
                     str(tmp_path / "out"), check=False, timeout=300)
    assert result.returncode == 2
    assert result.stderr.startswith("pykubemark: --baseline") and \
        result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "out").exists()
