"""CPU per pod cycle of one `pykubemark hollow` process, net of idle, optionally profiled.

The micro-workload behind issue 8's "CPU per pod cycle": a running local cluster
(``--cluster``, from `pykubemark up --name NAME`; else a throw-away one), a fleet of
``--nodes`` hollow nodes started here (as benchmarks/cost.py starts it: bootstrapped
kubelets, system:kube-proxy proxies), then ``--repeat`` times: a Deployment of
``pods_per_node`` pods per node created, all Running, scaled to 0, all gone
(benchlib.PodCycle), followed by an idle window of the same length. CPU per pod = (fleet
CPU in the cycle - fleet CPU in the idle window) / pods; the median over the repeats is
reported. ``--baseline-src`` runs a second fleet from other sources through the same
cycles at the same time, so that a shared machine's load hits both alike; which side's
pods are created first alternates between cycles (use an even ``--repeat``); each cycle
is a pair, and its ratio (py / base) is reported with their median. With
``--py-spy FILE`` the cycles (not the idle windows) are sampled by py-spy (collapsed
stacks), and the top functions by own and by inclusive samples go into the result.

    PYKUBEMARK_STATE=/tmp/state-x pykubemark up --name pp
    PYKUBEMARK_STATE=/tmp/state-x python benchmarks/podpath.py --cluster pp --nodes 20
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import psutil
from benchlib import (
    RESULTS_DIR,
    Api,
    PodCycle,
    ResultFile,
    cluster_options,
    console,
    environment,
    recording_status,
    run_cli,
    running_or_throwaway,
    start_py_hollow,
    utcnow,
    wait_ready,
)

from pykubemark.cluster.control_plane import LocalCluster
from pykubemark.cluster.state import Proc


def fleet_cpu(pid: int) -> float:
    """User + system CPU seconds of the fleet process and its children (shards)."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = p.cpu_times()
            total += times.user + times.system
    return total


FRAME = re.compile(r"^(.*?) \((?:.*/)?([^/:]+?)(?::\d+)?\)$")


def top_functions(collapsed: Path, n: int = 15) -> dict[str, list[list[Any]]]:
    """Own and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        # "function (path/file.py:line)" -> "function file.py": one row per function
        frames = [FRAME.sub(r"\1 \2", f) for f in stack.split(";")[1:]]
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(c / max(total, 1), 3)] for name, c in counter.most_common(n)]

    return {"samples": [[total]], "own": share(own), "inclusive": share(inclusive)}


def start_fleets(cluster: LocalCluster, nodes: int, py_args: tuple[str, ...],
                 baseline_src: Path | None) -> dict[str, Proc]:
    """This checkout's fleet ("py", nodes pp-N) and, to compare under the same load, one
    running the pykubemark sources in ``baseline_src`` ("base", nodes pb-N)."""
    procs = {"py": start_py_hollow(cluster, nodes, prefix="pp", extra=py_args)}
    if baseline_src is not None:
        saved = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = str(baseline_src.resolve())
        try:
            procs["base"] = start_py_hollow(cluster, nodes, prefix="pb", extra=py_args)
        finally:
            if saved is None:
                os.environ.pop("PYTHONPATH")
            else:
                os.environ["PYTHONPATH"] = saved
    return procs


def start_py_spy(target: Path, pid: int, native: bool) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` into ``target`` (collapsed stacks) until SIGINT."""
    spy = subprocess.Popen([shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
                            "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
                            "--nonblocking", "-o", str(target), *(["--native"] if native else [])],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    return spy


def measure_cycle(cycle: PodCycle, cpu: Callable[[], dict[str, float]],
                  check: Callable[[], None], spy: subprocess.Popen[bytes] | None
                  ) -> dict[str, Any]:
    """One pod cycle, then an idle window as long: per side, CPU per pod net of idle."""
    t0, c0 = time.monotonic(), cpu()
    cycle.run(check=check)
    t1, c1 = time.monotonic(), cpu()
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)
    seconds = t1 - t0
    time.sleep(seconds)
    t2, c2 = time.monotonic(), cpu()
    entry: dict[str, Any] = {"seconds": seconds}
    for side in c0:
        idle = (c2[side] - c1[side]) / (t2 - t1) * seconds
        pods = cycle.pods(side)
        entry[side] = {
            "pods": pods, "cpu_cycle": c1[side] - c0[side], "cpu_idle_same_length": idle,
            "cpu_seconds_per_pod": (c1[side] - c0[side] - idle) / pods,
            "running_after": cycle.running_after.get(side),
            "gone_after": cycle.gone_after.get(side)}
    return entry


PREFIX = {"py": "pp", "base": "pb"}


def measure(cluster_name: str | None, nodes: int, pods_per_node: int, repeat: int,
            settle: float, py_spy: Path | None, py_args: tuple[str, ...], label: str,
            native: bool = False, cycle_nodes: int = 0, baseline_src: Path | None = None,
            name: str = "bench-podpath", results_dir: Path = RESULTS_DIR,
            warmup: float = 40.0) -> None:
    """On the running cluster ``cluster_name``, or on a throw-away one named ``name``."""
    with running_or_throwaway(cluster_name, name) as cluster:
        _measure(cluster, nodes, pods_per_node, repeat, settle, py_spy, py_args, label,
                 native, cycle_nodes, baseline_src, results_dir, warmup)


def _measure(cluster: LocalCluster, nodes: int, pods_per_node: int, repeat: int,
             settle: float, py_spy: Path | None, py_args: tuple[str, ...], label: str,
             native: bool, cycle_nodes: int, baseline_src: Path | None, results_dir: Path,
             warmup: float) -> None:
    api = Api(cluster)
    results = ResultFile(f"podpath-{label}", results_dir)
    result = results.data = {
        "benchmark": "podpath", "label": label, "status": "running",
        "started": utcnow().isoformat(),
        "params": {"nodes": nodes, "cycle_nodes": cycle_nodes or nodes,
                   "pods_per_node": pods_per_node, "repeat": repeat, "settle": settle,
                   "py_args": list(py_args),
                   "baseline_src": str(baseline_src) if baseline_src else None},
        "environment": environment(), "cycles": [],
    }
    results.save()
    procs: dict[str, Proc] = {}  # started under the result's status: a failed start is recorded

    def check() -> None:
        for side, proc in procs.items():
            if not proc.alive():
                raise SystemExit(f"hollow fleet {side} exited: see {proc.log}")

    def cpu() -> dict[str, float]:
        return {side: fleet_cpu(proc.pid) for side, proc in procs.items()}

    try:
        with recording_status(result):
            procs.update(start_fleets(cluster, nodes, py_args, baseline_src))
            # A fleet much larger than the cycle need not be all Ready to the last node.
            wait_ready(cluster, {PREFIX[side]: max(cycle_nodes, nodes - nodes // 50)
                                 for side in procs}, check=check, timeout=300)
            time.sleep(warmup)  # registration traffic settles; the fleet's first report passes
            sides = {side: [f"{PREFIX[side]}-{i}" for i in range(cycle_nodes or nodes)]
                     for side in procs}
            for i in range(repeat):
                spy = start_py_spy(py_spy.with_suffix(f".{i}.txt"), procs["py"].pid, native) \
                    if py_spy is not None else None
                # Which side's Deployment is created first alternates: with the same code
                # on both sides, the second one cost ~20 % more per pod when always second.
                order = sides if i % 2 == 0 else dict(reversed(sides.items()))
                cycle = PodCycle(api, order, pods_per_node=pods_per_node,
                                 hold=settle, settle=settle, namespace=f"podpath{i}")
                entry = measure_cycle(cycle, cpu, check, spy)
                result["cycles"].append(entry)
                result["cpu_seconds_per_pod_median"] = {
                    side: statistics.median(c[side]["cpu_seconds_per_pod"]
                                            for c in result["cycles"])
                    for side in procs}
                if "base" in procs:  # both fleets went through the cycle at once: a pair
                    ratios = [c["py"]["cpu_seconds_per_pod"] / c["base"]["cpu_seconds_per_pod"]
                              for c in result["cycles"] if c["base"]["cpu_seconds_per_pod"] > 0]
                    result["py_over_base_per_cycle"] = [round(r, 3) for r in ratios]
                    result["py_over_base_median"] = statistics.median(ratios) if ratios else None
                results.save()
                console.print(f"cycle {i}: {entry}")
                with contextlib.suppress(Exception):
                    api.request("DELETE", f"/api/v1/namespaces/podpath{i}")
            if py_spy is not None:
                merged = py_spy.with_suffix(".all.txt")
                merged.write_text("".join(py_spy.with_suffix(f".{i}.txt").read_text()
                                          for i in range(repeat)
                                          if py_spy.with_suffix(f".{i}.txt").exists()))
                result["profile"] = top_functions(merged)
    finally:
        result["finished"] = utcnow().isoformat()
        results.save()
        console.print(f"CPU-s per pod (median of {len(result['cycles'])}): "
                      f"{result.get('cpu_seconds_per_pod_median')}; written to {results.path}")
        if result.get("py_over_base_per_cycle"):
            console.print(f"py / base per cycle: {result['py_over_base_per_cycle']} "
                          f"(median {result['py_over_base_median']:.3f})")
        for proc in procs.values():
            if (proc_obj := proc.process()) is not None:
                proc_obj.terminate()
                with contextlib.suppress(psutil.Error):
                    proc_obj.wait(30)
        with contextlib.suppress(Exception):
            for i in range(repeat):
                api.request("DELETE", f"/api/v1/namespaces/podpath{i}")
        with contextlib.suppress(Exception):
            for side in procs:
                for i in range(nodes):
                    api.request("DELETE", f"/api/v1/nodes/{PREFIX[side]}-{i}")


@click.command()
@cluster_options("bench-podpath")
@click.option("--warmup", type=float, default=40.0, show_default=True,
              help="Seconds between all nodes Ready and the first cycle.")
@click.option("--nodes", default=20, show_default=True)
@click.option("--cycle-nodes", default=0, help="Pods go to the first N nodes (0: all).")
@click.option("--pods-per-node", default=10, show_default=True)
@click.option("--repeat", default=3, show_default=True)
@click.option("--settle", default=3.0, show_default=True)
@click.option("--py-spy", type=click.Path(path_type=Path), default=None,
              help="Sample the cycles with py-spy into FILE.N.txt (collapsed stacks).")
@click.option("--native", is_flag=True, help="py-spy --native: C frames too.")
@click.option("--py-arg", "py_args", multiple=True)
@click.option("--baseline-src", type=click.Path(path_type=Path, exists=True), default=None,
              help="Also run a fleet from these pykubemark sources (e.g. `git archive main"
                   " src | tar -x -C DIR`, then DIR/src), cycled at the same time.")
@click.option("--label", default="run")
def main(cluster_name: str | None, name: str, results_dir: Path, warmup: float, nodes: int,
         cycle_nodes: int, pods_per_node: int, repeat: int,
         settle: float, py_spy: Path | None, py_args: tuple[str, ...], label: str, native: bool,
         baseline_src: Path | None) -> None:
    """CPU per pod cycle of a pykubemark hollow fleet, net of idle."""
    run_cli(lambda: measure(cluster_name, nodes, pods_per_node, repeat, settle, py_spy,
                            py_args, label, native, cycle_nodes, baseline_src, name,
                            results_dir, warmup))


if __name__ == "__main__":
    main()
