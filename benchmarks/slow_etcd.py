"""etcd slowed while a density run goes on: does the fleet fall behind on its leases
beyond what the slow control plane itself causes, or flood the apiserver with retries?

etcd is held to a small CPU quota (a cgroup of its own, cluster/cgroups.py `throttled`:
the CFS quota of v1 or v2) for ``--for`` seconds, ``--after`` seconds into a
`pykubemark run density` on a fresh control plane with a supervised fleet, then let go.
Every write then waits on etcd, as behind a slow disk. Each phase is a window — quiet
(no load), load (the run, etcd free), throttled, after (etcd free again, until the run
ended) — and for each the benchmark records:

* the leases, from the apiserver's side (renewTime, watched): each node's longest time
  between renewals, and nodes the controller-manager saw NotReady;
* what the renewals cost the fleet: its own histogram of how long a lease PUT took until
  accepted; a kubelet renews 10 s after its last renewal came back, so a gap longer than
  10 s plus the slowest PUT (and the lease controller's 4 % jitter) is the fleet's own
  lateness, beyond what the control plane caused (the PUT's bound is its histogram
  bucket's, so this errs towards the fleet); and how late the fleet's event loop ran its
  timers, the only lateness of its own it can have;
* retries: the fleet's requests per second, its retries and its errors (its /metrics:
  ``pykubemark_api_requests_total``, ``pykubemark_api_request_retries_total``), beside
  the apiserver's own request and 429 rates: a fleet that retries without backing off
  sends more while etcd is slow, not fewer;
* etcd's CPU per window (the throttle holds), and the run's own SLO verdicts.

    .venv/bin/python benchmarks/slow_etcd.py                       # 1000 nodes, ~10 min
    .venv/bin/python benchmarks/slow_etcd.py --nodes 5 --pods-per-node 4 --quiet 10 \\
        --after 5 --for 20                                         # small
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import psutil
from benchlib import console, results_dir_option, run_cli, shielded, utcnow
from observe import (
    REQUESTS,
    Counters,
    Counts,
    Leases,
    Nodes,
    admin_client,
    bucket_bound,
    by_labels,
    default_processes,
    fleet_ports,
    grown,
    own_cluster,
    read_fleet,
    refusals,
    result_file,
    start_fleet,
)

from pykubemark.cluster import cgroups
from pykubemark.cluster.control_plane import LocalCluster
from pykubemark.errors import UserError
from pykubemark.measure.stats import percentiles

#: A kubelet renews its lease this long after the last renewal came back (leaseDuration
#: 40 s / 4), jittered by up to 4 %.
RENEW_INTERVAL = 10.0 * 1.04
PREFIX = "se"


# -- windows ----------------------------------------------------------------------------------
@dataclass
class Window:
    name: str
    started: dt.datetime
    fleet: Counts
    etcd_cpu: float
    ended: dt.datetime | None = None


def cpu_seconds(pid: int) -> float:
    with contextlib.suppress(psutil.Error):
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system
    return 0.0


class Observer:
    def __init__(self, cluster: LocalCluster, leases: Leases, nodes: Nodes,
                 counters: Counters, names: set[str], processes: int) -> None:
        self.cluster, self.leases, self.nodes, self.counters = cluster, leases, nodes, counters
        self.names = names
        self.ports = fleet_ports(cluster, processes)
        proc = cluster.state.proc("etcd")
        assert proc is not None
        self.etcd_pid = proc.pid
        self.windows: list[Window] = []

    async def open(self, name: str) -> Window:
        self.leases.reset_gaps()
        window = Window(name, utcnow(), await asyncio.to_thread(read_fleet, self.ports),
                        cpu_seconds(self.etcd_pid))
        self.windows.append(window)
        console.print(f"[bold]{name}[/] from {window.started:%H:%M:%S}")
        return window

    async def close(self, window: Window) -> dict[str, Any]:
        window.ended = utcnow()
        fleet = await asyncio.to_thread(read_fleet, self.ports)
        seconds = max(1e-3, (window.ended - window.started).total_seconds())
        gaps = [self.leases.max_gap[n] for n in self.names if n in self.leases.max_gap]
        # a gap ending here began in the window before: so may the PUT that preceded it
        earlier = self.windows[-2].fleet if len(self.windows) > 1 else window.fleet
        put = bucket_bound(fleet, earlier, "pykubemark_lease_renewal_duration_seconds")
        lag = bucket_bound(fleet, window.fleet, "pykubemark_event_loop_lag_seconds", 0.99)
        since, until = window.started.isoformat(), window.ended.isoformat()
        requests = grown(fleet, window.fleet, REQUESTS)
        lease_puts = grown(fleet, window.fleet, REQUESTS, where="resource=leases")
        summary = {
            "seconds": round(seconds, 1),
            "etcd_cores": round((cpu_seconds(self.etcd_pid) - window.etcd_cpu) / seconds, 3),
            "lease_gap_s": {k: round(v, 2) for k, v in
                            percentiles(gaps, with_max=True).items()} if gaps else {},
            # no lease PUT of this window or the one before took longer (a bucket's bound)
            "slowest_lease_put_s": put,
            # the fleet's own lateness: how late its event loop ran timers (p99, bound)
            "fleet_loop_lag_p99_s": lag,
            # a renewal later than the interval after the slowest PUT: the fleet's own
            "lease_late_beyond_control_plane_s": round(max(
                0.0, max(gaps, default=0.0) - RENEW_INTERVAL - (put or 0.0)), 2)
            if put is not None else None,
            "nodes_not_ready": len({e[1] for e in self.nodes.not_ready_since(window.started)}),
            "fleet": {
                "requests_per_s": round(requests / seconds, 2),
                "lease_requests_per_s": round(lease_puts / seconds, 2),
                "lease_requests": by_labels(fleet, window.fleet, REQUESTS, "resource=leases"),
                "retries": round(grown(fleet, window.fleet,
                                       "pykubemark_api_request_retries_total")),
                "errors": round(grown(fleet, window.fleet, REQUESTS, where="code=error")),
                **refusals(fleet, window.fleet),
            },
            "apiserver": {
                "requests_per_s": round(self.counters.increase(lambda s: s.requests, since,
                                                               until) / seconds, 2),
                "answers_429": round(self.counters.increase(lambda s: s.throttled, since,
                                                            until)),
            },
        }
        gap = summary["lease_gap_s"].get("Max")
        console.print(f"  {window.name}: etcd {summary['etcd_cores']} cores, lease gap max "
                      f"{gap}s, slowest PUT ≤{put}s, {summary['nodes_not_ready']} NotReady, "
                      f"fleet {summary['fleet']['requests_per_s']} req/s, "
                      f"{summary['fleet']['retries']} retries")
        return summary


@contextlib.contextmanager
def etcd_throttled(cluster: LocalCluster, cores: float) -> Iterator[None]:
    proc = cluster.state.proc("etcd")
    if proc is None or proc.process() is None:
        raise UserError("etcd is not running")
    try:
        with cgroups.throttled(proc.pid, cores, f"/pkm-{cluster.state.name}-etcd-slow"):
            console.print(f"etcd held to {cores:g} cores")
            yield
    except OSError as exc:
        raise UserError(f"cannot throttle etcd: {exc}") from None
    finally:
        console.print("etcd free")


async def measure(cluster: LocalCluster, result: Any, *, nodes_wanted: int, processes: int,
                  pods_per_node: int, qps: float, cores: float, quiet: float, after: float,
                  slow_for: float, observe: float, out: Path) -> None:
    async with admin_client(cluster) as client:
        leases, nodes, counters = Leases(client, PREFIX), Nodes(client, PREFIX), \
            Counters(client, 1.0)
        tasks = [asyncio.create_task(o.run()) for o in (leases, nodes, counters)]
        run: asyncio.subprocess.Process | None = None
        try:
            await asyncio.wait_for(asyncio.gather(leases.synced.wait(), nodes.synced.wait()), 60)
            names = {n for n, ready in nodes.ready.items() if ready}
            if len(names) < nodes_wanted:
                console.print(f"[yellow]only {len(names)} of {nodes_wanted} nodes Ready[/]")
            seen = Observer(cluster, leases, nodes, counters, names, processes)
            windows: dict[str, Any] = {}
            result.data["windows"] = windows

            async def window(name: str, seconds: float | None) -> None:
                opened = await seen.open(name)
                if seconds is not None:
                    await asyncio.sleep(seconds)
                else:  # until the run ends, and at least `observe`
                    assert run is not None
                    await asyncio.gather(run.wait(), asyncio.sleep(observe))
                windows[name] = await seen.close(opened)
                result.save()

            await window("quiet", quiet)
            run = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pykubemark", "run", "density", "--cluster",
                cluster.state.name, "--pods-per-node", str(pods_per_node), "--qps", f"{qps:g}",
                "--quiet", "--out", str(out), stdin=asyncio.subprocess.DEVNULL)
            await window("load", after)
            if run.returncode is not None:
                raise UserError(f"the density run ended before etcd was slowed (exit code "
                                f"{run.returncode}): give it more pods or less --after")
            with etcd_throttled(cluster, cores):
                await window("throttled", slow_for)
            await window("after", None)
            result.data["run"] = run_outcome(out, run.returncode)
            result.data["verdict"] = verdict(windows)
            result.data["scrape_failures"] = counters.failed
        finally:
            if run is not None and run.returncode is None:
                with shielded():
                    run.send_signal(2)
                    await asyncio.wait_for(run.wait(), 60)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def run_outcome(out: Path, code: int | None) -> dict[str, Any]:
    summary_path = out / "summary.json"
    outcome: dict[str, Any] = {"exit_code": code, "directory": str(out)}
    with contextlib.suppress(OSError, ValueError):
        summary = json.loads(summary_path.read_text())
        outcome["status"] = summary.get("status")
        outcome["verdict"] = summary.get("verdict")
        outcome["slos"] = [{k: s.get(k) for k in ("name", "value", "threshold", "verdict")}
                           for s in summary.get("slos", [])]
    return outcome


def verdict(windows: dict[str, Any]) -> dict[str, Any]:
    """The issue's two questions, answered from the windows."""
    load, slow = windows["load"], windows["throttled"]
    late = [w["lease_late_beyond_control_plane_s"] for w in windows.values()]
    return {
        "etcd_slowed_by": round(load["etcd_cores"] / max(slow["etcd_cores"], 1e-3), 1),
        "no_lease_late_beyond_control_plane": all(v is not None and v <= 0.5 for v in late),
        # a slow server answers fewer requests a second; a retry flood sends more
        "fleet_requests_throttled_over_load": round(
            slow["fleet"]["requests_per_s"] / max(load["fleet"]["requests_per_s"], 1e-3), 2),
        "no_retry_flood": slow["fleet"]["requests_per_s"] <= 1.1 * load["fleet"]["requests_per_s"],
        "nodes_not_ready": sum(w["nodes_not_ready"] for w in windows.values()),
    }


@click.command()
@click.option("--nodes", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--processes", type=click.IntRange(1), default=None,
              help="Fleet processes (default: one per 1000 nodes).")
@click.option("--pods-per-node", type=click.IntRange(1), default=5, show_default=True)
@click.option("--qps", type=click.FloatRange(0.1), default=20.0, show_default=True,
              help="The density run's pods created per second.")
@click.option("--cpu", "cores", type=click.FloatRange(0.01), default=0.05, show_default=True,
              help="Cores etcd gets while throttled.")
@click.option("--quiet", type=click.FloatRange(5), default=30.0, show_default=True,
              help="Seconds of no load first.")
@click.option("--after", type=click.FloatRange(1), default=60.0, show_default=True,
              help="Seconds into the run before etcd is throttled.")
@click.option("--for", "slow_for", type=click.FloatRange(5), default=60.0, show_default=True,
              help="Seconds etcd stays throttled.")
@click.option("--observe", type=click.FloatRange(5), default=60.0, show_default=True,
              help="Seconds observed after etcd is free, at least (and until the run ends).")
@click.option("--name", default="bench-slow-etcd", show_default=True)
@results_dir_option()
def main(nodes: int, processes: int | None, pods_per_node: int, qps: float, cores: float,
         quiet: float, after: float, slow_for: float, observe: float, name: str,
         results_dir: Path) -> None:
    """Throttle etcd under a density run and N hollow nodes; leases and retries."""
    processes = processes or default_processes(nodes)
    parameters = {"nodes": nodes, "processes": processes, "pods_per_node": pods_per_node,
                  "qps": qps, "etcd_cores": cores, "quiet_s": quiet, "after_s": after,
                  "for_s": slow_for, "observe_s": observe}

    def body() -> None:
        with result_file(f"slow-etcd-{nodes}", results_dir, parameters, "") as result, \
                own_cluster(name, nodes) as cluster:
            start_fleet(cluster, nodes, prefix=PREFIX, fidelity="kubelet", processes=processes)
            out = Path(f"/tmp/pykubemark-slow-etcd-{result.path.stem}")
            asyncio.run(measure(cluster, result, nodes_wanted=nodes, processes=processes,
                                pods_per_node=pods_per_node, qps=qps, cores=cores,
                                quiet=quiet, after=after, slow_for=slow_for,
                                observe=observe, out=out))

    run_cli(body)


if __name__ == "__main__":
    main()
