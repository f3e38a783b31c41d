"""Cost of the kubelet API per hollow node: the same fleet with and without it.

Two `pykubemark hollow` processes of ``--nodes`` lite nodes each run side by side against
one local cluster, one with ``--no-kubelet-api``. After they are Ready and have idled
``--settle`` seconds, psutil reads each process's RSS, PSS and open fds; the difference
per node is the server's cost (a listening socket, an asyncio server and an entry in the
address map per node). The kernel's share of a listening socket (the ``TCP`` slab
object, not in RSS) is read from /proc/slabinfo when it is readable.

Then every node of the API fleet is scraped once through the apiserver's node proxy
(``/stats/summary``, as metrics-server would), and the same figures are read again:
the apiserver keeps its TLS connections to kubelets open (idle) for a while, and those
cost the fleet too. Results go to ``results/kubelet-api-<timestamp>.json`` after every
step; the cluster is always torn down, also on Ctrl-C.

    .venv/bin/python benchmarks/kubelet_api.py --nodes 200
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
import psutil
from benchlib import (
    Api,
    ResultFile,
    check_proc,
    console,
    environment,
    iso,
    out,
    results_dir_option,
    run_cli,
    shielded,
    sleep_checked,
    start_cluster,
    utcnow,
    wait_ready,
)
from rich.table import Table

from pykubemark.cluster.control_plane import LocalCluster, python_argv
from pykubemark.cluster.state import Proc

KIB = 1 << 10


def start_fleet(cluster: LocalCluster, nodes: int, prefix: str, *extra: str) -> Proc:
    """Lite nodes with the fleet's shared identity: the lightest fleet, so the server's
    share of it shows."""
    argv = python_argv(
        "hollow", "--kubeconfig", str(cluster.kubeconfig_for("hollow-kubelet")),
        "--proxy-kubeconfig", str(cluster.kubeconfig_for("hollow-proxy")),
        "--node-credentials", "shared", "--fidelity", "lite",
        "--nodes", str(nodes), "--prefix", prefix, *extra)
    return cluster.add_process(f"hollow-{prefix}", argv)


def read(proc: Proc) -> dict[str, Any]:
    process = psutil.Process(proc.pid)
    memory = process.memory_full_info()
    connections = process.net_connections(kind="tcp")
    return {"rss_kib": memory.rss // KIB, "pss_kib": memory.pss // KIB,
            "fds": process.num_fds(),
            "listening": sum(c.status == psutil.CONN_LISTEN for c in connections),
            "established": sum(c.status == psutil.CONN_ESTABLISHED for c in connections)}


def tcp_slab_bytes() -> int | None:
    """Kernel bytes per TCP socket (the ``TCP`` slab object), if /proc/slabinfo opens."""
    try:
        with open("/proc/slabinfo") as handle:
            for line in handle:
                fields = line.split()
                if fields and fields[0] == "TCP":
                    return int(fields[3])
    except OSError:
        return None
    return None


def per_node(on: dict[str, Any], off: dict[str, Any], nodes: int) -> dict[str, float]:
    return {f"{key}_per_node": round((on[key] - off[key]) / nodes, 2)
            for key in ("rss_kib", "pss_kib", "fds")}


@click.command()
@click.option("--nodes", type=click.IntRange(1, 20_000), default=200, show_default=True)
@click.option("--settle", type=click.FloatRange(0), default=60.0, show_default=True,
              help="Seconds idle after all nodes are Ready, before reading memory.")
@click.option("--name", default="bench-kubelet-api", show_default=True)
@results_dir_option()
def main(nodes: int, settle: float, name: str, results_dir: Path) -> None:
    """Memory and fds per node of the kubelet API, with against without."""
    run_cli(lambda: measure(nodes, settle, name, results_dir))


def measure(nodes: int, settle: float, name: str, results_dir: Path) -> None:
    result = ResultFile("kubelet-api", results_dir)
    result.data = {"benchmark": "kubelet_api", "nodes": nodes, "fidelity": "lite",
                   "settle_seconds": settle, "environment": environment(),
                   "started": iso(utcnow())}
    cluster = start_cluster(name, audit=False)
    try:
        on = start_fleet(cluster, nodes, "on")
        off = start_fleet(cluster, nodes, "off", "--no-kubelet-api")

        def check() -> None:
            check_proc(on)
            check_proc(off)

        result.data["ready_seconds"] = wait_ready(cluster, {"on": nodes, "off": nodes},
                                                  check=check, timeout=120 + nodes)
        sleep_checked(settle, check, "idling")
        idle = {"on": read(on), "off": read(off)}
        result.data["idle"] = {**idle, **per_node(idle["on"], idle["off"], nodes)}
        result.data["kernel_bytes_per_tcp_socket"] = tcp_slab_bytes()
        result.save()

        api = Api(cluster)
        started = time.monotonic()
        answered = 0
        for index in range(nodes):
            summary = api.get(f"/api/v1/nodes/on-{index}/proxy/stats/summary")
            answered += summary["node"]["nodeName"] == f"on-{index}"
        took = time.monotonic() - started
        scraped = {"on": read(on), "off": read(off)}
        result.data["after_one_scrape_each"] = {
            **scraped, **per_node(scraped["on"], scraped["off"], nodes),
            "answered": answered, "seconds": round(took, 2)}
        result.data["finished"] = iso(utcnow())
        result.save()
        show(result.data)
        console.print(f"results: {result.path}")
    finally:
        with shielded():
            result.save()
        with shielded():
            cluster.down()


def show(data: dict[str, Any]) -> None:
    table = Table(title=f"kubelet API cost, {data['nodes']} lite nodes per fleet")
    for column in ("", "RSS KiB", "PSS KiB", "fds", "listening", "established"):
        table.add_column(column)
    for phase in ("idle", "after_one_scrape_each"):
        for side in ("on", "off"):
            row = data[phase][side]
            table.add_row(f"{phase} / API {side}", *(str(row[k]) for k in (
                "rss_kib", "pss_kib", "fds", "listening", "established")))
        phase_data = data[phase]
        table.add_row(f"{phase}: per node", str(phase_data["rss_kib_per_node"]),
                      str(phase_data["pss_kib_per_node"]), str(phase_data["fds_per_node"]),
                      "", "")
    out.print(table)


if __name__ == "__main__":
    main()
