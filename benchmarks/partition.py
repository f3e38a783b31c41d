"""A network cut: a shard of hollow nodes loses the apiserver without a close, then gets
it back; judged from the apiserver's side and from the shard's own counters.

A dropped link (a switch, a firewall, a dead route) closes nothing: a kubelet learns
that its connection is dead only from client-go's HTTP/2 health check — a PING after
30 s without a frame, unanswered for 15 s (``HTTP2_READ_IDLE_TIMEOUT_SECONDS``,
``HTTP2_PING_TIMEOUT_SECONDS``) — and meanwhile its lease goes unrenewed. Here the shard
(`pykubemark hollow`) runs in a network namespace of this benchmark's own, where the
apiserver is at 127.0.0.1:PORT as on the host (cluster/forwarder.py relays it). The cut
is an iptables rule in that namespace dropping every TCP packet to and from that port;
the lift deletes it. Nothing else on the machine is touched.

Measured: when the shard found its connections dead (its /metrics,
``pykubemark_http2_connections_closed{why="ping"}``), when the control plane marked its
nodes NotReady, and after the lift how long until every lease was renewed and every node
was Ready again; that the pods on those nodes kept their UIDs, stayed Running and were
not restarted; and what reconnecting cost (the apiserver's LISTs, the shard's relists
and watch restarts).

    .venv/bin/python benchmarks/partition.py                    # 100 nodes, a 60 s cut
    .venv/bin/python benchmarks/partition.py --nodes 2 --cut 12 --read-idle 4 \\
        --ping-timeout 2                                         # small
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from benchlib import (
    check_proc,
    console,
    deployment,
    results_dir_option,
    run_cli,
    shielded,
    start_py_hollow,
    utcnow,
    wait_namespace,
    wait_ready,
)
from observe import (
    Counters,
    Counts,
    Leases,
    Nodes,
    admin_client,
    by_labels,
    grown,
    lists_by_resource,
    own_cluster,
    parse_counts,
    result_file,
)

from pykubemark.cluster import forwarder
from pykubemark.cluster import netns as namespaces
from pykubemark.cluster.control_plane import LocalCluster, wait_until
from pykubemark.cluster.state import Proc
from pykubemark.errors import UserError
from pykubemark.kube import Client

PREFIX = "cut"
NAMESPACE = "partition"
#: The shard's /metrics, inside its namespace (where nothing else listens).
METRICS_PORT = 10299


@contextlib.contextmanager
def own_netns(name: str) -> Iterator[str]:
    """A network namespace with its loopback up, deleted whatever happens; its path.
    One of the same name is a killed run's (the name is the cluster's): it goes first."""
    namespaces.delete_namespace(name)
    namespaces.add_namespace(name)
    try:
        namespaces.run(["ip", "-n", name, "link", "set", "lo", "up"], "its loopback")
        yield str(namespaces.NETNS_DIR / name)
    finally:
        with shielded():
            namespaces.delete_namespace(name)


def inside(netns: str) -> list[str]:
    return ["nsenter", f"--net={netns}", "--"]


def drop_rules(port: int) -> list[list[str]]:
    """Both directions between the shard and the relay's socket in its namespace."""
    return [["OUTPUT", "-o", "lo", "-p", "tcp", flag, str(port), "-j", "DROP"]
            for flag in ("--dport", "--sport")]


def set_cut(netns: str, port: int, on: bool) -> None:
    for rule in drop_rules(port):
        namespaces.run([*inside(netns), "iptables", "-w", "-I" if on else "-D", *rule],
                       "the cut" if on else "the lift")


def shard_metrics(netns: str) -> Counts:
    """The shard's counters, read from inside its namespace (none if it does not answer)."""
    code = ("import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
            f"'http://127.0.0.1:{METRICS_PORT}/metrics', timeout=5).read().decode())")
    done = subprocess.run([*inside(netns), sys.executable, "-c", code], capture_output=True,
                          text=True, check=False, timeout=30)
    return parse_counts(done.stdout) if done.returncode == 0 else {}


async def pods_now(client: Client) -> dict[str, dict[str, Any]]:
    """uid → node, phase and restarts of the benchmark's pods."""
    items = json.loads(await client.get(f"/api/v1/namespaces/{NAMESPACE}/pods"))["items"]
    return {p["metadata"]["uid"]: {
        "name": p["metadata"]["name"], "node": p["spec"].get("nodeName"),
        "phase": p.get("status", {}).get("phase"),
        "restarts": sum(c.get("restartCount", 0)
                        for c in p.get("status", {}).get("containerStatuses", []))}
        for p in items if not p["metadata"].get("deletionTimestamp")}


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds}s"


def seconds_since(start: float) -> float:
    return round(time.monotonic() - start, 1)


async def partition(cluster: LocalCluster, result: Any, *, netns: str, port: int,
                    shard: Proc, nodes_wanted: int, pods: int, cut: float, timeout: float,
                    every: float) -> None:
    async with admin_client(cluster) as client:
        nodes, leases = Nodes(client, PREFIX), Leases(client, PREFIX)
        counters = Counters(client, every)
        tasks = [asyncio.create_task(o.run()) for o in (nodes, leases, counters)]
        dropped = False
        try:
            await asyncio.wait_for(nodes.synced.wait(), 60)
            await asyncio.to_thread(wait_namespace, cluster, NAMESPACE)
            names = [f"{PREFIX}-{i}" for i in range(nodes_wanted)]
            await client.create(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments",
                                deployment("partition", pods, names))
            began = time.monotonic()
            while True:
                before = await pods_now(client)
                if sum(p["phase"] == "Running" for p in before.values()) >= pods:
                    break
                check_proc(shard)
                if time.monotonic() - began > timeout:
                    raise UserError(f"{pods} pods not Running after {timeout:.0f}s")
                await asyncio.sleep(1.0)
            console.print(f"{pods} pods Running on {nodes_wanted} nodes; cutting the shard "
                          f"off for {cut:.0f}s")
            await asyncio.sleep(2 * every)
            metrics_before = await asyncio.to_thread(shard_metrics, netns)
            ready_before = nodes.count_ready()
            await asyncio.to_thread(set_cut, netns, port, True)
            dropped = True
            cut_at, cut_clock = utcnow(), time.monotonic()
            timeline: list[dict[str, Any]] = []
            result.data.update({"cut": cut_at.isoformat(), "timeline": timeline,
                                "ready_before_cut": ready_before})
            first_ping = first_not_ready = None
            while time.monotonic() - cut_clock < cut:
                check_proc(shard)
                metrics = await asyncio.to_thread(shard_metrics, netns)
                pinged = grown(metrics, metrics_before,
                               "pykubemark_http2_connections_closed_total", where="why=ping")
                ready = nodes.count_ready()
                if first_ping is None and pinged > 0:
                    first_ping = seconds_since(cut_clock)
                if first_not_ready is None and ready < ready_before:
                    first_not_ready = seconds_since(cut_clock)
                timeline.append({"at": utcnow().isoformat(), "phase": "cut",
                                 "ready_nodes": ready, "closed_by_ping": round(pinged)})
                result.save()
                await asyncio.sleep(1.0)
            at_lift = await asyncio.to_thread(shard_metrics, netns)
            ready_at_lift = nodes.count_ready()
            await asyncio.to_thread(set_cut, netns, port, False)
            dropped = False
            lifted, lift_clock = utcnow(), time.monotonic()
            renewed = leases.mark(lifted)
            console.print(f"lifted: {ready_at_lift}/{nodes_wanted} nodes Ready, "
                          f"connections found dead by PING: "
                          f"{timeline[-1]['closed_by_ping'] if timeline else 0}")
            all_renewed = all_ready = None
            while all_renewed is None or all_ready is None:
                check_proc(shard)
                if time.monotonic() - lift_clock > timeout:
                    break
                if all_renewed is None and len(renewed.first) >= nodes_wanted:
                    all_renewed = seconds_since(lift_clock)
                if all_ready is None and nodes.count_ready() >= nodes_wanted:
                    all_ready = seconds_since(lift_clock)
                timeline.append({"at": utcnow().isoformat(), "phase": "lifted",
                                 "ready_nodes": nodes.count_ready(),
                                 "leases_renewed": len(renewed.first)})
                await asyncio.sleep(1.0)
            await asyncio.sleep(max(5.0, 3 * every))  # what reconnecting costs settles
            after = await pods_now(client)
            metrics_after = await asyncio.to_thread(shard_metrics, netns)
            until = utcnow().isoformat()
            closed = "pykubemark_http2_connections_closed_total"
            result.data.update({
                "lifted": lifted.isoformat(),
                "during_cut": {
                    "connections_closed_by_ping": round(grown(at_lift, metrics_before, closed,
                                                                 where="why=ping")),
                    "first_closed_by_ping_after_s": first_ping,
                    "first_not_ready_after_s": first_not_ready,
                    "ready_nodes_at_lift": ready_at_lift,
                    "nodes_seen_not_ready": len({e[1] for e in nodes.not_ready_since(cut_at)}),
                },
                "after_lift": {
                    "all_leases_renewed_after_s": all_renewed,
                    "all_nodes_ready_after_s": all_ready,
                    "timeout_s": timeout,
                },
                "pods": {
                    "before": len(before),
                    "after": len(after),
                    "same_uids": sorted(before) == sorted(after),
                    "running_after": sum(p["phase"] == "Running" for p in after.values()),
                    "restarts_after": sum(p["restarts"] for p in after.values()),
                    "moved": sum(after[u]["node"] != before[u]["node"]
                                 for u in set(before) & set(after)),
                },
                "shard": {
                    "connections_closed": by_labels(metrics_after, metrics_before, closed),
                    "relists": by_labels(metrics_after, metrics_before,
                                         "pykubemark_relists_total"),
                    "watch_restarts": by_labels(metrics_after, metrics_before,
                                                "pykubemark_watch_restarts_total"),
                },
                "apiserver_lists_after_lift": lists_by_resource(counters, lifted.isoformat(),
                                                                until),
                "lease_gap_max_s": round(max(leases.max_gap.values(), default=0.0), 1),
                "scrape_failures": counters.failed,
            })
            d, a, p = result.data["during_cut"], result.data["after_lift"], result.data["pods"]
            console.print(
                f"connections found dead by PING: {d['connections_closed_by_ping']} (first "
                f"after {_s(d['first_closed_by_ping_after_s'])}); nodes NotReady: "
                f"{d['nodes_seen_not_ready']} (first after {_s(d['first_not_ready_after_s'])}"
                f"); after the lift every lease renewed in "
                f"{_s(a['all_leases_renewed_after_s'])}, every node Ready in "
                f"{_s(a['all_nodes_ready_after_s'])}; pods: {p['running_after']}/"
                f"{p['before']} Running, same UIDs: {p['same_uids']}, restarts: "
                f"{p['restarts_after']}")
        finally:
            if dropped:
                with shielded(), contextlib.suppress(UserError):
                    set_cut(netns, port, False)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def start_shard(cluster: LocalCluster, netns: str, nodes: int, read_idle: int | None,
                ping_timeout: int | None) -> tuple[Proc, int]:
    """The relay into the namespace, then the shard in it; the apiserver's port."""
    port = cluster.state.ports["apiserver"]
    config = cluster.dir / "partition-forwarder.json"
    forwarder.write_config(config, port=port, target_port=port, netns=[netns])
    relay = cluster.add_process("partition-forwarder", [
        sys.executable, "-m", "pykubemark.cluster.forwarder", str(config)])
    wait_until("the relay into the shard's namespace",
               lambda: netns in forwarder.serving(config), relay, 30)
    env = [f"HTTP2_READ_IDLE_TIMEOUT_SECONDS={read_idle}"] if read_idle is not None else []
    if ping_timeout is not None:
        env.append(f"HTTP2_PING_TIMEOUT_SECONDS={ping_timeout}")
    shard = start_py_hollow(cluster, nodes, prefix=PREFIX, processes=1,
                            extra=["--no-kubelet-api", "--metrics-port", str(METRICS_PORT)],
                            wrap=[*inside(netns), "env", *env])
    return shard, port


@click.command()
@click.option("--nodes", type=click.IntRange(1), default=100, show_default=True,
              help="Hollow nodes in the shard that is cut off (one process).")
@click.option("--pods-per-node", type=click.IntRange(0), default=2, show_default=True)
@click.option("--cut", type=click.FloatRange(1), default=60.0, show_default=True,
              help="Seconds the shard's packets are dropped.")
@click.option("--read-idle", type=click.IntRange(0), default=None,
              help="HTTP2_READ_IDLE_TIMEOUT_SECONDS for the shard (default: client-go's 30).")
@click.option("--ping-timeout", type=click.IntRange(1), default=None,
              help="HTTP2_PING_TIMEOUT_SECONDS for the shard (default: client-go's 15).")
@click.option("--timeout", type=click.FloatRange(10), default=300.0, show_default=True,
              help="Seconds to wait for pods Running, and after the lift for recovery.")
@click.option("--sample-every", type=click.FloatRange(0.2), default=1.0, show_default=True)
@click.option("--note", default="", help="Stored in the result (e.g. the machine's state).")
@click.option("--name", default="bench-partition", show_default=True)
@results_dir_option()
def main(nodes: int, pods_per_node: int, cut: float, read_idle: int | None,
         ping_timeout: int | None, timeout: float, sample_every: float, note: str, name: str,
         results_dir: Path) -> None:
    """Cut a shard of hollow nodes off the apiserver (packets dropped), then lift the cut."""
    pods = pods_per_node * nodes
    parameters = {"nodes": nodes, "pods": pods, "cut_s": cut, "read_idle_s": read_idle,
                  "ping_timeout_s": ping_timeout, "sample_every_s": sample_every}

    def body() -> None:
        with result_file(f"partition-{nodes}", results_dir, parameters, note) as result, \
                own_cluster(name, nodes) as cluster, own_netns(f"pkm-cut-{name}") as netns:
            shard, port = start_shard(cluster, netns, nodes, read_idle, ping_timeout)
            wait_ready(cluster, {PREFIX: nodes}, check=lambda: check_proc(shard),
                       timeout=timeout)
            asyncio.run(partition(cluster, result, netns=netns, port=port, shard=shard,
                                  nodes_wanted=nodes, pods=pods, cut=cut, timeout=timeout,
                                  every=sample_every))

    run_cli(body)


if __name__ == "__main__":
    main()
