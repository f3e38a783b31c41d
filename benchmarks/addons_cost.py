"""Cost of the addons on a hollow fleet: CPU per hollow node per metrics-server scrape,
and the addons' requests to the apiserver per node.

One local cluster of ``--nodes`` hollow nodes (`up --addons metrics-server,coredns
--audit`) with ``--pods-per-node`` running pods each. After the fleet is Ready and
metrics-server has scraped it, two windows of ``--seconds`` each:

1. metrics-server running: it scrapes every node's /metrics/resource each 15 s;
2. metrics-server stopped: the same fleet, nobody scraping.

The fleet's CPU (its processes, children included) in each window, from psutil; the
difference over the scrapes made in window 1 is the cost of one scrape per node. The
addons' own CPU in window 1, and their requests to the apiserver in it (audit log lines
of users system:metrics-server and system:coredns) per node and minute. Results go to
``results/addons-cost-<timestamp>.json``; the cluster is always torn down.

    .venv/bin/python benchmarks/addons_cost.py --nodes 200 --seconds 120
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import click
import orjson
import psutil
from benchlib import (
    Api,
    ResultFile,
    console,
    deployment,
    environment,
    iso,
    out,
    results_dir_option,
    run_cli,
    shielded,
    utcnow,
)
from rich.table import Table

from pykubemark.cluster import lifecycle, processes
from pykubemark.cluster.addons.metrics_server import RESOLUTION
from pykubemark.cluster.control_plane import LocalCluster, UpOptions
from pykubemark.cluster.state import Proc
from pykubemark.engines import NodeOptions

USERS = ("system:metrics-server", "system:coredns")


def cpu_seconds(proc: Proc) -> float:
    """User + system CPU of a process and its children (the fleet's shards)."""
    root = psutil.Process(proc.pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def audit_requests(log: Path, since: float, until: float) -> Counter[str]:
    """Requests per user among USERS in [since, until) (seconds since the epoch)."""
    import datetime as dt

    counts: Counter[str] = Counter()
    with log.open("rb") as handle:
        for line in handle:
            if b"system:metrics-server" not in line and b"system:coredns" not in line:
                continue
            event = orjson.loads(line)
            user = event.get("user", {}).get("username", "")
            stamp = dt.datetime.fromisoformat(event["requestReceivedTimestamp"]
                                              .replace("Z", "+00:00")).timestamp()
            if user in USERS and since <= stamp < until:
                counts[f"{user} {event.get('verb')}"] += 1
    return counts


def scraped_nodes(api: Api) -> int:
    try:
        return len(api.get("/apis/metrics.k8s.io/v1beta1/nodes").get("items", []))
    except Exception:  # not available yet
        return 0


@click.command()
@click.option("--nodes", type=click.IntRange(1, 20_000), default=200, show_default=True)
@click.option("--pods-per-node", type=click.IntRange(0, 100), default=5, show_default=True)
@click.option("--seconds", type=click.FloatRange(30), default=120.0, show_default=True,
              help="Length of each window.")
@click.option("--name", default="bench-addons", show_default=True)
@results_dir_option()
def main(nodes: int, pods_per_node: int, seconds: float, name: str, results_dir: Path) -> None:
    """Fleet CPU per node per scrape with metrics-server, and the addons' API requests."""
    run_cli(lambda: measure(nodes, pods_per_node, seconds, name, results_dir))


def measure(nodes: int, pods_per_node: int, seconds: float, name: str,
            results_dir: Path) -> None:
    result = ResultFile("addons-cost", results_dir)
    result.data = {"benchmark": "addons_cost", "nodes": nodes, "pods_per_node": pods_per_node,
                   "window_seconds": seconds, "metric_resolution": RESOLUTION,
                   "environment": environment(), "started": iso(utcnow())}
    started = lifecycle.up(lifecycle.UpRequest(
        cluster=UpOptions(name=name, audit=True, size=nodes),
        nodes=NodeOptions(count=nodes, register_rate=100.0),
        addons=("metrics-server", "coredns")))
    cluster: LocalCluster = started.cluster
    try:
        result.data["addons"] = dict(cluster.state.addons)
        api = Api(cluster)
        if pods_per_node:
            api.request("POST", "/apis/apps/v1/namespaces/default/deployments",
                        deployment("cost", nodes * pods_per_node,
                                   [f"hollow-{i}" for i in range(nodes)]))
        deadline = time.monotonic() + 300 + nodes
        while scraped_nodes(api) < nodes:
            if time.monotonic() > deadline:
                raise SystemExit("metrics-server did not report every node in time")
            time.sleep(5)
        time.sleep(30)  # the pods running, a scrape or two with them
        hollow, server = cluster.state.proc("hollow"), cluster.state.proc("metrics-server")
        dns = cluster.state.proc("coredns")
        assert hollow is not None and server is not None and dns is not None
        audit = cluster.dir / "logs" / "audit.log"

        begin = time.time()
        fleet0, server0, dns0 = cpu_seconds(hollow), cpu_seconds(server), cpu_seconds(dns)
        time.sleep(seconds)
        fleet1, server1, dns1 = cpu_seconds(hollow), cpu_seconds(server), cpu_seconds(dns)
        end = time.time()
        requests = audit_requests(audit, begin, end)
        processes.stop([server])
        time.sleep(20)  # a scrape under way finishes
        fleet2 = cpu_seconds(hollow)
        time.sleep(seconds)
        fleet3 = cpu_seconds(hollow)

        scrapes = seconds / 15.0
        with_ms, without = fleet1 - fleet0, fleet3 - fleet2
        per_scrape_ms = (with_ms - without) / (nodes * scrapes) * 1000
        minutes = (end - begin) / 60
        result.data.update({
            "fleet_cpu_seconds": {"metrics_server_on": round(with_ms, 2),
                                  "metrics_server_off": round(without, 2)},
            "fleet_cpu_ms_per_node_per_scrape": round(per_scrape_ms, 3),
            "fleet_cpu_percent_of_a_core_per_1000_nodes": round(
                per_scrape_ms / 15.0 / 1000 * 100 * 1000, 2),
            "metrics_server_cpu_percent": round((server1 - server0) / seconds * 100, 2),
            "coredns_cpu_percent": round((dns1 - dns0) / seconds * 100, 2),
            "addon_requests": dict(requests),
            "addon_requests_per_node_per_minute": round(
                sum(requests.values()) / nodes / minutes, 4),
            "finished": iso(utcnow()),
        })
        result.save()
        show(result.data)
        console.print(f"results: {result.path}")
    finally:
        with shielded():
            result.save()
        with shielded():
            cluster.down()


def show(data: dict[str, Any]) -> None:
    table = Table(title=f"addons' cost, {data['nodes']} hollow nodes, "
                  f"{data['pods_per_node']} pods each, {data['window_seconds']:.0f} s windows")
    table.add_column("figure")
    table.add_column("value")
    for key in ("fleet_cpu_seconds", "fleet_cpu_ms_per_node_per_scrape",
                "fleet_cpu_percent_of_a_core_per_1000_nodes", "metrics_server_cpu_percent",
                "coredns_cpu_percent", "addon_requests", "addon_requests_per_node_per_minute"):
        table.add_row(key, str(data.get(key)))
    out.print(table)


if __name__ == "__main__":
    main()
