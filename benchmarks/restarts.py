"""Restarts at scale: the apiserver, then etcd, killed with SIGKILL and started again
(`pykubemark restart`'s path) under a fleet of hollow nodes, judged by the apiserver.

For each restart, from the moment the component is back (healthy again):

* how long until every node renewed its lease (the Lease objects' renewTime, watched in
  kube-node-lease): all within 60 s; and how old each lease got (its longest time
  between renewals from the kill on): the oldest under 30 s, a margin below the 40 s
  grace period;
* whether the controller-manager marked any node NotReady (the nodes' Ready condition,
  watched; and its lastTransitionTime, which any flip would change);
* the relist storm: the list rate the apiserver counted, LISTs (apiserver_request_total)
  and streaming lists (apiserver_watch_list_duration_seconds, what 1.35+ kubelets send
  instead), scraped every second — its peak and when it last exceeded the quiet rate
  before the kill.

A quiet window before each kill gives the baseline; each restart is observed at least
until the controller-manager's node-monitor grace period since the kill has passed, so a
NotReady it would have set is seen.

    .venv/bin/python benchmarks/restarts.py --nodes 2000            # ~15 min
    .venv/bin/python benchmarks/restarts.py --nodes 20 --quiet 10 --observe 30   # small
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import click
from benchlib import console, results_dir_option, run_cli, utcnow
from observe import (
    REQUESTS,
    SHARED,
    Counters,
    Counts,
    Leases,
    Nodes,
    admin_client,
    bucket_bound,
    by_labels,
    cores_between,
    cpu_readings,
    default_processes,
    fleet_ports,
    fleet_processes,
    grace_period,
    grown,
    own_cluster,
    read_fleet,
    refusals,
    result_file,
    start_fleet,
    storm,
)

from pykubemark.cluster.control_plane import ALIASES, LocalCluster
from pykubemark.errors import UserError
from pykubemark.measure.stats import percentiles

#: The issue's bound on recovery: every lease renewed within this of the component back.
RENEW_BOUND = 60.0
#: ... and the oldest lease under this, a margin below the 40 s grace period.
OLDEST_BOUND = 30.0


async def restart_once(cluster: LocalCluster, component: str, *, leases: Leases, nodes: Nodes,
                       counters: Counters, names: set[str], processes: int, quiet: float,
                       downtime: float, observe: float, renew_timeout: float
                       ) -> dict[str, Any]:
    check = lambda: fleet_processes(cluster)  # noqa: E731 - raises if the fleet died
    console.print(f"[bold]{component}[/]: {quiet:.0f}s quiet before the kill")
    quiet_from = utcnow()
    await asyncio.sleep(quiet)
    own_before = leases.lists + nodes.lists
    transitions = {n: nodes.transition.get(n) for n in names}
    leases.reset_gaps()  # from here: each node's longest time between renewals
    ports = fleet_ports(cluster, processes)
    fleet_before = await asyncio.to_thread(read_fleet, ports)
    cpu_before = cpu_readings(cluster)
    killed = utcnow()
    proc = await asyncio.to_thread(cluster.restart, component, downtime=downtime, kill=True)
    back = utcnow()
    console.print(f"{component} killed at {killed:%H:%M:%S}, back (healthy, pid {proc.pid}) "
                  f"{(back - killed).total_seconds():.1f}s later")
    mark = leases.mark(back)
    deadline = back + dt.timedelta(seconds=renew_timeout)
    while not names <= mark.first.keys() and utcnow() < deadline:
        check()
        await asyncio.sleep(0.5)
    renewed_by = utcnow()
    fleet_renewed = await asyncio.to_thread(read_fleet, ports)
    cores = cores_between(cpu_readings(cluster), cpu_before, (renewed_by - killed).total_seconds())
    delays = [(mark.first[n] - back).total_seconds() for n in names if n in mark.first]
    missing = len(names - mark.first.keys())
    console.print(f"leases renewed after {component} back: {len(delays)}/{len(names)}, "
                  f"last after {max(delays, default=float('nan')):.1f}s")
    # Observe the storm, and past the node-monitor grace period since the kill.
    end = max(back + dt.timedelta(seconds=observe),
              killed + dt.timedelta(seconds=grace_period() + 5))
    while utcnow() < end:
        check()
        await asyncio.sleep(1.0)
    until = utcnow()
    gaps = [leases.max_gap[n] for n in names if n in leases.max_gap]
    flipped = [n for n in names if nodes.transition.get(n) != transitions[n]]
    not_ready = nodes.not_ready_since(killed)
    list_storm = storm(counters, baseline=(quiet_from.isoformat(), killed.isoformat()),
                       since=killed, until=until.isoformat(),
                       own_lists=leases.lists + nodes.lists - own_before)
    list_storm["settled_after_back_s"] = round(
        max(0.0, list_storm["settled_after_s"] - (back - killed).total_seconds()), 1)
    return {
        "component": proc.name,
        "killed": killed.isoformat(),
        "back": back.isoformat(),
        "down_s": round((back - killed).total_seconds(), 2),
        # NotReady is expected only when the outage outlasts the controller-manager's
        # grace period (the bound applies to shorter outages).
        "down_shorter_than_grace": (back - killed).total_seconds() < grace_period(),
        "observed_until": until.isoformat(),
        "leases": {
            "nodes": len(names),
            "renewed": len(delays),
            "not_renewed_within_timeout": missing,
            "all_renewed_after_s": round(max(delays), 2) if delays and not missing else None,
            "all_within_60s": not missing and max(delays, default=0.0) <= RENEW_BOUND,
            "renew_delay_s": {k: round(v, 2) for k, v in
                              percentiles(delays, with_max=True).items()},
            # Per node, the longest time between two renewals from the kill on: how old
            # its lease got (the controller-manager's grace is 40 s); Max is the oldest.
            "lease_age_s": {k: round(v, 2) for k, v in
                            percentiles(gaps, with_max=True).items()},
            "oldest_lease_under_30s": bool(gaps) and max(gaps) < OLDEST_BOUND,
        },
        "not_ready": {
            "nodes_seen_not_ready": len({event[1] for event in not_ready}),
            "events": not_ready[:50],
            "ready_transition_changed": len(flipped),
            "ready_now": sum(nodes.ready.get(n, False) for n in names),
        },
        "list_storm": list_storm,
        "fleet_until_renewed": fleet_breakdown(fleet_renewed, fleet_before,
                                               (renewed_by - killed).total_seconds()),
        # whether the machine's 2 cores were the limit, and who used them
        "cores_until_renewed": cores,
    }


def fleet_breakdown(after: Counts, before: Counts, seconds: float) -> dict[str, Any]:
    """From the kill until every lease was renewed, by the fleet's own counters: whether
    the last renewals waited for the fleet (its cores, its event loop running late) or for
    the apiserver (the slowest PUT, the answers 429 and 5xx, the relists it served)."""
    seconds = max(seconds, 1e-3)
    return {
        "seconds": round(seconds, 1),
        "cores": round(grown(after, before, "pykubemark_process_cpu_seconds_total") / seconds,
                       2),
        "loop_lag_p99_s": bucket_bound(after, before, "pykubemark_event_loop_lag_seconds",
                                       0.99),
        "loop_lag_max_s": bucket_bound(after, before, "pykubemark_event_loop_lag_seconds"),
        "slowest_lease_put_s": bucket_bound(after, before,
                                            "pykubemark_lease_renewal_duration_seconds"),
        "lease_requests": by_labels(after, before, REQUESTS, "resource=leases"),
        "lists": round(grown(after, before, REQUESTS, where="verb=LIST")),
        "relists": round(grown(after, before, "pykubemark_relists_total")),
        **refusals(after, before),
    }


async def measure(cluster: LocalCluster, result: Any, *, prefix: str, nodes_wanted: int,
                  processes: int, components: list[str], quiet: float, downtime: float,
                  observe: float, renew_timeout: float, every: float) -> None:
    async with admin_client(cluster) as client:
        leases, nodes, counters = Leases(client, prefix), Nodes(client, prefix), \
            Counters(client, every)
        tasks = [asyncio.create_task(o.run()) for o in (leases, nodes, counters)]
        try:
            await asyncio.wait_for(asyncio.gather(leases.synced.wait(), nodes.synced.wait()), 60)
            names = {n for n, ready in nodes.ready.items() if ready}
            if len(names) < nodes_wanted:
                console.print(f"[yellow]only {len(names)} of {nodes_wanted} nodes Ready[/]")
            result.data["restarts"] = []
            for component in components:
                entry = await restart_once(
                    cluster, component, leases=leases, nodes=nodes, counters=counters,
                    names=names, processes=processes, quiet=quiet, downtime=downtime,
                    observe=observe, renew_timeout=renew_timeout)
                result.data["restarts"].append(entry)
                result.save()
                storm_ = entry["list_storm"]
                console.print(
                    f"{component}: all leases renewed after "
                    f"{entry['leases']['all_renewed_after_s']}s, oldest lease "
                    f"{entry['leases']['lease_age_s'].get('Max')}s, "
                    f"{entry['not_ready']['nodes_seen_not_ready']} nodes NotReady, "
                    f"peak list rate {storm_['peak_list_rate']}/s "
                    f"(quiet p90 {storm_['baseline_list_rate_p90']}/s), "
                    f"settled after {storm_['settled_after_s']}s")
            result.data["scrape_failures"] = counters.failed
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


@click.command()
@click.option("--nodes", type=click.IntRange(1), default=2000, show_default=True)
@click.option("--processes", type=click.IntRange(1), default=None,
              help="Fleet processes (default: one per 1000 nodes).")
@click.option("--fidelity", type=click.Choice(["kubelet", "lite"]), default="kubelet",
              show_default=True)
@click.option("--fleet-nice", type=click.IntRange(0, 19), default=0, show_default=True,
              help="Niceness of the fleet's processes: above 0 the control plane has the "
              "machine's cores first, as on a master of its own.")
@click.option("--components", default="apiserver,etcd", show_default=True,
              help="Restarted in this order, one at a time.")
@click.option("--quiet", type=click.FloatRange(2), default=60.0, show_default=True,
              help="Seconds of baseline before each kill.")
@click.option("--downtime", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Seconds between the kill and the start.")
@click.option("--observe", type=click.FloatRange(5), default=120.0, show_default=True,
              help="Seconds observed after the component is back (at least until the "
              "node-monitor grace period since the kill has passed).")
@click.option("--renew-timeout", type=click.FloatRange(10), default=300.0, show_default=True)
@click.option("--sample-every", type=click.FloatRange(0.2), default=1.0, show_default=True,
              help="Seconds between scrapes of the apiserver's /metrics.")
@click.option("--note", default="", help="Stored in the result (e.g. the machine's state).")
@click.option("--name", default="bench-restarts", show_default=True)
@results_dir_option()
def main(nodes: int, processes: int | None, fidelity: str, fleet_nice: int, components: str,
         quiet: float, downtime: float, observe: float, renew_timeout: float,
         sample_every: float, note: str, name: str, results_dir: Path) -> None:
    """Kill -9 the apiserver, then etcd, under N hollow nodes; measure the recovery."""
    processes = processes or default_processes(nodes)
    wanted = [c.strip() for c in components.split(",") if c.strip()]
    parameters = {"nodes": nodes, "processes": processes, "fidelity": fidelity,
                  "fleet_nice": fleet_nice, "components": wanted, "quiet_s": quiet,
                  "downtime_s": downtime, "observe_s": observe, "signal": "SIGKILL",
                  "sample_every_s": sample_every}

    def body() -> None:
        known = {"etcd", *ALIASES, *ALIASES.values()}
        if unknown := [c for c in wanted if c not in known]:
            raise UserError(f"--components: no component {', '.join(unknown)} "
                            f"(known: {', '.join(sorted(known))})")
        with result_file(f"restarts-{nodes}", results_dir, parameters,
                         note or (SHARED if nodes < 2000 else "")) as result, \
                own_cluster(name, nodes) as cluster:
            start_fleet(cluster, nodes, prefix="rs", fidelity=fidelity, processes=processes)
            for proc in fleet_processes(cluster):  # a replaced worker inherits it
                proc.nice(fleet_nice)
            asyncio.run(measure(cluster, result, prefix="rs", nodes_wanted=nodes,
                                processes=processes, components=wanted, quiet=quiet,
                                downtime=downtime, observe=observe,
                                renew_timeout=renew_timeout, every=sample_every))

    run_cli(body)


if __name__ == "__main__":
    main()
