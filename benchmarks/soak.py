"""Soak: a hollow fleet for an hour under steady pod churn; its memory must stay flat and
no lease may be late.

Pods are created at ``--churn`` per second in namespace ``soak`` (bare pods, scheduled on
the hollow nodes) and each is deleted ``--pod-lifetime`` seconds after its creation, so
the cluster holds a constant number of pods and every hollow kubelet keeps starting and
stopping them. Every ``--sample-every`` seconds (a minute by default):

* the fleet's RSS, open file descriptors and TCP connections, summed over the supervisor
  and its workers (psutil, from outside), and its asyncio tasks (the last summary line
  each worker logs, every 30 s);
* the pods present in the namespace, and the churn's own counters.

Lease lateness is the apiserver's: the largest gap between two renewTimes of a node's
Lease (watched), against the controller-manager's 40 s grace period; NotReady is the
nodes' Ready condition, watched. The result JSON and an SVG of RSS over time are
rewritten after every sample, so an interrupted soak keeps what it measured.

RSS is flat when every sample of the last ``--flat-window`` seconds (30 minutes) is within
``--tolerance`` (±5 %) of the first of them; the slope is a least-squares fit over the
whole soak, in MiB per hour.

    .venv/bin/python benchmarks/soak.py --nodes 2000 --duration 3600     # ~70 min
    .venv/bin/python benchmarks/soak.py --nodes 10 --duration 120 --sample-every 10 \
        --flat-window 60                                                 # small
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import deque
from pathlib import Path
from typing import Any

import click
from benchlib import IMAGE, console, results_dir_option, run_cli, utcnow, wait_namespace
from observe import (
    SHARED,
    Leases,
    Nodes,
    admin_client,
    default_processes,
    fleet_tasks,
    fleet_usage,
    own_cluster,
    result_file,
    start_fleet,
)

from pykubemark.cluster.control_plane import LocalCluster
from pykubemark.files import write_atomic
from pykubemark.kube import ApiError, Client
from pykubemark.kube.client import NETWORK_ERRORS
from pykubemark.load import templates

NAMESPACE = "soak"


class Churn:
    """Pods created at a steady rate and deleted after a fixed lifetime."""

    def __init__(self, client: Client, rate: float, lifetime: float) -> None:
        self.client = client
        self.rate = rate
        self.lifetime = lifetime
        self.created = self.deleted = 0
        self.errors: dict[str, int] = {}
        self._pending: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        alive: deque[tuple[float, str]] = deque()
        period = 1.0 / self.rate
        due = time.monotonic()
        index = 0
        while True:
            now = time.monotonic()
            while alive and now - alive[0][0] >= self.lifetime:
                self._spawn(self._delete(alive.popleft()[1]))
            name = f"churn-{index}"
            index += 1
            alive.append((now, name))
            self._spawn(self._create(name))
            due += period
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _create(self, name: str) -> None:
        pod = templates.workload("Pod", name, replicas=1, labels={"app": "churn"},
                                 image=IMAGE, config=False, node_selector={})
        try:
            await self.client.create(templates.collection("Pod", NAMESPACE), pod)
            self.created += 1
        except (ApiError, *NETWORK_ERRORS) as exc:
            self._error("create", exc)

    async def _delete(self, name: str) -> None:
        try:
            await self.client.delete(f"/api/v1/namespaces/{NAMESPACE}/pods/{name}")
            self.deleted += 1
        except (ApiError, *NETWORK_ERRORS) as exc:
            self._error("delete", exc)

    def _error(self, verb: str, exc: Exception) -> None:
        key = f"{verb} {getattr(exc, 'status', type(exc).__name__)}"
        self.errors[key] = self.errors.get(key, 0) + 1

    async def stop(self) -> None:
        await asyncio.gather(*self._pending, return_exceptions=True)

    def stats(self) -> dict[str, Any]:
        return {"created": self.created, "deleted": self.deleted, "errors": self.errors}


async def pods_present(client: Client) -> dict[str, int]:
    items = json.loads(await client.get(f"/api/v1/namespaces/{NAMESPACE}/pods"))["items"]
    phases: dict[str, int] = {}
    for pod in items:
        phase = "Terminating" if pod["metadata"].get("deletionTimestamp") \
            else pod.get("status", {}).get("phase", "?")
        phases[phase] = phases.get(phase, 0) + 1
    return phases


def rss_summary(samples: list[dict[str, Any]], window: float,
                tolerance: float) -> dict[str, Any]:
    """Slope over the whole soak (MiB/hour), and whether the last ``window`` seconds stay
    within ``tolerance`` of their first sample."""
    if len(samples) < 2:
        return {}
    hours = [s["t"] / 3600 for s in samples]
    rss = [s["rss_mib"] for s in samples]
    slope, _ = statistics.linear_regression(hours, rss)
    end = samples[-1]["t"]
    tail = [s for s in samples if s["t"] >= end - window]
    last = [s["rss_mib"] for s in tail]
    first = last[0]
    # The whole soak's slope includes the warm-up (pods 0 → steady); the window's does not.
    window_slope = statistics.linear_regression([s["t"] / 3600 for s in tail], last)[0] \
        if len(tail) >= 2 else None
    worst = max(abs(v - first) / first for v in last) if first else 0.0
    return {
        "slope_mib_per_hour": round(slope, 2),
        "first_mib": rss[0], "last_mib": rss[-1], "max_mib": max(rss),
        "window_s": window,
        "window_samples": len(last),
        "window_slope_mib_per_hour": round(window_slope, 2) if window_slope is not None
        else None,
        "window_max_deviation": round(worst, 4),
        "window_flat": worst <= tolerance,
        "window_covered": samples[0]["t"] <= end - window,
    }


def plot(samples: list[dict[str, Any]], path: Path, title: str) -> None:
    """RSS of the fleet over the soak, as SVG (rewritten atomically with each sample)."""
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot([s["t"] / 60 for s in samples], [s["rss_mib"] for s in samples], marker=".")
    ax.set_xlabel("minutes")
    ax.set_ylabel("fleet RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


async def soak(cluster: LocalCluster, result: Any, *, prefix: str, duration: float,
               churn_rate: float, lifetime: float, every: float, window: float,
               tolerance: float, settle: float) -> None:
    log = cluster.dir / "logs" / "hollow.log"
    svg = result.path.with_suffix(".svg")
    title = (f"{result.data['parameters']['nodes']} hollow nodes, "
             f"{churn_rate:g} pods/s churn — {result.path.name}")
    async with admin_client(cluster) as client:
        leases, nodes = Leases(client, prefix), Nodes(client, prefix)
        churn = Churn(client, churn_rate, lifetime)
        watches = [asyncio.create_task(o.run()) for o in (leases, nodes)]
        churning: asyncio.Task[None] | None = None
        try:
            await asyncio.wait_for(asyncio.gather(leases.synced.wait(), nodes.synced.wait()), 60)
            await asyncio.to_thread(wait_namespace, cluster, NAMESPACE)
            # The summary lines (tasks) come every 30 s: wait for one after the start.
            await asyncio.sleep(settle)
            samples: list[dict[str, Any]] = []
            result.data["samples"] = samples
            start_tasks = fleet_tasks(log)
            result.data["start"] = {**fleet_usage(cluster), "asyncio_tasks": start_tasks,
                                    "at": utcnow().isoformat()}
            leases.reset_gaps()
            began = time.monotonic()
            churning = asyncio.create_task(churn.run())
            while (elapsed := time.monotonic() - began) < duration + every / 2:
                if churning.done():
                    churning.result()
                sample = {"t": round(elapsed, 1), "at": utcnow().isoformat(),
                          **fleet_usage(cluster),
                          "asyncio_tasks": sum(fleet_tasks(log).values()),
                          "pods": await pods_present(client), "churn": churn.stats()}
                samples.append(sample)
                result.data["rss"] = rss_summary(samples, window, tolerance)
                result.data["leases"] = leases.summary()
                result.data["not_ready"] = nodes.not_ready[:50]
                result.save()
                await asyncio.to_thread(plot, samples, svg, title)
                console.print(f"{elapsed / 60:5.1f} min: RSS {sample['rss_mib']} MiB, "
                              f"{sample['open_fds']} fds, {sample['tcp_connections']} conns, "
                              f"{sample['asyncio_tasks']} tasks, pods {sample['pods']}, "
                              f"max lease gap {result.data['leases']['max_gap_s']}s")
                await asyncio.sleep(max(0.0, every - (time.monotonic() - began - elapsed)))
            churning.cancel()
            await asyncio.gather(churning, return_exceptions=True)
            await churn.stop()
            # Same moment of the 30 s summary cycle as at the start is not guaranteed:
            # wait for fresh summary lines so the end's task counts are current.
            await asyncio.sleep(settle)
            result.data["end"] = {**fleet_usage(cluster), "asyncio_tasks": fleet_tasks(log),
                                  "at": utcnow().isoformat(),
                                  "pods": await pods_present(client)}
            result.data["churn"] = churn.stats()
            result.data["leases"] = leases.summary()
            result.data["not_ready"] = nodes.not_ready[:50]
            result.data["nodes_seen_not_ready"] = len({e[1] for e in nodes.not_ready})
            result.data["plot"] = svg.name
        finally:
            if churning is not None:
                churning.cancel()
            for task in watches:
                task.cancel()
            await asyncio.gather(*watches, *([churning] if churning else []),
                                 return_exceptions=True)


@click.command()
@click.option("--nodes", type=click.IntRange(1), default=2000, show_default=True)
@click.option("--processes", type=click.IntRange(1), default=None,
              help="Fleet processes (default: one per 1000 nodes).")
@click.option("--fidelity", type=click.Choice(["kubelet", "lite"]), default="kubelet",
              show_default=True)
@click.option("--duration", type=click.FloatRange(10), default=3600.0, show_default=True,
              help="Seconds of churn.")
@click.option("--churn", "churn_rate", type=click.FloatRange(0.01), default=2.0,
              show_default=True, help="Pods created (and deleted) per second.")
@click.option("--pod-lifetime", type=click.FloatRange(1), default=60.0, show_default=True,
              help="Seconds from a pod's creation to its deletion.")
@click.option("--sample-every", type=click.FloatRange(1), default=60.0, show_default=True)
@click.option("--flat-window", type=click.FloatRange(1), default=1800.0, show_default=True,
              help="RSS must stay within --tolerance of the first sample of this last window.")
@click.option("--tolerance", type=click.FloatRange(0), default=0.05, show_default=True)
@click.option("--settle", type=click.FloatRange(0), default=35.0, show_default=True,
              help="Seconds before the first and after the last sample (the fleet logs its "
              "tasks every 30 s).")
@click.option("--note", default="", help="Stored in the result (e.g. the machine's state).")
@click.option("--name", default="bench-soak", show_default=True)
@results_dir_option()
def main(nodes: int, processes: int | None, fidelity: str, duration: float, churn_rate: float,
         pod_lifetime: float, sample_every: float, flat_window: float, tolerance: float,
         settle: float, note: str, name: str, results_dir: Path) -> None:
    """N hollow nodes under steady pod churn for an hour: flat RSS, no late lease, no leak."""
    processes = processes or default_processes(nodes)
    parameters = {"nodes": nodes, "processes": processes, "fidelity": fidelity,
                  "duration_s": duration, "churn_pods_per_s": churn_rate,
                  "pod_lifetime_s": pod_lifetime, "sample_every_s": sample_every,
                  "flat_window_s": flat_window, "tolerance": tolerance}

    def body() -> None:
        with result_file(f"soak-{nodes}", results_dir, parameters,
                         note or (SHARED if nodes < 2000 else "")) as result, \
                own_cluster(name, nodes) as cluster:
            start_fleet(cluster, nodes, prefix="sk", fidelity=fidelity, processes=processes)
            asyncio.run(soak(cluster, result, prefix="sk", duration=duration,
                             churn_rate=churn_rate, lifetime=pod_lifetime, every=sample_every,
                             window=flat_window, tolerance=tolerance, settle=settle))

    run_cli(body)


if __name__ == "__main__":
    main()
