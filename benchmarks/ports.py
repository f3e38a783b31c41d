"""Ports: will 10 000 hollow nodes on one host run out of ephemeral ports to one apiserver?

Every TCP connection from one host to one apiserver address (ip, port) takes one local
port from the ephemeral range (/proc/sys/net/ipv4/ip_local_port_range), so a fleet needs
``connections per node × nodes`` of them. This measures the per-node count from the
apiserver's side — ESTABLISHED connections on its serving port, above what the control
plane's own components hold before the fleet starts — with pykubemark's defaults
(``--transport h2``: one HTTP/2 connection per hollow kubelet and one per hollow proxy),
and, for comparison, ``--transport h1``. The 10 000-node figure is *derived*: the
measured per-node count times 10 000, against the range's size. Opening 20 000
connections for real would mean registering 10 000 Nodes on this shared 2-core machine.

Each variant runs on a fresh control plane, which is always torn down, also on Ctrl-C;
results go to ``results/ports-<timestamp>.json`` after each variant.

    .venv/bin/python benchmarks/ports.py --nodes 20 --idle-seconds 30
"""

from __future__ import annotations

import os
import time
import urllib.parse
from pathlib import Path
from typing import Any

import click
import psutil
from benchlib import (
    ResultFile,
    check_proc,
    console,
    environment,
    iso,
    out,
    results_dir_option,
    run_cli,
    sleep_checked,
    start_cluster,
    start_py_hollow,
    tear_down,
    utcnow,
    wait_ready,
)

from pykubemark.cluster.control_plane import LocalCluster
from pykubemark.errors import UserError

TARGET_NODES = 10_000
VARIANTS = {"h2": ("--transport", "h2"), "h1": ("--transport", "h1")}


def port_range() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def apiserver_connections(cluster: LocalCluster) -> int:
    """ESTABLISHED connections on the apiserver's serving port (the kernel's view)."""
    proc = cluster.state.proc("kube-apiserver")
    handle = proc.process() if proc is not None else None
    if handle is None:
        return 0
    port = urllib.parse.urlsplit(cluster.state.server).port
    return sum(1 for c in handle.net_connections(kind="tcp")
               if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED)


def measure(variant: str, nodes: int, idle: float, name: str,
            bin_dir: Path | None) -> dict[str, Any]:
    cluster = start_cluster(f"{name}-{variant}", audit=False, bin_dir=bin_dir)
    try:
        time.sleep(5)  # the control plane's own clients connect first
        baseline = apiserver_connections(cluster)
        proc = start_py_hollow(cluster, nodes, prefix="ports", extra=VARIANTS[variant])
        wait_ready(cluster, {"ports": nodes}, check=lambda: check_proc(proc),
                   timeout=180 + nodes)
        sleep_checked(idle, lambda: check_proc(proc), f"{variant}: idle")
        held = apiserver_connections(cluster)
    finally:
        tear_down(cluster, f"{name}-{variant}", say_stopped=False)
    per_node = (held - baseline) / nodes
    low, high = port_range()
    needed = per_node * TARGET_NODES
    return {"apiserver_established": held, "control_plane_baseline": baseline,
            "per_node": round(per_node, 3),
            f"derived_ports_for_{TARGET_NODES}_nodes": round(needed),
            "ephemeral_ports": high - low + 1,
            "derived_fits": needed <= high - low + 1,
            "derived_share_of_range": round(needed / (high - low + 1), 3)}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--nodes", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--idle-seconds", type=click.FloatRange(0), default=30.0, show_default=True,
              help="Idle time after all nodes are Ready, before counting.")
@click.option("--variants", default="h2,h1", show_default=True,
              help="Comma-separated transports to measure.")
@click.option("--name", default="bench-ports", show_default=True,
              help="Cluster name prefix (NAME-h2, NAME-h1; must not be running).")
@results_dir_option()
@click.option("--bin-dir", type=click.Path(path_type=Path), default=None)
def main(nodes: int, idle_seconds: float, variants: str, name: str, results_dir: Path,
         bin_dir: Path | None) -> None:
    """Connections per hollow node to one apiserver, and what 10 000 nodes would need."""

    def body() -> None:
        chosen = [v.strip() for v in variants.split(",") if v.strip()]
        if unknown := [v for v in chosen if v not in VARIANTS]:
            raise UserError(f"--variants: unknown {', '.join(unknown)} (one of h2, h1)")
        results = ResultFile("ports", results_dir)
        low, high = port_range()
        results.data.update({
            "benchmark": "ports", "status": "running", "started": iso(utcnow()),
            "params": {"nodes": nodes, "idle_seconds": idle_seconds, "variants": chosen},
            "ip_local_port_range": [low, high], "target_nodes": TARGET_NODES,
            "note": "per_node measured; the 10 000-node figures are derived from it",
            "environment": environment(), "variants": {},
        })
        results.save()
        for variant in chosen:
            results.data["variants"][variant] = got = measure(
                variant, nodes, idle_seconds, name, bin_dir)
            results.save()
            out.print(f"{variant}: {got}")
        results.data["status"] = "complete"
        results.data["finished"] = iso(utcnow())
        results.save()
        console.print(f"results: {results.path}")

    run_cli(body)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
