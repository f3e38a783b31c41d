"""Cost: memory and CPU per hollow node, pykubemark against the Go kubemark, in one run.

The point of pykubemark is many hollow nodes per core; this measures how many. Go hollow
nodes (a kubelet and a proxy process each, ``pykubemark.engines.gokubemark``) and two
pykubemark fleets (a `pykubemark hollow` process each) run side by side against one
local cluster, and psutil reads their RSS (and PSS, which does not count the Go binary's
shared pages once per process) and CPU seconds:

* the idle fleet (``--py-nodes``, 500): what a pykubemark node costs at scale — CPU
  seconds per node at startup, then mean RSS and CPU millicores per node over
  ``--idle-minutes``, beside the same of each Go node;
* the pod fleet (``--cycle-nodes``, as many nodes as the Go side): ``--pods-per-node``
  pods on every one of its nodes and on as many Go nodes, both sides at once, create →
  Running → hold → scale to 0 → gone, ``--cycles`` times; CPU seconds per pod, raw and
  net of the side's own idle CPU rate (measured in the idle window) over the same time.

Two fleets, because one would make the per-pod figure mostly idle CPU: pods on 10 of
500 nodes leave 490 idle ones whose CPU is subtracted from the cycle's, and that
difference is noise. Per pod is the median of the cycles, and each cycle's Go /
pykubemark ratio is reported (both sides go through a cycle at once, so each is a pair).

The Go side is expensive (~115 MiB per node), so it defaults to 10 nodes. Results go
to ``results/cost-<timestamp>.json`` after every phase, and the cluster is always torn
down, also on Ctrl-C.

    .venv/bin/python benchmarks/cost.py        # = make bench-cost
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import psutil
from benchlib import (
    PodCycle,
    ResultFile,
    check_proc,
    console,
    environment,
    iso,
    live_tree,
    out,
    recording_status,
    results_dir_option,
    run_cli,
    shielded,
    sleep_checked,
    start_cluster,
    start_py_hollow,
    tear_down,
    utcnow,
    wait_ready,
)
from rich.table import Table

from pykubemark.cluster.control_plane import LocalCluster
from pykubemark.cluster.state import Proc
from pykubemark.engines.gokubemark import GoFleet
from pykubemark.measure.resources import cpu_seconds

#: Process groups: the Go nodes' kubelets and proxies, pykubemark's idle fleet and its
#: pod fleet.
GROUPS = ("go-kubelet", "go-proxy", "py", "py-pods")
#: Which side's pods a group's CPU is divided by.
SIDE = {"go-kubelet": "go", "go-proxy": "go", "py": "py", "py-pods": "py"}
#: The pod fleet: its node names, and InternalIPs apart from the idle fleet's (each node
#: serves the kubelet API on its own address).
POD_PREFIX, POD_IP_BASE = "pp", "127.30.0.0/16"
MIB = 1 << 20


@dataclass
class Sample:
    """One reading of a group of processes."""

    when: float
    cpu: float  # user + system seconds since each process started
    rss: int
    pss: int
    procs: int


def read(processes: list[psutil.Process]) -> Sample:
    rss, pss, count = 0, 0, 0
    for proc in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            memory = proc.memory_full_info()
            rss += memory.rss
            pss += getattr(memory, "pss", memory.rss)
            count += 1
    return Sample(time.monotonic(), cpu_seconds(processes), rss, pss, count)


@dataclass
class Meter:
    """Samples each group's processes every ``period`` seconds in a thread (for the
    RSS over a window) and on demand at phase boundaries (for the CPU deltas)."""

    groups: dict[str, Callable[[], list[psutil.Process]]]
    period: float = 5.0
    samples: list[tuple[float, dict[str, Sample]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def snapshot(self) -> dict[str, Sample]:
        taken = {name: read(get()) for name, get in self.groups.items()}
        self.samples.append((time.monotonic(), taken))
        return taken

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self.snapshot()

    def __enter__(self) -> Meter:
        self._thread = threading.Thread(target=self._loop, name="meter", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def between(self, group: str, first: Sample, last: Sample) -> list[Sample]:
        """The group's samples from ``first`` to ``last``, both included."""
        return [taken[group] for _, taken in list(self.samples)
                if first.when <= taken[group].when <= last.when]


@dataclass
class Cost:
    cluster: LocalCluster
    fleet: GoFleet
    #: Nodes of each group: Go, pykubemark's idle fleet, its pod fleet.
    go_nodes: int
    py_nodes: int
    pod_nodes: int
    results: ResultFile
    procs: dict[str, Proc] = field(default_factory=dict)  # py, py-pods
    meter: Meter | None = None
    idle_rate: dict[str, float] = field(default_factory=dict)  # CPU-s per second
    #: The phase under way and its first snapshot, so an interruption can save it.
    pending: tuple[str, dict[str, Sample]] | None = None
    cycle: PodCycle | None = None

    def check(self) -> None:
        self.fleet.check_alive()
        for proc in self.procs.values():
            check_proc(proc)

    def py_processes(self, group: str) -> list[psutil.Process]:
        return live_tree(self.procs.get(group))

    def nodes(self, group: str) -> int:
        return {"py": self.py_nodes, "py-pods": self.pod_nodes}.get(group, self.go_nodes)

    def save(self, key: str, value: Any) -> None:
        self.results.data.setdefault("phases", {})[key] = value
        self.results.save()

    # -- phases ----------------------------------------------------------------------
    def run(self, *, startup_seconds: float, idle_minutes: float, pods_per_node: int,
            hold: float, settle: float, sample_seconds: float, py_processes: int,
            py_args: tuple[str, ...], cycles: int = 1) -> None:
        launched = time.monotonic()
        self.procs["py"] = start_py_hollow(self.cluster, self.py_nodes, prefix="py",
                                           processes=py_processes, extra=py_args)
        self.procs["py-pods"] = start_py_hollow(
            self.cluster, self.pod_nodes, prefix=POD_PREFIX,
            extra=["--node-ip-base", POD_IP_BASE, *py_args])
        with console.status("launching Go hollow nodes") as status:
            self.fleet.start(status.update)
        took = wait_ready(self.cluster, {"go": self.go_nodes, "py": self.py_nodes,
                                         POD_PREFIX: self.pod_nodes},
                          check=self.check, timeout=180 + self.py_nodes / 5)
        self.results.data["ready_after_seconds"] = took
        left = max(startup_seconds - (time.monotonic() - launched), 15.0)
        sleep_checked(left, self.check, "startup")
        self.meter = Meter({
            "go-kubelet": lambda: list(self.fleet.live_processes("kubelet")),
            "go-proxy": lambda: list(self.fleet.live_processes("proxy")),
            "py": lambda: self.py_processes("py"),
            "py-pods": lambda: self.py_processes("py-pods"),
        }, sample_seconds)
        with self.meter as meter:
            first = meter.snapshot()
            self.save("startup", {
                group: {"cpu_seconds_per_node": first[group].cpu / self.nodes(group),
                        "rss_mib_per_node": first[group].rss / MIB / self.nodes(group),
                        "processes": first[group].procs}
                for group in GROUPS})
            if idle_minutes > 0:
                self.pending = ("idle", first)
                sleep_checked(idle_minutes * 60, self.check,
                              f"idle window ({idle_minutes:g} min)")
                self.save("idle", self.window(first, meter.snapshot()))
                self.pending = None
            for i in range(cycles if pods_per_node > 0 else 0):
                self.pod_cycle(pods_per_node, hold, settle, f"bench{i}")

    def save_partial(self) -> None:
        """After an interruption: the phase under way, from its start until now."""
        if self.pending is None or self.meter is None:
            return
        name, first = self.pending
        last = self.meter.snapshot()
        if name == "idle":
            self.save("idle", {**self.window(first, last), "partial": True})
        elif self.cycle is not None:
            self.save_cycle({**self.cycle_result(self.cycle, first, last), "partial": True})
        self.pending = None

    def save_cycle(self, result: dict[str, Any]) -> None:
        """One more pod cycle, and ``pod_cycle`` as all of them together: CPU per pod the
        median of the cycles' (both sides go through each cycle at once, at the same
        speed of the machine, so each cycle is a pair), pods and seconds summed."""
        cycles = self.results.data.setdefault("phases", {}).setdefault("pod_cycles", [])
        cycles.append(result)
        self.save("pod_cycle", combine_cycles(cycles))
        ratio = cycle_ratio(result)
        console.print(f"pod cycle {len(cycles)}{' (partial)' if result.get('partial') else ''}"
                      f": CPU per pod, Go / pykubemark {fmt(ratio)}")

    def window(self, first: dict[str, Sample], last: dict[str, Sample]) -> dict[str, Any]:
        """CPU over the window from its two ends; memory as the mean of every sample."""
        assert self.meter is not None
        result: dict[str, Any] = {"seconds": last["py"].when - first["py"].when}
        for group in GROUPS:
            samples = self.meter.between(group, first[group], last[group])
            seconds = max(last[group].when - first[group].when, 1e-6)
            cpu = last[group].cpu - first[group].cpu
            self.idle_rate[group] = cpu / seconds
            nodes = self.nodes(group)
            result[group] = {
                "cpu_seconds": cpu,
                "millicores_per_node": cpu / seconds * 1000 / nodes,
                "rss_mib_per_node": sum(s.rss for s in samples) / len(samples) / MIB / nodes,
                "pss_mib_per_node": sum(s.pss for s in samples) / len(samples) / MIB / nodes,
                "rss_mib_total": samples[-1].rss / MIB,
                "samples": len(samples),
            }
        return result

    def pod_cycle(self, pods_per_node: int, hold: float, settle: float,
                  namespace: str) -> None:
        assert self.meter is not None
        meter = self.meter
        marks: dict[str, dict[str, Sample]] = {}

        def mark(boundary: str) -> None:
            marks[boundary] = meter.snapshot()
            if boundary == "create":
                self.pending = ("pod_cycle", marks["create"])

        sides = {"go": self.fleet.names[:self.pod_nodes],
                 "py": [f"{POD_PREFIX}-{i}" for i in range(self.pod_nodes)]}
        self.cycle = PodCycle(self.cluster, sides, pods_per_node=pods_per_node, hold=hold,
                              settle=settle, namespace=namespace, mark=mark)
        self.cycle.run(check=self.check)
        self.save_cycle(self.cycle_result(self.cycle, marks["create"], marks["stop_end"]))
        self.pending = None

    def cycle_result(self, cycle: PodCycle, first: dict[str, Sample],
                     last: dict[str, Sample]) -> dict[str, Any]:
        """CPU-s per pod, raw and net of the idle CPU rate over the same seconds, of the
        groups whose nodes carry the pods (not the idle fleet's)."""
        assert self.meter is not None
        result: dict[str, Any] = {
            "seconds": last["py"].when - first["py"].when,
            "pods": {s: cycle.pods(s) for s in cycle.sides},
            "spread_pods_to_nodes": cycle.spread, "running_after_seconds": cycle.running_after,
            "gone_after_seconds": cycle.gone_after,
        }
        for group in POD_GROUPS:
            pods = cycle.pods(SIDE[group])
            cpu = last[group].cpu - first[group].cpu
            seconds = last[group].when - first[group].when
            idle = self.idle_rate.get(group)
            samples = self.meter.between(group, first[group], last[group])
            peak = max(s.rss for s in samples)
            result[group] = {
                "cpu_seconds": cpu,
                "cpu_seconds_per_pod_raw": cpu / pods,
                "cpu_seconds_per_pod": (cpu - idle * seconds) / pods if idle is not None
                else None,
                "peak_rss_mib_per_node": peak / MIB / self.nodes(group),
                "rss_growth_mib_per_node": (peak - samples[0].rss) / MIB / self.nodes(group),
            }
        return result


#: The groups whose nodes carry pods.
POD_GROUPS = ("go-kubelet", "go-proxy", "py-pods")


def combine_cycles(cycles: list[dict[str, Any]]) -> dict[str, Any]:
    """The pod cycles as one phase (see `Cost.save_cycle`); one cycle is itself."""
    # A cycle cut short (Ctrl-C, a hollow node that died) counts only if none is whole.
    cycles = [c for c in cycles if not c.get("partial")] or cycles
    if len(cycles) == 1:
        return cycles[0]
    last = cycles[-1]
    combined: dict[str, Any] = {
        "cycles": len(cycles), "seconds": sum(c["seconds"] for c in cycles),
        "pods": {side: sum(c["pods"][side] for c in cycles) for side in last["pods"]},
        "spread_pods_to_nodes": last["spread_pods_to_nodes"],
        "running_after_seconds": last["running_after_seconds"],
        "gone_after_seconds": last["gone_after_seconds"],
    }
    if any(c.get("partial") for c in cycles):
        combined["partial"] = True
    for group in POD_GROUPS:
        rows = [c[group] for c in cycles]
        net = [r["cpu_seconds_per_pod"] for r in rows]
        combined[group] = {
            "cpu_seconds": sum(r["cpu_seconds"] for r in rows),
            "cpu_seconds_per_pod_raw": statistics.median(r["cpu_seconds_per_pod_raw"]
                                                         for r in rows),
            "cpu_seconds_per_pod": None if None in net else statistics.median(net),
            "peak_rss_mib_per_node": max(r["peak_rss_mib_per_node"] for r in rows),
            "rss_growth_mib_per_node": max(r["rss_growth_mib_per_node"] for r in rows),
        }
    return combined


def cycle_ratio(cycle: dict[str, Any]) -> float | None:
    """Go / pykubemark CPU per pod (net of idle) of one cycle."""
    go = [cycle[g]["cpu_seconds_per_pod"] for g in ("go-kubelet", "go-proxy")]
    py = cycle["py-pods"]["cpu_seconds_per_pod"]
    return round(sum(go) / py, 2) if None not in go and py else None


def per_pod_ratios(data: dict[str, Any]) -> list[float]:
    """Go / pykubemark CPU per pod (net of idle) of each whole pod cycle."""
    cycles = data.get("phases", {}).get("pod_cycles", [])
    return [r for c in cycles if not c.get("partial") and (r := cycle_ratio(c)) is not None]


# -- output -------------------------------------------------------------------------------
def summary(data: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Go (kubelet + proxy) and pykubemark per node / per pod, from the raw phases: per
    node from the idle fleet, per pod from the pod fleet."""
    phases = data.get("phases", {})
    rows: dict[str, dict[str, float | None]] = {}

    def both(metric: str, phase: str, py_group: str = "py") -> dict[str, float | None]:
        got = phases.get(phase)
        if not got or metric not in got.get(py_group, {}):
            return {"go": None, "py": None}
        go = [got[group].get(metric) for group in ("go-kubelet", "go-proxy")]
        # A figure that needs a phase that was skipped (the idle one, for per-pod CPU
        # net of idle) is None on a side, never a crash of the whole summary.
        return {"go": None if None in go else sum(go),  # type: ignore[arg-type]
                "py": got[py_group][metric]}

    rows["CPU-s per node, startup"] = both("cpu_seconds_per_node", "startup")
    rows["RSS MiB per node, idle"] = both("rss_mib_per_node", "idle")
    rows["PSS MiB per node, idle"] = both("pss_mib_per_node", "idle")
    rows["CPU millicores per node, idle"] = both("millicores_per_node", "idle")
    rows["CPU-s per pod (net of idle)"] = both("cpu_seconds_per_pod", "pod_cycle", "py-pods")
    rows["CPU-s per pod (raw)"] = both("cpu_seconds_per_pod_raw", "pod_cycle", "py-pods")
    rows["RSS MiB added per node, pod cycle"] = both("rss_growth_mib_per_node", "pod_cycle",
                                                     "py-pods")
    millicores = rows["CPU millicores per node, idle"]
    rows["nodes per core, idle"] = {s: 1000 / v if v else None for s, v in millicores.items()}
    rss = rows["RSS MiB per node, idle"]
    rows["nodes per GiB, idle RSS"] = {s: 1024 / v if v else None for s, v in rss.items()}
    return rows


def fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def print_results(data: dict[str, Any]) -> None:
    params = data["params"]
    phases = data.get("phases", {})
    table = Table(title=f"cost per hollow node: Go kubemark ({params['go_nodes']} nodes) vs "
                  f"pykubemark ({params['py_nodes']} idle nodes in {params['py_processes']} "
                  f"process(es); pods on {params['cycle_nodes']} nodes of each side)",
                  title_justify="left")
    for column in ("metric", "Go", "pykubemark", "Go / py"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for metric, values in summary(data).items():
        go, py = values["go"], values["py"]
        ratio = go / py if go is not None and py else None
        table.add_row(metric, fmt(go), fmt(py), fmt(ratio))
    out.print(table)
    detail = Table(title="by process group", title_justify="left")
    for column in ("phase", "group", "nodes", "CPU-s", "per node / per pod",
                   "RSS MiB / node"):
        detail.add_column(column, justify="left" if column in ("phase", "group") else "right")
    nodes = {"py": params["py_nodes"], "py-pods": params["cycle_nodes"]}
    for group in GROUPS:
        count = str(nodes.get(group, params["go_nodes"]))
        if idle := phases.get("idle"):
            g = idle[group]
            label = "idle" + (" (partial)" if idle.get("partial") else "")
            detail.add_row(label, group, count, fmt(g["cpu_seconds"]),
                           f"{fmt(g['millicores_per_node'])} mc", fmt(g["rss_mib_per_node"]))
        if (cycle := phases.get("pod_cycle")) and group in cycle:
            g = cycle[group]
            label = "pod cycle" + (" (partial)" if cycle.get("partial") else "")
            detail.add_row(label, group, count, fmt(g["cpu_seconds"]),
                           f"{fmt(g['cpu_seconds_per_pod'])} s/pod",
                           fmt(g["peak_rss_mib_per_node"]))
    out.print(detail)
    if cycle := phases.get("pod_cycle"):
        out.print(f"pod cycle: {cycle['seconds']:.0f}s, pods {cycle['pods']}, spread "
                  f"{{pods on a node: nodes}} {cycle['spread_pods_to_nodes']}")
    if ratios := per_pod_ratios(data):
        out.print(f"CPU per pod, Go / pykubemark, cycle by cycle: {ratios} (median "
                  f"{statistics.median(ratios):.2f})")


# -- command ------------------------------------------------------------------------------
@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--go-nodes", type=click.IntRange(1, 200), default=10, show_default=True,
              help="Go hollow nodes (~115 MiB each); all of them carry pods.")
@click.option("--py-nodes", type=click.IntRange(1, 100_000), default=500, show_default=True,
              help="pykubemark's idle fleet: what a node costs at scale.")
@click.option("--py-processes", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes for the idle fleet (its --processes).")
@click.option("--cycle-nodes", type=click.IntRange(1), default=None,
              help="Nodes per side that carry pods: the first of the Go nodes, and "
              "pykubemark's pod fleet (default and at most: --go-nodes).")
@click.option("--idle-minutes", type=click.FloatRange(0), default=3.0, show_default=True,
              help="Length of the idle window (0: skip it, and per-pod CPU net of idle).")
@click.option("--startup-seconds", type=click.FloatRange(0), default=90.0, show_default=True,
              help="Startup window, from launch; the idle window starts after it.")
@click.option("--pods-per-node", type=click.IntRange(0, 110), default=10, show_default=True,
              help="Pods per node that carries pods (0: skip the pod cycles).")
@click.option("--cycles", type=click.IntRange(1), default=3, show_default=True,
              help="Pod cycles; CPU per pod is the median of theirs.")
@click.option("--hold-seconds", type=click.FloatRange(0), default=30.0, show_default=True)
@click.option("--settle-seconds", type=click.FloatRange(0), default=10.0, show_default=True)
@click.option("--sample-seconds", type=click.FloatRange(0.5), default=5.0, show_default=True,
              help="How often RSS is sampled.")
@click.option("--name", default="bench-cost", show_default=True,
              help="Cluster name (must not be running).")
@results_dir_option()
@click.option("--bin-dir", type=click.Path(path_type=Path), default=None)
@click.option("--go-start-interval", type=click.FloatRange(0), default=0.5, show_default=True)
@click.option("--py-arg", "py_args", multiple=True,
              help="Extra argument for both `pykubemark hollow` fleets, e.g. "
              "--py-arg=--content-type=json.")
def main(go_nodes: int, py_nodes: int, py_processes: int, cycle_nodes: int | None,
         idle_minutes: float, startup_seconds: float, pods_per_node: int, cycles: int,
         hold_seconds: float, settle_seconds: float, sample_seconds: float, name: str,
         results_dir: Path, bin_dir: Path | None, go_start_interval: float,
         py_args: tuple[str, ...]) -> None:
    """Measure RSS and CPU per hollow node: Go kubemark vs pykubemark, side by side."""
    cycle = min(cycle_nodes or go_nodes, go_nodes)

    def body() -> None:
        results = ResultFile("cost", results_dir)
        results.data.update({
            "benchmark": "cost", "status": "running", "started": iso(utcnow()),
            "params": {"go_nodes": go_nodes, "py_nodes": py_nodes,
                       "py_processes": py_processes, "idle_minutes": idle_minutes,
                       "startup_seconds": startup_seconds, "pods_per_node": pods_per_node,
                       "cycle_nodes": cycle, "cycles": cycles, "hold_seconds": hold_seconds,
                       "settle_seconds": settle_seconds, "sample_seconds": sample_seconds,
                       "py_args": list(py_args)},
            "layout": "per node: the idle fleet (py); per pod: the pod fleet (py-pods), "
                      "its own idle CPU subtracted",
            "environment": environment(),
        })
        results.save()
        console.print(f"results: {results.path}")
        cluster = start_cluster(name, bin_dir=bin_dir, kubemark=True)
        try:
            with GoFleet.for_cluster(cluster, go_nodes, start_interval=go_start_interval) \
                    as fleet:
                bench = Cost(cluster, fleet, go_nodes, py_nodes, cycle, results)
                try:
                    with recording_status(results.data):
                        bench.run(startup_seconds=startup_seconds, idle_minutes=idle_minutes,
                                  pods_per_node=pods_per_node, hold=hold_seconds,
                                  settle=settle_seconds, sample_seconds=sample_seconds,
                                  py_processes=py_processes, py_args=py_args, cycles=cycles)
                finally:
                    with shielded():
                        bench.save_partial()
                        results.data["summary"] = summary(results.data)
                        results.data["per_pod_ratio_by_cycle"] = per_pod_ratios(results.data)
                        results.data["finished"] = iso(utcnow())
                        results.save()
                        print_results(results.data)
                        console.print(f"results: {results.path}")
        finally:
            tear_down(cluster, name)

    run_cli(body)


if __name__ == "__main__":
    main()
