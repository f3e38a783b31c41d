"""What a real node and a hollow node cost the control plane, paired so that this
machine's drift cancels.

`fidelity.py` runs each side on a control plane of its own, one after the other. Its
request counts are exact, but its CPU figures are unpaired: this machine's speed moves
between runs by more than the ±10 % they are judged by, and an idle node's own cost is a
few percent of what the control plane spends on itself, so a per-node figure net of a
baseline measured minutes earlier is mostly that drift. Here both fleets — N real nodes
(the release's kubelet, containerd and kube-proxy) and N pykubemark hollow nodes (with
the real nodes' runtime profile) — join one control plane, and are compared within
rounds:

* **idle**: three windows in an order that rotates from round to round — both fleets
  running, the real nodes' kubelets and kube-proxies paused (SIGSTOP), the hollow fleet
  paused. A fleet's idle cost is what kube-apiserver and etcd spent in the window where
  both ran less what they spent in the one where it was paused. A pause is shorter than
  a lease's duration, so no node goes NotReady; the seconds after a resume (the paused
  side's late renewals) are not measured. What the apiserver spends on a paused fleet's
  open watches is in both windows, so it is not part of the figure.
* **pods**: a pod cycle on one fleet, then on the other (the order alternating): a
  Deployment of ``--pods-per-node`` on each of its nodes, all Running, scaled to 0, all
  gone. A fleet's cost per pod is what the cycle spent less the round's both-running
  rate over the cycle's length.

Per figure, the hollow/real ratio of the means over the rounds, with a bootstrap
interval (scipy, resampling rounds, paired). Results go to
``results/paired-cpu-<release>-<timestamp>.json`` after every round; the cluster is
always torn down, and a paused fleet resumed, also on Ctrl-C.

    .venv/bin/python benchmarks/paired_cpu.py                 # newest release, 10 nodes each
"""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy
import psutil
from benchlib import (
    Api,
    PodCycle,
    ResultFile,
    console,
    environment,
    hollow_runtime_option,
    live_tree,
    recording_status,
    results_dir_option,
    run_cli,
    runtime_name,
    shielded,
    sleep_checked,
    tear_down,
    wait_ready,
)
from scipy import stats

from pykubemark.cluster.control_plane import LocalCluster, UpOptions
from pykubemark.cluster.hollow import HollowArgs, start_hollow
from pykubemark.errors import UserError
from pykubemark.measure.resources import cpu_seconds
from pykubemark.provision import ensure_binaries
from pykubemark.provision.releases import default_release, parse_release

FLEETS = ("real", "hollow")
CONTROL_PLANE = ("kube-apiserver", "etcd")
#: The windows of an idle round: nobody paused, or that fleet.
WINDOWS = ("both", "real", "hollow")


@dataclass
class Fleets:
    """The two fleets' processes on one cluster, and pausing them."""

    cluster: LocalCluster
    real: list[str]
    hollow: list[str]

    def names(self, fleet: str) -> list[str]:
        """The fleet's node names."""
        return self.real if fleet == "real" else self.hollow

    def processes(self, fleet: str) -> list[psutil.Process]:
        if fleet == "hollow":
            names = ["hollow"]
        else:
            names = [p.name for p in self.cluster.state.processes
                     if p.name.endswith(("-kubelet", "-kube-proxy"))]
        return [p for name in names for p in running_tree(self.cluster, name)]

    @contextlib.contextmanager
    def paused(self, fleet: str | None) -> Iterator[None]:
        """``fleet``'s processes stopped for the block (none: nothing paused); resumed
        however the block ends."""
        procs = self.processes(fleet) if fleet else []
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            with shielded():
                for proc in procs:
                    with contextlib.suppress(psutil.Error):
                        proc.send_signal(signal.SIGCONT)


def running_tree(cluster: LocalCluster, name: str) -> list[psutil.Process]:
    """The cluster's process ``name`` and its descendants; an error once it is gone (a
    figure without it would be wrong, not smaller)."""
    proc = cluster.state.proc(name)
    tree = live_tree(proc)
    if not tree:
        raise UserError(f"{name} is not running (log: {proc.log if proc else '-'})")
    return tree


def control_plane_cpu(cluster: LocalCluster) -> float:
    """CPU seconds kube-apiserver and etcd have spent so far."""
    return sum(cpu_seconds(running_tree(cluster, name)) for name in CONTROL_PLANE)


def measure(cluster: LocalCluster, body: Callable[[], None]) -> tuple[float, float]:
    """(control-plane CPU seconds, wall seconds) spent while ``body`` runs."""
    cpu, wall = control_plane_cpu(cluster), time.monotonic()
    body()
    return control_plane_cpu(cluster) - cpu, time.monotonic() - wall


def ratio_interval(real: list[float], hollow: list[float],
                   confidence: float) -> dict[str, float | None]:
    """hollow/real of the means over rounds, with a paired bootstrap interval (BCa)."""
    estimate = float(numpy.mean(hollow) / numpy.mean(real)) if numpy.mean(real) else None
    low = high = None
    if len(real) >= 3 and estimate is not None:
        result = stats.bootstrap(
            (numpy.array(real), numpy.array(hollow)),
            lambda r, h, axis=-1: numpy.mean(h, axis=axis) / numpy.mean(r, axis=axis),
            paired=True, vectorized=True, confidence_level=confidence, n_resamples=9999,
            method="BCa", random_state=numpy.random.default_rng(0))
        low = float(result.confidence_interval.low)
        high = float(result.confidence_interval.high)
    return {"ratio": estimate, "low": low, "high": high}


def summarize(rounds: list[dict[str, Any]], nodes: int, confidence: float) -> dict[str, Any]:
    """Per figure, each fleet's mean over the rounds and hollow/real with its interval."""
    figures: dict[str, dict[str, list[float]]] = {}
    for r in rounds:
        if "idle" in r:
            for fleet in FLEETS:
                figures.setdefault("idle: control-plane CPU ms per node-minute", {}).setdefault(
                    fleet, []).append(r["idle"][f"{fleet}_ms_per_node_minute"])
        if "pods" in r and all(f in r["pods"] for f in FLEETS):
            for fleet in FLEETS:
                figures.setdefault("pod cycle: control-plane CPU ms per pod", {}).setdefault(
                    fleet, []).append(r["pods"][fleet]["ms_per_pod"])
    out = {}
    for name, values in figures.items():
        out[name] = {"mean": {f: float(numpy.mean(v)) for f, v in values.items()},
                     "rounds": len(values["real"]),
                     "hollow/real": ratio_interval(values["real"], values["hollow"],
                                                   confidence)}
    return {"nodes_per_fleet": nodes, "confidence": confidence, "figures": out}


def idle_round(fleets: Fleets, index: int, window: float, settle: float) -> dict[str, Any]:
    """Three windows, the order rotated by the round's index."""
    order = WINDOWS[index % 3:] + WINDOWS[:index % 3]
    spent: dict[str, tuple[float, float]] = {}
    for paused in order:
        sleep_checked(settle, lambda: None, f"round {index + 1}: settling")
        with fleets.paused(None if paused == "both" else paused):
            spent[paused] = measure(fleets.cluster, lambda p=paused: sleep_checked(
                window, lambda: None, f"round {index + 1}: "
                + ("both fleets running" if p == "both" else f"{p} nodes paused")))
    rate = {k: cpu / wall for k, (cpu, wall) in spent.items()}  # CPU-s per second
    out: dict[str, Any] = {"order": list(order),
                           "cpu_seconds_per_second": rate}
    for fleet in FLEETS:
        out[f"{fleet}_ms_per_node_minute"] = \
            (rate["both"] - rate[fleet]) * 60_000 / len(fleets.names(fleet))
    return out


def pod_round(fleets: Fleets, index: int, both_rate: float, pods_per_node: int,
              settle: float, image: str) -> dict[str, Any]:
    order = FLEETS if index % 2 == 0 else FLEETS[::-1]
    out: dict[str, Any] = {"order": list(order)}
    for fleet in order:
        cycle = PodCycle(fleets.cluster, {fleet: fleets.names(fleet)},
                         pods_per_node=pods_per_node,
                         hold=settle, settle=settle, namespace="paired", image=image)
        cpu, wall = measure(fleets.cluster, cycle.run)
        pods = cycle.pods(fleet)
        out[fleet] = {"cpu_seconds": cpu, "seconds": wall, "pods": pods,
                      "running_after": cycle.running_after.get(fleet),
                      "gone_after": cycle.gone_after.get(fleet),
                      "ms_per_pod": (cpu - both_rate * wall) * 1000 / pods}
    return out


def not_ready_since(cluster: LocalCluster, since: float) -> list[str]:
    """Nodes whose Ready condition changed after ``since`` (a wall-clock time)."""
    changed = []
    for node in Api(cluster).get("/api/v1/nodes")["items"]:
        for c in node.get("status", {}).get("conditions", []):
            if c["type"] == "Ready":
                when = dt.datetime.fromisoformat(c["lastTransitionTime"].replace("Z", "+00:00"))
                if when.timestamp() > since or c["status"] != "True":
                    changed.append(node["metadata"]["name"])
    return changed


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--release", default=None, metavar="X.Y.Z",
              help="Kubernetes release (default: pykubemark's default; built if needed).")
@click.option("--nodes", type=click.IntRange(1, 50), default=10, show_default=True,
              help="Nodes of each fleet.")
@click.option("--rounds", type=click.IntRange(1), default=10, show_default=True)
@click.option("--window-seconds", type=click.FloatRange(5, 25), default=20.0,
              show_default=True, help="Each idle window; a pause lasts as long (a lease "
              "lasts 40 s).")
@click.option("--settle-seconds", type=click.FloatRange(0), default=5.0, show_default=True)
@click.option("--pods-per-node", type=click.IntRange(0, 110), default=5, show_default=True,
              help="Each round's pod cycle per fleet (0: idle rounds only).")
@click.option("--confidence", type=click.FloatRange(0.5, 0.999), default=0.95,
              show_default=True)
@click.option("--name", default="paired-cpu", show_default=True, help="Cluster name.")
@hollow_runtime_option()
@results_dir_option()
def main(release: str | None, nodes: int, rounds: int, window_seconds: float,
         settle_seconds: float, pods_per_node: int, confidence: float, name: str,
         runtime: Path | None, results_dir: Path) -> None:
    """Real and hollow nodes on one control plane; their CPU cost, round by round."""
    from pykubemark.cluster.real_node import PAUSE_IMAGE, start_real_nodes

    wanted = parse_release(release) if release else default_release()
    binaries = ensure_binaries(release=wanted)
    result = ResultFile(f"paired-cpu-{wanted}", results_dir)
    data = result.data
    data.update({"what": "kube-apiserver's and etcd's CPU per real and per hollow node, "
                         "idle and per pod, paired within rounds on one control plane",
                 "release": str(wanted),
                 "schedule": {"nodes": nodes, "rounds": rounds,
                              "window_seconds": window_seconds,
                              "settle_seconds": settle_seconds,
                              "pods_per_node": pods_per_node,
                              "hollow_runtime": runtime_name(runtime)},
                 "environment": environment(), "rounds": []})
    options = UpOptions(name=name, size=2 * nodes)
    with console.status(f"starting cluster '{name}'"):
        cluster = LocalCluster.up(options, binaries)
    try:
        with recording_status(data):
            with console.status("starting nodes") as status:
                real = start_real_nodes(cluster, binaries, nodes, progress=status.update)
                start_hollow(cluster, HollowArgs(nodes=nodes, prefix="py", profile=runtime),
                             status.update)
            fleets = Fleets(cluster, real, [f"py-{i}" for i in range(nodes)])
            wait_ready(cluster, {"py": nodes}, check=lambda: None, timeout=300)
            sleep_checked(30, lambda: None, "settling")
            began = time.time()
            for index in range(rounds):
                entry: dict[str, Any] = {"idle": idle_round(fleets, index, window_seconds,
                                                            settle_seconds)}
                data["rounds"].append(entry)
                if pods_per_node:
                    both = entry["idle"]["cpu_seconds_per_second"]["both"]
                    entry["pods"] = pod_round(fleets, index, both, pods_per_node,
                                              settle_seconds, PAUSE_IMAGE)
                data["summary"] = summarize(data["rounds"], nodes, confidence)
                result.save()
                console.print(f"round {index + 1}/{rounds}: " + "; ".join(
                    f"{k}: {v['hollow/real']['ratio']:.2f}" for k, v in
                    data["summary"]["figures"].items() if v["hollow/real"]["ratio"]))
            data["nodes_ready_changed"] = not_ready_since(cluster, began)
    finally:
        result.save()
        tear_down(cluster, name)
    for key, figure in data.get("summary", {}).get("figures", {}).items():
        r = figure["hollow/real"]
        console.print(f"{key}: real {figure['mean']['real']:.1f}, hollow "
                      f"{figure['mean']['hollow']:.1f}, hollow/real {r['ratio']:.2f} "
                      f"[{r['low'] or float('nan'):.2f}, {r['high'] or float('nan'):.2f}]")
    console.print(f"results: {result.path}")


if __name__ == "__main__":
    run_cli(main)
