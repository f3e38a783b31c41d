"""Every benchmark script, run once at a tiny size, so none of them can rot unnoticed.

Benchmarks are not tests: nothing here looks at a figure. What is checked is that each
script runs end to end against its own real cluster, writes its result JSON with the
sections a full run fills, and leaves no process of its cluster behind (and for the
network cut, that the shard came back: an outcome, not a speed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

#: Tests that start each benchmark starts its own: `pytest -m "not slow"` leaves them out.
pytestmark = pytest.mark.slow

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

#: script → (arguments at a tiny size, keys its result JSON must have)
RUNS = {
    # real nodes, pykubemark and the Go kubemark, each on a cluster of its own
    "fidelity.py": (["--nodes", "1", "--startup-seconds", "0", "--idle-minutes", "0.2",
                     "--pods-per-node", "1", "--hold-seconds", "0", "--settle-seconds", "1",
                     "--baseline-minutes", "0.1"],
                    ["sides", "rows"]),
    "cost.py": (["--go-nodes", "1", "--py-nodes", "2", "--startup-seconds", "0",
                 "--idle-minutes", "0.2", "--pods-per-node", "1", "--cycles", "2",
                 "--hold-seconds", "0", "--settle-seconds", "1", "--sample-seconds", "1"],
                ["summary", "per_pod_ratio_by_cycle"]),
    # long enough for a second lease renewal of each node (its first Lease is created a
    # renew period after the node registers)
    "scale.py": (["--sizes", "2", "--window", "40"], ["sizes", "nodes_per_core"]),
    "headline.py": (["--nodes", "3", "--pods-per-node", "2", "--processes", "1", "--idle", "25",
                     "--ramp-every", "2"],
                    ["slos", "phases", "saturation", "cpu_by_phase", "idle"]),
    "failures.py": (["--nodes", "2", "--pods-per-node", "5", "--crash-fraction", "0.5",
                     "--node-flap-fraction", "1", "--node-flap-period", "5",
                     "--hold-seconds", "5"], ["without", "with", "ratio", "compare"]),
    "restarts.py": (["--nodes", "2", "--components", "apiserver", "--quiet", "3",
                     "--downtime", "1", "--observe", "5", "--renew-timeout", "60"],
                    ["restarts"]),
    "soak.py": (["--nodes", "2", "--duration", "10", "--sample-every", "5", "--churn", "1",
                 "--pod-lifetime", "4", "--flat-window", "5", "--settle", "0"],
                ["samples", "rss", "leases", "start", "end", "churn"]),
    "overload.py": (["--nodes", "2", "--pods", "4", "--quiet", "3", "--hold", "5",
                     "--server-concurrency", "30", "--timeout", "120"],
                    ["throttle", "after_lift", "fleet_request_rate", "http_429_served"]),
    # client-go's HTTP/2 health check shortened (its environment variables), so that the
    # cut outlasts it
    "partition.py": (["--nodes", "2", "--pods-per-node", "1", "--cut", "12", "--read-idle",
                      "4", "--ping-timeout", "2", "--timeout", "120"],
                     ["during_cut", "after_lift", "pods", "shard"]),
    # etcd held to 1 % of a core for 10 s while 20 pods are created at 2 a second
    "slow_etcd.py": (["--nodes", "2", "--pods-per-node", "10", "--qps", "2", "--cpu", "0.01",
                      "--quiet", "5", "--after", "3", "--for", "10", "--observe", "5"],
                     ["windows", "verdict", "run"]),
    "real_nodes.py": (["--nodes", "1", "--settle", "0", "--idle", "10"], ["per_node"]),
    # a real node and a hollow one on one control plane, two rounds of each pairing
    "paired_cpu.py": (["--nodes", "1", "--rounds", "2", "--window-seconds", "5",
                       "--settle-seconds", "1", "--pods-per-node", "1"], ["rounds", "summary"]),
    "addons_cost.py": (["--nodes", "2", "--pods-per-node", "1", "--seconds", "30"],
                       ["nodes"]),
    # one A/A pair of runs (no figures from one run a side: the file and its rows)
    "ab.py": (["--nodes", "1", "--pods-per-node", "2", "--repeat", "1", "--aa", "1",
               "--slow", "0"], ["comparisons", "aa"]),
    # no cluster: ruptures alone on a few synthetic series
    "changepoints.py": (["--series", "4"], ["results"]),
    # a baseline and one change, once each, on a real node and on a hollow one
    "sensitivity.py": (["--nodes", "1", "--pods-per-node", "2", "--repeat", "1",
                        "--changes", "inflight-tenth"], ["runs", "changes"]),
}
#: Cluster names start with this (``$PYKUBEMARK_BENCH_PREFIX``, default ``tb``): cluster
#: names are global on a machine (etcd's tmpfs, network namespaces, cgroups), so two
#: checkouts testing at once need different ones.
PREFIX = os.environ.get("PYKUBEMARK_BENCH_PREFIX", "tb")


def cluster_processes(name: str) -> list[psutil.Process]:
    """Live processes whose command line names the cluster's state directory."""
    marker = f"/clusters/{name}/"
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(marker in arg for arg in proc.info["cmdline"] or []):
            found.append(proc)
    return found


@pytest.mark.parametrize("script", sorted(RUNS))
def test_benchmark_runs_at_a_tiny_size(script: str, binaries, tmp_path: Path) -> None:
    args, keys = RUNS[script]
    name = f"{PREFIX}-" + script.removesuffix(".py").replace("_", "-")
    results = tmp_path / "results"  # not there yet: the script makes it
    text = (BENCHMARKS / script).read_text()
    # its clusters' names and its scratch directory, apart from anyone else's
    extra = [*(["--name", name] if '"--name"' in text or "cluster_options(" in text else []),
             *(["--work-dir", str(tmp_path / "work")] if '"--work-dir"' in text else [])]
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args, *extra,
         "--results-dir", str(results)],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    [written] = list(results.glob("*.json"))
    data = json.loads(written.read_text())
    for key in keys:
        assert data.get(key), f"{script}: no {key} in {written.name}"
    if "status" in data:
        assert data["status"] == "complete"
    if script == "cost.py":  # each cycle kept, and all of them as the phase
        cycles = data["phases"]["pod_cycles"]
        assert len(cycles) == 2 and data["phases"]["pod_cycle"]["pods"] == {"go": 2, "py": 2}
        # per node from the idle fleet, per pod from the pod fleet, net of its idle CPU
        summary = data["summary"]
        assert summary["RSS MiB per node, idle"]["py"] is not None
        assert summary["CPU-s per pod (net of idle)"]["py"] is not None
    if script == "headline.py":  # the idle window watched every node Ready and renewing
        idle = data["idle"]
        assert idle["ready_at_start"] == idle["ready_at_end"] == 3
        assert idle["leases"]["nodes_renewing"] >= 1 and idle["cores"]["kube-apiserver"] > 0
        # and while `up` started the fleet, its nodes by state (registered at the end)
        assert data["ramp"][-1]["nodes"]["started"] == 3 and "cores" in data["ramp"][-1]
    if script == "fidelity.py":
        assert set(data["sides"]) == {"real", "pykubemark", "kubemark", "kwok"}
    if script == "partition.py":  # a fault's outcome, not a speed
        assert data["during_cut"]["connections_closed_by_ping"] >= 2  # a kubelet's, a proxy's
        assert data["after_lift"]["all_nodes_ready_after_s"] is not None
        assert data["after_lift"]["all_leases_renewed_after_s"] is not None
        pods = data["pods"]
        assert pods["same_uids"] and pods["restarts_after"] == 0 and pods["running_after"] == 2
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        assert f"pkm-cut-{name} " not in namespaces.stdout + " "
    if script == "restarts.py":  # the renewals after the restart, by the fleet's counters
        fleet = data["restarts"][0]["fleet_until_renewed"]
        # a PUT of the lease, or its POST where the tiny run's quiet was too short for one
        assert any(k.startswith(("code=200,", "code=201,")) for k in fleet["lease_requests"])
    if script == "slow_etcd.py":  # throttled, then let go: its cgroup gone
        assert set(data["windows"]) == {"quiet", "load", "throttled", "after"}
        assert data["run"]["status"] == "completed"
        assert not any((h / f"pkm-{name}-etcd-slow").exists()
                       for h in Path("/sys/fs/cgroup").iterdir())
    # fidelity.py's per-side runs use clusters of their own (NAME-<side>).
    assert not any(cluster_processes(n) for n in (
        name, f"{name}-real", f"{name}-pykubemark", f"{name}-kubemark", f"{name}-kwok",
        f"{name}-baseline", f"{name}-candidate"))


#: Modules the scripts import, not scripts.
LIBRARIES = ("benchlib.py", "observe.py")


def test_every_benchmark_is_run_here_and_by_make() -> None:
    """No script in benchmarks/ that neither this file runs nor a Makefile target does:
    one-off investigations leave the tree once their conclusions are in docs/."""
    scripts = {p.name for p in BENCHMARKS.glob("*.py")} - set(LIBRARIES)
    assert scripts == set(RUNS)
    makefile = (BENCHMARKS.parent / "Makefile").read_text()
    assert not [s for s in scripts if f"benchmarks/{s}" not in makefile]


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.py")
                                          if p.name not in LIBRARIES))
def test_every_benchmark_script_loads(script: str) -> None:
    """Scripts too long to run here (or needing a base cluster) still must not rot at
    import: `--help` loads every module they use."""
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), "--help"],
                            capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout.lower()


@pytest.mark.parametrize("script", sorted(
    p.name for p in BENCHMARKS.glob("*.py") if p.name not in LIBRARIES
    and ("results_dir_option(" in p.read_text() or "cluster_options(" in p.read_text())))
def test_a_results_dir_that_is_a_file_is_one_line(script: str, tmp_path: Path) -> None:
    """Refused before any cluster starts, in one line, not at the first result written."""
    blocker = tmp_path / "results"
    blocker.write_text("")
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), "--results-dir",
                             str(blocker)], capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "--results-dir" in result.stderr


def test_an_interrupted_benchmark_keeps_the_cycles_it_measured(binaries, tmp_path: Path
                                                                ) -> None:
    """Ctrl-C after cost's first of three pod cycles: that cycle is in the result file,
    which says it is not whole, and the throw-away cluster is gone."""
    name, results = f"{PREFIX}-cost-int", tmp_path / "results"
    proc = subprocess.Popen(
        [sys.executable, str(BENCHMARKS / "cost.py"), "--go-nodes", "1", "--py-nodes", "1",
         "--startup-seconds", "0", "--idle-minutes", "0.2", "--pods-per-node", "1",
         "--cycles", "3", "--hold-seconds", "0", "--settle-seconds", "1",
         "--sample-seconds", "1", "--name", name, "--results-dir", str(results)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    seen = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("pod cycle 1:"):
                proc.send_signal(signal.SIGINT)
                break
        rest, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = "".join(seen) + rest
    assert proc.returncode == 130, output[-3000:]
    [written] = list(results.glob("cost-*.json"))
    data = json.loads(written.read_text())
    assert data["status"] == "interrupted"
    cycles = data["phases"]["pod_cycles"]
    assert not cycles[0].get("partial") and len(cycles) <= 2
    assert data["per_pod_ratio_by_cycle"]
    assert not cluster_processes(name)
