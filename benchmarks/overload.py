"""Overload: the apiserver throttles the hollow nodes (priority and fairness rejects with
429), a batch of pods arrives, then the throttle is lifted; judged by the apiserver.

The throttle is an APF configuration, applied and removed through the API while
everything runs (no restart muddles the picture): a PriorityLevelConfiguration with one
concurrency share, no seats borrowed, and ``limitResponse: Reject``, and a FlowSchema
that sends the hollow kubelets (group system:nodes) and proxies (system:kube-proxy) to it
ahead of the built-in ``system-node-high`` and ``system-nodes`` (in the API version of
priority and fairness the apiserver prefers). Watches are long-running requests and are
not throttled; every other request of the fleet shares the level's few seats, and the
rest is answered 429 with Retry-After: 1. ``--server-concurrency`` restarts nothing: it
sizes the apiserver from the start (``--max-requests-inflight`` +
``--max-mutating-requests-inflight``), which is what the level's seats are a share of.

Measured from the apiserver's /metrics (every second): the 429s it served, what the
fleet's priority level dispatched and rejected per second before and during the throttle
(the fleet must slow down as kubelets do — Retry-After, backoff — not hammer the server),
and, after the throttle is lifted, the time until every node is Ready and every pod of the
batch Running (watched and listed as admin, who is exempt from APF).

    .venv/bin/python benchmarks/overload.py --nodes 500                  # ~15 min
    .venv/bin/python benchmarks/overload.py --nodes 10 --pods 40 --hold 45 \
        --server-concurrency 30                                          # small
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from pathlib import Path
from typing import Any

import click
from benchlib import IMAGE, console, results_dir_option, run_cli, utcnow, wait_namespace
from observe import (
    SHARED,
    Counters,
    Nodes,
    Sample,
    admin_client,
    default_processes,
    fleet_processes,
    own_cluster,
    result_file,
    start_fleet,
)

from pykubemark.cluster.control_plane import LocalCluster
from pykubemark.errors import UserError
from pykubemark.kube import ApiError, Client
from pykubemark.load import templates
from pykubemark.measure.stats import percentiles

FLOWCONTROL = "/apis/flowcontrol.apiserver.k8s.io"
LEVEL = "pykubemark-throttle"
#: The built-in levels the hollow nodes use when not throttled: flow schema system-nodes
#: (level system) and, since 1.21, system-node-high (node-high: leases and node status).
NORMAL_LEVELS = ("system", "node-high")
NAMESPACE = "overload"


def priority_level(version: str) -> dict[str, Any]:
    """One seat's share, no borrowing (1.26+ lends and borrows seats between levels),
    and a 429 for whatever does not fit."""
    shares = "assuredConcurrencyShares" if version in ("v1alpha1", "v1beta1", "v1beta2") \
        else "nominalConcurrencyShares"
    limited: dict[str, Any] = {shares: 1, "limitResponse": {"type": "Reject"}}
    if shares == "nominalConcurrencyShares":
        limited.update(lendablePercent=0, borrowingLimitPercent=0)
    return {"apiVersion": f"flowcontrol.apiserver.k8s.io/{version}",
            "kind": "PriorityLevelConfiguration", "metadata": {"name": LEVEL},
            "spec": {"type": "Limited", "limited": limited}}


def flow_schema(version: str) -> dict[str, Any]:
    return {
        "apiVersion": f"flowcontrol.apiserver.k8s.io/{version}", "kind": "FlowSchema",
        "metadata": {"name": LEVEL},
        "spec": {
            "priorityLevelConfiguration": {"name": LEVEL},
            # Ahead of system-node-high (400) and system-nodes (500); after exempt (1),
            # so admin is never throttled.
            "matchingPrecedence": 100,
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [{
                "subjects": [{"kind": "Group", "group": {"name": "system:nodes"}},
                             {"kind": "User", "user": {"name": "system:kube-proxy"}}],
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                   "clusterScope": True, "namespaces": ["*"]}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            }],
        },
    }


async def flowcontrol_version(client: Client) -> str:
    """The API version of priority and fairness this apiserver prefers (v1beta1 in
    1.20, v1 since 1.29)."""
    group = json.loads(await client.get(FLOWCONTROL))
    return group["preferredVersion"]["version"]


async def seats(client: Client) -> float | None:
    """The concurrency limit the apiserver gave the throttle level (None: not yet)."""
    text = (await client.get("/metrics")).decode()
    # request_concurrency_limit until 1.30, nominal_limit_seats since 1.26
    match = re.search(r'^apiserver_flowcontrol_(?:request_concurrency_limit|nominal_limit_seats)'
                      r'\{[^}]*priority_level="' + LEVEL + r'"[^}]*\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else None


async def running_pods(client: Client) -> int:
    items = json.loads(await client.get(f"/api/v1/namespaces/{NAMESPACE}/pods",
                                        {"labelSelector": "app=overload"}))["items"]
    return sum(p.get("status", {}).get("phase") == "Running"
               and not p["metadata"].get("deletionTimestamp") for p in items)


def level_rate(counters: Counters, levels: tuple[str, ...], since: str,
               until: str) -> dict[str, Any]:
    """Requests per second the apiserver saw at some priority levels (dispatched +
    rejected: every attempt of their clients)."""

    def attempts(sample: Sample) -> float:
        return sum(sum(sample.levels.get(level, (0.0, 0.0))) for level in levels)

    def rejected(sample: Sample) -> float:
        return sum(sample.levels.get(level, (0.0, 0.0))[1] for level in levels)

    rates = [rate for _, rate in counters.rates(attempts, since, until)]
    return {"levels": list(levels),
            "attempts_per_s": {k: round(v, 1) for k, v in
                               percentiles(rates, with_max=True).items()},
            "mean_per_s": round(sum(rates) / len(rates), 1) if rates else None,
            "attempts": round(counters.increase(attempts, since, until)),
            "rejected": round(counters.increase(rejected, since, until))}


async def overload(cluster: LocalCluster, result: Any, *, prefix: str, nodes_wanted: int,
                   pods: int, quiet: float, hold: float, timeout: float, every: float) -> None:
    async with admin_client(cluster) as client:
        nodes, counters = Nodes(client, prefix), Counters(client, every)
        tasks = [asyncio.create_task(o.run()) for o in (nodes, counters)]
        throttled = False
        try:
            await asyncio.wait_for(nodes.synced.wait(), 60)
            console.print(f"{quiet:.0f}s quiet (baseline)")
            quiet_from = utcnow()
            await asyncio.sleep(quiet)
            version = await flowcontrol_version(client)
            base = f"{FLOWCONTROL}/{version}"
            level, schema = priority_level(version), flow_schema(version)
            await client.create(f"{base}/prioritylevelconfigurations", level)
            await client.create(f"{base}/flowschemas", schema)
            throttled = True
            began = time.monotonic()
            while (limit := await seats(client)) is None:
                if time.monotonic() - began > 60:
                    raise UserError("the apiserver did not apply the throttle within 60 s")
                await asyncio.sleep(0.5)
            throttle_at = utcnow()
            console.print(f"throttle on: {limit:g} seats for the fleet, the rest gets 429")
            result.data["throttle"] = {"applied": throttle_at.isoformat(), "seats": limit,
                                       "priority_level": level,
                                       "flow_schema": schema}
            await asyncio.to_thread(wait_namespace, cluster, NAMESPACE)
            await client.create(templates.collection("Deployment", NAMESPACE), templates.workload(
                "Deployment", "overload", replicas=pods, labels={"app": "overload"},
                image=IMAGE, config=False, node_selector={}))
            created = utcnow()
            timeline: list[dict[str, Any]] = []
            result.data["timeline"] = timeline
            end = time.monotonic() + hold
            while time.monotonic() < end:
                fleet_processes(cluster)
                timeline.append({"at": utcnow().isoformat(), "phase": "throttled",
                                 "ready_nodes": nodes.count_ready(),
                                 "running_pods": await running_pods(client)})
                result.save()
                await asyncio.sleep(5.0)
            running_at_lift = await running_pods(client)
            ready_at_lift = nodes.count_ready()
            await lift(client, base)
            throttled = False
            lifted = utcnow()
            console.print(f"throttle lifted: {ready_at_lift}/{nodes_wanted} nodes Ready, "
                          f"{running_at_lift}/{pods} pods Running")
            all_ready = all_running = None
            while all_ready is None or all_running is None:
                fleet_processes(cluster)
                since = (utcnow() - lifted).total_seconds()
                if since > timeout:
                    break
                ready, running = nodes.count_ready(), await running_pods(client)
                timeline.append({"at": utcnow().isoformat(), "phase": "lifted",
                                 "ready_nodes": ready, "running_pods": running})
                if all_ready is None and ready >= nodes_wanted:
                    all_ready = since
                if all_running is None and running >= pods:
                    all_running = since
                await asyncio.sleep(1.0)
            await asyncio.sleep(2 * every)  # the last scrapes cover the catch-up
            until = utcnow().isoformat()
            t0, t1, t2 = quiet_from.isoformat(), throttle_at.isoformat(), lifted.isoformat()
            result.data.update({
                "pods_created": created.isoformat(),
                "lifted": t2,
                "at_lift": {"ready_nodes": ready_at_lift, "running_pods": running_at_lift},
                "after_lift": {
                    "all_nodes_ready_after_s": round(all_ready, 1) if all_ready is not None
                    else None,
                    "all_pods_running_after_s": round(all_running, 1)
                    if all_running is not None else None,
                    "timeout_s": timeout,
                },
                "http_429_served": {
                    "during_throttle": round(counters.increase(lambda s: s.throttled, t1, t2)),
                    "after_lift": round(counters.increase(lambda s: s.throttled, t2, until)),
                },
                "fleet_request_rate": {
                    "before": level_rate(counters, NORMAL_LEVELS, t0, t1),
                    "during_throttle": level_rate(counters, (LEVEL,), t1, t2),
                    "after_lift": level_rate(counters, NORMAL_LEVELS, t2, until),
                },
                "nodes_seen_not_ready": len({e[1] for e in nodes.not_ready_since(throttle_at)}),
                "not_ready": nodes.not_ready_since(throttle_at)[:50],
                "scrape_failures": counters.failed,
            })
            rate = result.data["fleet_request_rate"]
            console.print(
                f"429s served: {result.data['http_429_served']['during_throttle']}; fleet "
                f"attempts/s before {rate['before']['mean_per_s']}, during "
                f"{rate['during_throttle']['mean_per_s']}; after the lift all nodes Ready "
                f"after {result.data['after_lift']['all_nodes_ready_after_s']}s, all pods "
                f"Running after {result.data['after_lift']['all_pods_running_after_s']}s")
        finally:
            if throttled:
                with contextlib.suppress(Exception):
                    await lift(client, base)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def lift(client: Client, base: str) -> None:
    for kind in ("flowschemas", "prioritylevelconfigurations"):
        with contextlib.suppress(ApiError):
            await client.delete(f"{base}/{kind}/{LEVEL}")


@click.command()
@click.option("--nodes", type=click.IntRange(1), default=500, show_default=True)
@click.option("--processes", type=click.IntRange(1), default=None,
              help="Fleet processes (default: one per 1000 nodes).")
@click.option("--fidelity", type=click.Choice(["kubelet", "lite"]), default="kubelet",
              show_default=True)
@click.option("--pods", type=click.IntRange(1), default=None,
              help="Pods created while throttled (default: 4 per node).")
@click.option("--quiet", type=click.FloatRange(2), default=30.0, show_default=True)
@click.option("--hold", type=click.FloatRange(5), default=120.0, show_default=True,
              help="Seconds the throttle stays on after the pods are created.")
@click.option("--timeout", type=click.FloatRange(10), default=600.0, show_default=True,
              help="Seconds after the lift to wait for all Ready and Running.")
@click.option("--server-concurrency", type=click.IntRange(3), default=None,
              help="The apiserver's total in-flight limit, which APF shares out "
              "(default: its own, 400 + 200).")
@click.option("--sample-every", type=click.FloatRange(0.2), default=1.0, show_default=True)
@click.option("--note", default="", help="Stored in the result (e.g. the machine's state).")
@click.option("--name", default="bench-overload", show_default=True)
@results_dir_option()
def main(nodes: int, processes: int | None, fidelity: str, pods: int | None, quiet: float,
         hold: float, timeout: float, server_concurrency: int | None, sample_every: float,
         note: str, name: str, results_dir: Path) -> None:
    """Throttle the apiserver under N hollow nodes, create pods, lift it; time the recovery."""
    processes = processes or default_processes(nodes)
    pods = pods or 4 * nodes
    apiserver_args: list[str] = []
    if server_concurrency:
        mutating = max(1, server_concurrency // 3)
        apiserver_args = [f"--max-requests-inflight={server_concurrency - mutating}",
                          f"--max-mutating-requests-inflight={mutating}"]
    parameters = {"nodes": nodes, "processes": processes, "fidelity": fidelity, "pods": pods,
                  "quiet_s": quiet, "hold_s": hold, "apiserver_args": apiserver_args,
                  "sample_every_s": sample_every}

    def body() -> None:
        with result_file(f"overload-{nodes}", results_dir, parameters,
                         note or (SHARED if nodes < 500 else "")) as result, \
                own_cluster(name, nodes, apiserver_args) as cluster:
            start_fleet(cluster, nodes, prefix="ov", fidelity=fidelity, processes=processes)
            asyncio.run(overload(cluster, result, prefix="ov", nodes_wanted=nodes, pods=pods,
                                 quiet=quiet, hold=hold, timeout=timeout,
                                 every=sample_every))

    run_cli(body)


if __name__ == "__main__":
    main()
