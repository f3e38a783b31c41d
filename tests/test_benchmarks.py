"""Every benchmark script, run once at a tiny size, so none of them can rot unnoticed.

Benchmarks are not tests: nothing here looks at a figure. What is checked is that each
script runs end to end against its own real cluster, writes its result JSON with the
sections a full run fills, and leaves no process of its cluster behind.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

#: script → (arguments at a tiny size, keys its result JSON must have)
RUNS = {
    "fidelity.py": (["--nodes", "1", "--startup-seconds", "0", "--idle-minutes", "0.2",
                     "--baseline-minutes", "0.2",
                     "--pods-per-node", "1", "--hold-seconds", "0", "--settle-seconds", "1"],
                    ["phases", "pod_cycle", "pod_timestamps", "apiserver_side"]),
    "cost.py": (["--go-nodes", "1", "--py-nodes", "2", "--startup-seconds", "0",
                 "--idle-minutes", "0", "--pods-per-node", "1", "--cycles", "2",
                 "--hold-seconds", "0", "--settle-seconds", "1", "--sample-seconds", "1"],
                ["summary"]),
    "timestamps.py": (["--nodes", "1", "--pods-per-node", "2", "--settle", "1"],
                      ["sides"]),
    "scale.py": (["--sizes", "2", "--window", "25"], ["sizes", "nodes_per_core"]),
    "headline.py": (["--nodes", "3", "--pods-per-node", "2", "--processes", "1"],
                    ["slos", "phases", "saturation", "cpu_by_phase"]),
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
    "kubelet_api.py": (["--nodes", "2", "--settle", "0"], ["idle", "after_one_scrape_each"]),
    "real_nodes.py": (["--nodes", "1", "--settle", "0", "--idle", "10"], ["per_node"]),
    # a second fleet beside it, from the checkout's own sources
    "podpath.py": (["--nodes", "1", "--pods-per-node", "1", "--repeat", "1", "--settle", "1",
                    "--warmup", "0", "--baseline-src", str(BENCHMARKS.parent / "src")],
                   ["cycles", "cpu_seconds_per_pod_median"]),
    "ports.py": (["--nodes", "1", "--idle-seconds", "0", "--variants", "h2"], ["variants"]),
    # both sides at once, the checkout's own sources as the baseline
    "reqcost.py": (["--connections", "2", "--rounds", "5", "--repeat", "1", "--baseline-src",
                    str(BENCHMARKS.parent / "src")],
                   ["runs", "us_per_request_median", "py_over_base_median"]),
}


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
    name = "tb-" + script.removesuffix(".py").replace("_", "-")
    results = tmp_path / "results"  # not there yet: the script makes it
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args, "--name", name,
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
    if "apiserver_side" in keys:
        side = data["apiserver_side"]
        assert side["status"] == "complete" and set(side["runs"]) == {"go", "py"}
        assert side["runs"]["py"]["connections"]["apiserver_established"] > 0
    # fidelity.py's per-side runs use clusters of their own (NAME-go, NAME-py).
    assert not any(cluster_processes(n) for n in (name, f"{name}-go", f"{name}-py",
                                                  f"{name}-h2"))


#: Modules the scripts import, not scripts.
LIBRARIES = ("benchlib.py", "observe.py")


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
    """Ctrl-C after podpath's first of three cycles: that cycle is in the result file,
    which says it is not whole, and the throw-away cluster is gone."""
    name, results = "tb-podpath-int", tmp_path / "results"
    proc = subprocess.Popen(
        [sys.executable, str(BENCHMARKS / "podpath.py"), "--nodes", "1", "--pods-per-node",
         "1", "--repeat", "3", "--settle", "1", "--warmup", "0", "--name", name,
         "--results-dir", str(results)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    seen = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("cycle 0:"):
                proc.send_signal(signal.SIGINT)
                break
        rest, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = "".join(seen) + rest
    assert proc.returncode == 130, output[-3000:]
    [written] = list(results.glob("podpath-*.json"))
    data = json.loads(written.read_text())
    assert data["status"] == "interrupted"
    assert len(data["cycles"]) == 1 and data["cpu_seconds_per_pod_median"]["py"] is not None
    assert not cluster_processes(name)


PERF_SCRIPT = """\
python 7 100.1:    1001 cpu-clock:ppp:
\t           8dd17 _PyEval_EvalFrameDefault+0x2437 (/usr/lib/libpython3.13.so.1.0)
\t    7fa54e661495 py::Client.request:/src/pykubemark/kube/client.py+0x5 (/tmp/perf-7.map)
\t    7fa54e661400 py::Runner.run:/usr/lib/python3.13/asyncio/runners.py+0x5 (/tmp/perf-7.map)

python 7 100.2:    1001 cpu-clock:ppp:
\t           8dd17 Py_INCREF+0x2437 (inlined)
\t          12a6d4 __pyx_f_6uvloop_4loop_11SSLProtocol__do_read+0x404 (/venv/uvloop/loop.so)
\t    7fa54e661495 py::SSLObject.read:/usr/lib/python3.13/ssl.py+0x5 (/tmp/perf-7.map)

python 7 100.3:    1001 cpu-clock:ppp:
\tffffffff813ae740 finish_task_switch+0x5e0 ([kernel.kallsyms])
\t          154c24 uv__read+0x2e4 (/venv/uvloop/loop.so)

python 7 100.4:    1001 cpu-clock:ppp:
\t           8dd17 _PyEval_EvalFrameDefault+0x2437 (/usr/lib/libpython3.13.so.1.0)
\t    7fa54e661495 py::Client.request:/src/pykubemark/kube/client.py+0x5 (/tmp/perf-7.map)
"""


def test_perf_samples_go_to_the_innermost_python_function(tmp_path: Path) -> None:
    recorded = tmp_path / "perf.txt"
    recorded.write_text(PERF_SCRIPT)
    result = subprocess.run([sys.executable, str(BENCHMARKS / "perfpy.py"), str(recorded)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["samples"] == 4
    assert dict(data["percent_by_python_function"]) == {
        "Client.request": 50.0, "SSLObject.read": 25.0, "(no Python frame)": 25.0}
    # an inlined top frame belongs to the object of the frame below it
    assert dict(data["percent_by_object"]) == {
        "libpython3.13.so.1.0": 50.0, "loop.so": 25.0, "[kernel.kallsyms]": 25.0}
    recorded.write_text("no samples here\n")
    result = subprocess.run([sys.executable, str(BENCHMARKS / "perfpy.py"), str(recorded)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
