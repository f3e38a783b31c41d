"""Node failures from the chaos monkey and from scenario files, judged by the real
controller-manager (shortened node-monitor grace): a killed node goes Unknown and comes
back Ready as a restarted kubelet; a run applies its scenario's node failures to the
cluster's fleet and removes them when it ends or is interrupted; without a known fleet
it refuses."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import CLI, KUBELET_USER, Cluster, Fleet, hollow_audit, run_cli, wait_for
from test_cluster import one_line_error

from pykubemark.hollow.chaos import read_plan

#: Tests that start a cluster of its own: `pytest -m "not slow"` leaves them out.
pytestmark = pytest.mark.slow

NAME = "nfail"
PREFIX = "nf"
GRACE = 10.0
DOWNTIME = 25.0

SCENARIO = """
name: nodes-fail
measurements: []
parameters: {hold: 3, stopped: 0.0}
node_failures:
  - {action: stop, nodes: [nf-1]}
  - {action: stop, fraction: stopped}
phases:
  - name: hold
    create:
      - {kind: ConfigMap, name: marker}
    node_failures:
      - {action: stop, nodes: [nf-2], after: 1}
    wait: none
    hold: hold
"""


@pytest.fixture(scope="module")
def nf_cluster(binaries, tmp_path_factory) -> Iterator[tuple[Cluster, Fleet]]:
    run_cli("up", "--name", NAME, "--audit",
            f"--controller-manager-arg=--node-monitor-grace-period={GRACE:.0f}s",
            "--controller-manager-arg=--node-monitor-period=2s")
    cluster = Cluster(NAME)
    profile = tmp_path_factory.mktemp("nf") / "profile.yaml"
    # Heartbeats every 2 s, so that a 10 s grace period never catches a healthy node.
    profile.write_text("lease_renew: 2\nstatus_check: 2\n")
    fleet = Fleet(cluster, 4, PREFIX, "--profile", str(profile), "--chaos-file",
                  str(cluster.local.dir / "chaos.json"))  # the cluster's, as `up --nodes`
    try:
        fleet.wait_ready()
        yield cluster, fleet
    finally:
        code = fleet.stop()
        run_cli("down", "--name", NAME, check=False)
        assert code == 0, fleet.log.read_text()[-2000:]


def _ready(fleet: Fleet) -> dict[str, str]:
    return {n["metadata"]["name"]: next(c["status"] for c in n["status"]["conditions"]
                                        if c["type"] == "Ready")
            for n in fleet.nodes_json()}


def test_chaosmonkey_kills_nodes_and_restores_them(nf_cluster) -> None:
    cluster, fleet = nf_cluster
    node = f"{PREFIX}-0"
    since = dt.datetime.now(dt.UTC)
    # one round (the next would begin after the end): nf-0 killed, back after DOWNTIME
    run_cli("chaos", "chaosmonkey", "--name", NAME, "--nodes", node, "--fraction", "1",
            "--interval", "600", "--downtime", str(DOWNTIME), "--for", "120")
    seen: list[dict[str, str]] = []

    def sample(want: str) -> bool:
        seen.append(_ready(fleet))
        return seen[-1][node] == want
    wait_for(f"{node} Unknown", lambda: sample("Unknown"), timeout=DOWNTIME + 60)
    wait_for(f"{node} Ready again", lambda: sample("True"), timeout=120)
    # only the chosen node failed
    assert {s[f"{PREFIX}-3"] for s in seen} == {"True"}
    # it came back as a restarted kubelet: registered again (its Node exists: 409)
    requests = list(hollow_audit(cluster.audit_log, since=since, users=(KUBELET_USER,)))
    assert any(r.verb == "create" and r.resource == "nodes" and r.code == 409
               for r in requests), "no re-registration"
    run_cli("chaos", "clear", "--name", NAME)


def _scenario(tmp_path: Path) -> Path:
    path = tmp_path / "nodes-fail.yaml"
    path.write_text(SCENARIO)
    return path


def test_interrupted_run_applies_its_node_failures_then_removes_them(
        nf_cluster, tmp_path: Path) -> None:
    cluster, fleet = nf_cluster
    chaos_file = cluster.local.dir / "chaos.json"
    out = tmp_path / "out"
    proc = subprocess.Popen([*CLI, "run", str(_scenario(tmp_path)), "--cluster", NAME,
                             "--set", "hold=600", "--out", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        wait_for("nf-1 and nf-2 Unknown (the run's node failures)",
                 lambda: proc.poll() is None and {
                     s for n, s in _ready(fleet).items() if n in ("nf-1", "nf-2")} == {"Unknown"},
                 timeout=120, interval=1)
        assert len(read_plan(chaos_file).actions) == 2  # a zero fraction is no failure
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert read_plan(chaos_file).actions == []
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert [(f["phase"], f["failure"]["nodes"]) for f in summary["node_failures"]] == [
        (None, ["nf-1"]), ("hold", ["nf-2"])]
    wait_for("the nodes Ready again", lambda: set(_ready(fleet).values()) == {"True"},
             timeout=120)


def test_completed_run_removes_its_node_failures(nf_cluster, tmp_path: Path) -> None:
    cluster, fleet = nf_cluster
    chaos_file = cluster.local.dir / "chaos.json"
    out = tmp_path / "out"
    started = time.time()
    run_cli("run", str(_scenario(tmp_path)), "--cluster", NAME, "--out", str(out),
            "--quiet", timeout=300)
    assert read_plan(chaos_file).actions == []
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed"
    starts = [dt.datetime.fromisoformat(f["start"].replace("Z", "+00:00")).timestamp()
              for f in summary["node_failures"]]
    assert len(starts) == 2 and all(s >= started - 1 for s in starts)
    wait_for("the nodes Ready", lambda: set(_ready(fleet).values()) == {"True"}, timeout=120)


def test_node_failures_without_a_known_fleet_are_refused(nf_cluster, tmp_path: Path) -> None:
    cluster, _ = nf_cluster
    out = tmp_path / "out"
    line = one_line_error(run_cli("run", str(_scenario(tmp_path)), "--kubeconfig",
                                  cluster.kubeconfig, "--out", str(out), check=False))
    assert "node_failures" in line and "--cluster" in line
    assert not out.exists()
