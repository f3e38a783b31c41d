"""Cost of an idle real node (`up --real-nodes`): memory and CPU of each node's processes.

A cluster with ``--nodes`` real nodes starts; with ``--pods-per-node`` each node also runs
that many busybox pods (``sleep``), spread evenly. Once everything is Ready and has idled
``--settle`` seconds, the processes of each node are found by its cgroup
(cluster/cgroups.py) — kubelet, containerd, its shims, kube-proxy, and the containers —
and for ``--idle`` seconds psutil samples their RSS and PSS every 10 s (PSS shares the
pages that N kubelets or N containerds map from one binary among them: the figure to
size N by); CPU is their user+system time over the window. The cluster's apiserver
forwarder, shared by all nodes, is shown apart. Results go to
``results/real-nodes-<timestamp>.json``; the cluster is always torn down, also on Ctrl-C.

    .venv/bin/python benchmarks/real_nodes.py                      # 3 nodes, no pods
    .venv/bin/python benchmarks/real_nodes.py --pods-per-node 5
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any

import click
import psutil
from benchlib import (
    Api,
    ResultFile,
    console,
    environment,
    recording_status,
    results_dir_option,
    run_cli,
    shielded,
    sleep_checked,
    tear_down,
    wait_namespace,
)
from rich.table import Table

from pykubemark.cluster import cgroups
from pykubemark.cluster.control_plane import LocalCluster, UpOptions
from pykubemark.cluster.real_node import BUSYBOX_IMAGE, FORWARDER, start_real_nodes
from pykubemark.cluster.state import RealNode
from pykubemark.errors import UserError
from pykubemark.load import templates
from pykubemark.provision import ensure_binaries

MIB = 1 << 20
COMPONENTS = ("kubelet", "containerd", "shims", "kube-proxy", "containers")


def _component(proc: psutil.Process, agent: bool) -> str:
    if not agent:
        return "containers"
    name = proc.name()
    if name.startswith("containerd-shim"):
        return "shims"
    return name if name in COMPONENTS else "containerd"


def node_processes(node: RealNode) -> list[tuple[str, psutil.Process]]:
    assert node.cgroup is not None
    agents = cgroups.pids(f"{node.cgroup}/agents")
    found = []
    for pid in sorted(cgroups.pids(node.cgroup)):
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            found.append((_component(proc, pid in agents), proc))
    return found


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def _pods(cluster: LocalCluster, nodes: int, per_node: int, timeout: float = 600.0) -> None:
    """``per_node`` busybox pods sleeping on every node: the load generator's Deployment,
    spread evenly, with the image every real node has loaded."""
    body = templates.workload("Deployment", "idle", replicas=nodes * per_node,
                              labels={"app": "idle"}, image=BUSYBOX_IMAGE, config=False,
                              node_selector={})
    spec = body["spec"]["template"]["spec"]
    spec["containers"][0].update(imagePullPolicy="Never", command=["sleep", "1000000"])
    spec["topologySpreadConstraints"] = [{
        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": body["spec"]["selector"]["matchLabels"]}}]
    wait_namespace(cluster, "default")
    api = Api(cluster)
    api.request("POST", templates.collection("Deployment", "default"), body)
    deadline = time.monotonic() + timeout
    while True:
        pods = api.get(templates.collection("Pod", "default"), labelSelector="app=idle")
        running = sum(p.get("status", {}).get("phase") == "Running" for p in pods["items"])
        if running >= nodes * per_node:
            return
        if time.monotonic() > deadline:
            raise UserError(f"the idle pods did not all run: {running} of "
                            f"{nodes * per_node} Running after {timeout:.0f}s")
        time.sleep(1.0)


@click.command()
@click.option("--name", default="rn-bench", show_default=True, help="Cluster name.")
@click.option("--nodes", type=click.IntRange(1, 250), default=3, show_default=True)
@click.option("--pods-per-node", type=click.IntRange(0, 100), default=0, show_default=True)
@click.option("--settle", type=click.FloatRange(0), default=30, show_default=True,
              help="Seconds to idle before measuring.")
@click.option("--idle", type=click.FloatRange(10), default=120, show_default=True,
              help="Seconds measured.")
@results_dir_option()
def main(name: str, nodes: int, pods_per_node: int, settle: float, idle: float,
         results_dir) -> None:
    def body() -> None:
        result = ResultFile("real-nodes", results_dir)
        result.data.update({"environment": environment(), "nodes": nodes,
                            "pods_per_node": pods_per_node, "settle_s": settle,
                            "idle_s": idle})
        binaries = ensure_binaries(None, allow_build=False)
        with console.status(f"starting cluster '{name}' with {nodes} real nodes"):
            cluster = LocalCluster.up(UpOptions(name=name), binaries, extra=lambda c: (
                start_real_nodes(c, binaries, nodes)))
        try:
            with recording_status(result.data):
                if pods_per_node:
                    with console.status(f"{pods_per_node} pods per node"):
                        _pods(cluster, nodes, pods_per_node)
                sleep_checked(settle, lambda: None, "settling")
                result.data["per_node"] = measure(cluster, idle)
            show(result.data["per_node"], idle)
        finally:
            with shielded():
                result.save()
                console.print(f"results: {result.path}")
            tear_down(cluster, name)

    run_cli(body)


def measure(cluster: LocalCluster, idle: float) -> dict[str, Any]:
    nodes = cluster.state.real_nodes
    forwarder = cluster.state.proc(FORWARDER)
    shared = forwarder.process() if forwarder else None
    start = {n.name: [(c, p, _cpu(p)) for c, p in node_processes(n)] for n in nodes}
    shared_cpu = _cpu(shared) if shared else 0.0
    rss: dict[str, dict[str, list[float]]] = {n.name: {c: [] for c in COMPONENTS}
                                              for n in nodes}
    pss: dict[str, dict[str, list[float]]] = {n.name: {c: [] for c in COMPONENTS}
                                              for n in nodes}
    shared_rss: list[float] = []
    began = time.monotonic()
    while (left := idle - (time.monotonic() - began)) > 0:
        for node in nodes:
            sums = dict.fromkeys(COMPONENTS, 0.0)
            proportional = dict.fromkeys(COMPONENTS, 0.0)
            for component, proc in node_processes(node):
                with contextlib.suppress(psutil.Error):
                    memory = proc.memory_full_info()
                    sums[component] += memory.rss / MIB
                    proportional[component] += memory.pss / MIB
            for component in COMPONENTS:
                rss[node.name][component].append(sums[component])
                pss[node.name][component].append(proportional[component])
        if shared:
            shared_rss.append(shared.memory_info().rss / MIB)
        time.sleep(min(10.0, left))
    elapsed = time.monotonic() - began
    per_node: dict[str, Any] = {}
    for node in nodes:
        cpu = dict.fromkeys(COMPONENTS, 0.0)
        for component, proc, before in start[node.name]:
            with contextlib.suppress(psutil.Error):
                cpu[component] += _cpu(proc) - before
        per_node[node.name] = {
            c: {"rss_mib": statistics.mean(rss[node.name][c]),
                "pss_mib": statistics.mean(pss[node.name][c]),
                "millicores": 1000 * cpu[c] / elapsed} for c in COMPONENTS}
    if shared:
        per_node["(forwarder, shared)"] = {"forwarder": {
            "rss_mib": statistics.mean(shared_rss), "pss_mib": statistics.mean(shared_rss),
            "millicores": 1000 * (_cpu(shared) - shared_cpu) / elapsed}}
    return per_node


def show(per_node: dict[str, Any], idle: float) -> None:
    table = Table(title=f"real nodes, idle {idle:.0f}s: mean RSS MiB / PSS MiB / millicores")
    table.add_column("node")
    for column in (*COMPONENTS, "node total"):
        table.add_column(column, justify="right")
    for node, parts in per_node.items():
        cells = [f"{parts[c]['rss_mib']:.1f} / {parts[c]['pss_mib']:.1f} / "
                 f"{parts[c]['millicores']:.1f}" if c in parts else "-" for c in COMPONENTS]
        total = {key: sum(p[key] for p in parts.values())
                 for key in ("rss_mib", "pss_mib", "millicores")}
        table.add_row(node, *cells, f"{total['rss_mib']:.1f} / {total['pss_mib']:.1f} / "
                      f"{total['millicores']:.1f}")
    console.print(table)


if __name__ == "__main__":
    main()
