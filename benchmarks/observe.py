"""What the reliability benchmarks (restarts, soak, overload) watch while they disturb a
cluster, all from the apiserver's side and all through `pykubemark.kube.Client`: lease
renewals and node readiness by watch, request counters from the apiserver's /metrics
every second, and the hollow fleet's processes from outside (psutil).

The observers outlive the apiserver they watch: a killed apiserver closes their watches
and fails their scrapes, and they relist or retry until it is back, counting their own
LISTs so that the relist storm they measure is not blamed on the hollow nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from benchlib import (
    ResultFile,
    admin_config,
    console,
    environment,
    recording_status,
    shielded,
    start_cluster,
    tear_down,
    utcnow,
)
from prometheus_client.parser import text_string_to_metric_families

from pykubemark.cluster.control_plane import LocalCluster
from pykubemark.errors import UserError
from pykubemark.kube import ApiError, Client
from pykubemark.kube.client import NETWORK_ERRORS
from pykubemark.measure.resources import cpu_seconds, process_tree, rss_bytes
from pykubemark.measure.stats import percentiles
from pykubemark.provision.releases import default_release


def grace_period() -> float:
    """kube-controller-manager's --node-monitor-grace-period default in the release the
    benchmarks' clusters run: a lease older than this makes a node NotReady (Unknown).
    40 s, and 50 s since 1.32."""
    return 50.0 if default_release().minor_version >= (1, 32) else 40.0


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def admin_client(cluster: LocalCluster) -> Client:
    """system:masters: exempt from priority and fairness, so never throttled itself."""
    return Client(admin_config(cluster), user_agent="pykubemark-bench", timeout=30.0)


# -- watches ---------------------------------------------------------------------------------
class Watched:
    """List then watch one collection until cancelled; relist after any failure.
    ``lists`` counts this observer's own LISTs (it is subtracted from the storm)."""

    def __init__(self, client: Client, path: str, prefix: str) -> None:
        self.client = client
        self.path = path
        self.prefix = prefix
        self.lists = 0
        self.synced = asyncio.Event()

    def see(self, obj: dict[str, Any]) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        while True:
            try:
                body = json.loads(await self.client.get(self.path))
                self.lists += 1
                rv = body["metadata"]["resourceVersion"]
                for item in body["items"]:
                    self._see(item)
                self.synced.set()
                while True:
                    params = {"watch": "1", "resourceVersion": rv,
                              "allowWatchBookmarks": "true", "timeoutSeconds": "300"}
                    async for line in self.client.stream(self.path, params):
                        event = json.loads(line)
                        if event["type"] == "ERROR":
                            raise ApiError(event["object"].get("code", 500), line)
                        rv = event["object"]["metadata"]["resourceVersion"]
                        if event["type"] in ("ADDED", "MODIFIED"):
                            self._see(event["object"])
            except (ApiError, *NETWORK_ERRORS, ValueError, KeyError):
                await asyncio.sleep(1.0)

    def _see(self, obj: dict[str, Any]) -> None:
        if obj["metadata"]["name"].startswith(self.prefix + "-"):
            self.see(obj)


@dataclass
class Renewals:
    """When a node first renewed its lease after a mark (a component back)."""

    at: dt.datetime
    first: dict[str, dt.datetime] = field(default_factory=dict)


class Leases(Watched):
    """Every node's lease renewTime as the apiserver stores it: gaps between renewals
    (lateness) and the first renewal after a given moment (recovery)."""

    def __init__(self, client: Client, prefix: str) -> None:
        super().__init__(client, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                         prefix)
        self.last: dict[str, dt.datetime] = {}
        self.max_gap: dict[str, float] = {}
        #: Every gap since the last reset, for percentiles over all renewals.
        self.gaps: list[float] = []
        self.marks: list[Renewals] = []

    def see(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        renewed = parse_time(obj.get("spec", {}).get("renewTime"))
        if renewed is None:
            return
        previous = self.last.get(name)
        if previous is not None and renewed > previous:
            gap = (renewed - previous).total_seconds()
            self.max_gap[name] = max(self.max_gap.get(name, 0.0), gap)
            self.gaps.append(gap)
        if previous is None or renewed > previous:
            self.last[name] = renewed
        for mark in self.marks:
            if renewed > mark.at and name not in mark.first:
                mark.first[name] = renewed

    def reset_gaps(self) -> None:
        self.max_gap.clear()
        self.gaps.clear()

    def summary(self) -> dict[str, Any]:
        """Gaps between renewals since the last reset: over all renewals and each node's
        longest, against the controller-manager's grace period."""
        longest = list(self.max_gap.values())
        return {
            "nodes": len(self.last),
            "nodes_renewing": len(longest),
            "renewals": len(self.gaps),
            "max_gap_s": round(max(longest, default=0.0), 2),
            "gap_s": {k: round(v, 2) for k, v in percentiles(self.gaps).items()},
            "max_gap_per_node_s": {k: round(v, 2) for k, v in percentiles(longest).items()},
            "grace_period_s": grace_period(),
            "nodes_late_beyond_grace": sum(g > grace_period() for g in longest),
        }

    def mark(self, at: dt.datetime) -> Renewals:
        mark = Renewals(at)
        self.marks.append(mark)
        return mark


class Nodes(Watched):
    """Each node's Ready condition; every time one is seen not Ready after it was."""

    def __init__(self, client: Client, prefix: str) -> None:
        super().__init__(client, "/api/v1/nodes", prefix)
        self.ready: dict[str, bool] = {}
        self.transition: dict[str, str] = {}
        #: (when seen, node, Ready status, reason), for nodes that had been Ready.
        self.not_ready: list[tuple[str, str, str, str]] = []

    def see(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        ready = next((c for c in obj.get("status", {}).get("conditions", [])
                      if c["type"] == "Ready"), None)
        if ready is None:
            return
        is_ready = ready["status"] == "True"
        if not is_ready and self.ready.get(name):
            self.not_ready.append((utcnow().isoformat(), name, ready["status"],
                                   ready.get("reason", "")))
        self.ready[name] = is_ready
        self.transition[name] = ready.get("lastTransitionTime", "")

    def count_ready(self) -> int:
        return sum(self.ready.values())

    def not_ready_since(self, since: dt.datetime) -> list[tuple[str, str, str, str]]:
        return [event for event in self.not_ready if event[0] >= since.isoformat()]


# -- the apiserver's counters ----------------------------------------------------------------
_REQUEST = re.compile(r'^apiserver_request_total\{([^}]*)\} (\S+)$', re.M)
#: Streaming lists (a WATCH with sendInitialEvents, what clients of 1.35+ send instead
#: of a LIST): counted as WATCHes by apiserver_request_total, and here once each, when
#: the initial events were all sent.
_WATCH_LIST = re.compile(r'^apiserver_watch_list_duration_seconds_count\{([^}]*)\} (\S+)$',
                         re.M)
#: Requests a filter answered before any handler (max-in-flight and APF's 429s, timeouts):
#: they are not in apiserver_request_total.
_TERMINATED = re.compile(r'^apiserver_request_terminations_total\{([^}]*)\} (\S+)$', re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')
_FLOWCONTROL = re.compile(
    r'^apiserver_flowcontrol_(dispatched|rejected)_requests_total\{([^}]*)\} (\S+)$', re.M)


@dataclass
class Sample:
    """Cumulative counters of one scrape of the apiserver's /metrics."""

    t: float  # seconds since the sampler started
    at: str
    #: LISTs and streaming lists (`read_counters`).
    lists: float
    #: Lists by resource: which clients relisted (leases, nodes, pods: the hollow nodes).
    lists_by_resource: dict[str, float]
    requests: float
    throttled: float  # 429s: answered by a handler or terminated by a filter
    #: priority level → (dispatched, rejected), from priority and fairness.
    levels: dict[str, tuple[float, float]]


def read_counters(text: str) -> tuple[float, dict[str, float], float, float,
                                     dict[str, tuple[float, float]]]:
    lists = total = throttled = 0.0
    by_resource: dict[str, float] = {}
    for match in _REQUEST.finditer(text):
        labels = dict(_LABEL.findall(match.group(1)))
        value = float(match.group(2))
        total += value
        if labels.get("verb") == "LIST":
            lists += value
            resource = labels.get("resource", "?")
            by_resource[resource] = by_resource.get(resource, 0.0) + value
        if labels.get("code") == "429":
            throttled += value
    for match in _WATCH_LIST.finditer(text):
        value = float(match.group(2))
        lists += value
        resource = dict(_LABEL.findall(match.group(1))).get("resource", "?")
        by_resource[resource] = by_resource.get(resource, 0.0) + value
    for match in _TERMINATED.finditer(text):
        if dict(_LABEL.findall(match.group(1))).get("code") == "429":
            throttled += float(match.group(2))
    levels: dict[str, list[float]] = {}
    for match in _FLOWCONTROL.finditer(text):
        labels = dict(_LABEL.findall(match.group(2)))
        pair = levels.setdefault(labels.get("priority_level", "?"), [0.0, 0.0])
        pair[0 if match.group(1) == "dispatched" else 1] += float(match.group(3))
    return lists, by_resource, total, throttled, {k: (v[0], v[1]) for k, v in levels.items()}


class Counters:
    """The apiserver's request counters every ``every`` seconds. A restarted apiserver
    starts its counters at 0: a decrease is a reset, and the new value is the increase."""

    def __init__(self, client: Client, every: float = 1.0) -> None:
        self.client = client
        self.every = every
        self.samples: list[Sample] = []
        self.failed = 0
        self.started = time.monotonic()

    async def run(self) -> None:
        while True:
            began = time.monotonic()
            try:
                text = (await self.client.get("/metrics")).decode()
                # timed when the answer came, as its counters were read then: a scrape
                # the apiserver held for seconds counts the increase over those seconds
                self.samples.append(Sample(round(time.monotonic() - self.started, 2),
                                           utcnow().isoformat(), *read_counters(text)))
            except (ApiError, *NETWORK_ERRORS):
                self.failed += 1
            await asyncio.sleep(max(0.0, self.every - (time.monotonic() - began)))

    def rates(self, what: Callable[[Sample], float], since: str = "",
              until: str = "~") -> list[tuple[str, float]]:
        """(time, per-second increase since the previous scrape) between two instants."""
        return [(at, delta / span) for at, delta, span in self._deltas(what, since, until)]

    def increase(self, what: Callable[[Sample], float], since: str, until: str = "~") -> float:
        return sum(delta for _, delta, _ in self._deltas(what, since, until))

    def _deltas(self, what: Callable[[Sample], float], since: str,
                until: str) -> list[tuple[str, float, float]]:
        out = []
        for a, b in zip(self.samples, self.samples[1:], strict=False):
            if not since <= b.at <= until:
                continue
            before, after = what(a), what(b)
            out.append((b.at, after - before if after >= before else after,
                        max(b.t - a.t, 1e-3)))
        return out


#: Seconds over which the LIST rate is averaged to tell when a storm settled.
SMOOTH = 5.0


def storm(counters: Counters, *, baseline: tuple[str, str], since: dt.datetime,
          until: str = "~", own_lists: float = 0.0) -> dict[str, Any]:
    """The list rate (LISTs and streaming lists) after a disruption against the quiet
    rate before it: its peak, and when (seconds after ``since``) the rate over ``SMOOTH``
    seconds last exceeded the quiet mean + 1/s: settled after that (to within those
    seconds). Smoothed, so that a controller's periodic lists (the cronjob controller's,
    every 10 s) are not a storm."""
    lists = lambda s: s.lists  # noqa: E731
    quiet_rates = counters.rates(lists, *baseline)
    quiet = sorted(rate for _, rate in quiet_rates)
    quiet_p90 = quiet[int(0.9 * (len(quiet) - 1))] if quiet else 0.0
    threshold = (sum(quiet) / len(quiet) if quiet else 0.0) + 1.0
    after = counters.rates(lists, since.isoformat(), until)
    window = max(1, round(SMOOTH / counters.every))
    above = [after[i][0] for i in range(len(after))
             if sum(r for _, r in after[max(0, i - window + 1):i + 1]) / window > threshold]
    peak_at, peak = max(after, key=lambda pair: pair[1], default=("", 0.0))
    settled = (parse_time(above[-1]) - since).total_seconds() if above else 0.0
    return {
        "baseline_list_rate_mean": round(sum(quiet) / len(quiet), 2) if quiet else None,
        "baseline_list_rate_p90": round(quiet_p90, 2),
        "baseline_list_rate_peak": round(max(quiet, default=0.0), 2),
        "settle_threshold": round(threshold, 2),
        "peak_list_rate": round(peak, 2),
        "peak_at": peak_at,
        "lists_total": round(counters.increase(lists, since.isoformat(), until)),
        "lists_by_resource": lists_by_resource(counters, since.isoformat(), until),
        "lists_by_this_benchmark": own_lists,
        "settled_after_s": round(settled, 1),
        "samples": len(after),
        "baseline_list_rate_per_second": [[at, round(rate, 2)] for at, rate in quiet_rates],
        "list_rate_per_second": [[at, round(rate, 2)] for at, rate in after],
    }


def lists_by_resource(counters: Counters, since: str, until: str) -> dict[str, int]:
    resources = {r for s in counters.samples for r in s.lists_by_resource}
    counts = {r: round(counters.increase(lambda s, r=r: s.lists_by_resource.get(r, 0.0),
                                         since, until)) for r in resources}
    return dict(sorted(((r, n) for r, n in counts.items() if n), key=lambda p: -p[1]))


# -- the fleet's own counters ----------------------------------------------------------------
#: Counter samples by ``name{labels}`` (labels sorted): summable over processes and
#: comparable between two scrapes.
Counts = dict[str, float]
#: The fleet's requests by verb, resource and code (code "error": no answer).
REQUESTS = "pykubemark_api_requests_total"


def parse_counts(text: str, counts: Counts | None = None) -> Counts:
    """The counter, histogram and gauge samples of one /metrics text, added to
    ``counts``."""
    counts = {} if counts is None else counts
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            # gauges too: summed over processes, as the fleet's nodes by state
            if family.type == "gauge" or s.name.endswith(("_total", "_sum", "_count",
                                                          "_bucket")):
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                key = f"{s.name}{{{labels}}}"
                counts[key] = counts.get(key, 0.0) + s.value
    return counts


def fleet_ports(cluster: LocalCluster, processes: int) -> list[int]:
    """The /metrics port of each fleet process (`up --nodes` gives them in a row)."""
    first = cluster.state.ports.get("hollow-metrics") or 0
    return [first + k for k in range(processes)] if first else []


def read_fleet(ports: list[int]) -> Counts:
    """The fleet's counters summed over its processes (one that does not answer adds
    nothing)."""
    counts: Counts = {}
    for port in ports:
        with contextlib.suppress(OSError):
            parse_counts(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                                timeout=5).read().decode(), counts)
    return counts


def gained(after: Counts, before: Counts, name: str, where: str = "") -> dict[str, float]:
    """What counter ``name`` gained between two scrapes, per label set containing
    ``where``."""
    return {key[len(name) + 1:-1]: value - before.get(key, 0.0)
            for key, value in sorted(after.items())
            if key.startswith(name + "{") and where in key}


def grown(after: Counts, before: Counts, name: str, *, where: str = "") -> float:
    return sum(gained(after, before, name, where).values())


def by_labels(after: Counts, before: Counts, name: str, where: str = "") -> dict[str, int]:
    """`gained`, rounded, of the label sets that grew."""
    return {k: round(v) for k, v in gained(after, before, name, where).items() if round(v)}


def refusals(after: Counts, before: Counts) -> dict[str, int]:
    """The fleet's requests the apiserver answered 5xx or 429 (priority and fairness,
    max-in-flight) between two scrapes."""
    return {"answers_5xx": round(sum(grown(after, before, REQUESTS, where=f"code={c}")
                                     for c in range(500, 505))),
            "answers_429": round(grown(after, before, REQUESTS, where="code=429"))}


def bucket_bound(after: Counts, before: Counts, name: str, q: float = 1.0) -> float | None:
    """The upper bound of the bucket of histogram ``name`` where its ``q`` quantile of
    what it gained between two scrapes lies (q=1: no observation took longer). None:
    nothing gained, or it lies in +Inf."""
    bounds = []
    for key, value in after.items():
        if key.startswith(name + "_bucket{"):
            le = key.split("le=", 1)[1].rstrip("}").split(",")[0]
            bounds.append((float(le), value - before.get(key, 0.0)))
    bounds.sort()
    total = bounds[-1][1] if bounds else 0.0
    if not total:
        return None
    for bound, cumulative in bounds:
        if cumulative >= q * total:
            return None if bound == float("inf") else bound
    return None


# -- the fleet, from outside ------------------------------------------------------------------
def fleet_processes(cluster: LocalCluster, name: str = "hollow") -> list[psutil.Process]:
    """The supervisor `up --nodes` started and its workers."""
    proc = cluster.state.proc(name)
    if proc is None or proc.process() is None:
        raise UserError(f"the hollow fleet of cluster '{cluster.state.name}' is not running")
    top = psutil.Process(proc.pid)
    return [top, *top.children(recursive=True)]


def fleet_usage(cluster: LocalCluster) -> dict[str, Any]:
    """RSS, open file descriptors and TCP connections of every fleet process."""
    rss = fds = conns = 0
    procs = fleet_processes(cluster)
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess), p.oneshot():
            rss += p.memory_info().rss
            fds += p.num_fds()
            conns += len(p.net_connections(kind="tcp"))
    return {"processes": len(procs), "rss_mib": round(rss / (1 << 20), 1),
            "open_fds": fds, "tcp_connections": conns}


#: What psutil counts as the machine busy (all but idle and iowait).
BUSY = ("user", "nice", "system", "irq", "softirq", "steal")


def cpu_readings(cluster: LocalCluster) -> dict[str, tuple[int, float]]:
    """(pid, CPU seconds since it started) of each of the cluster's processes with its
    children, and the whole machine's busy seconds under "machine"."""
    readings = {p.name: (p.pid, cpu_seconds(process_tree(p.pid)))
                for p in cluster.state.running()}
    times = psutil.cpu_times()
    readings["machine"] = (0, sum(getattr(times, f, 0.0) for f in BUSY))
    return readings


def rss_readings(cluster: LocalCluster, digits: int | None = 1) -> dict[str, float]:
    """MiB resident of each of the cluster's processes with its children, now."""
    return {p.name: round(rss_bytes(process_tree(p.pid)) / (1 << 20), digits)
            for p in cluster.state.running()}


def cores_between(after: dict[str, tuple[int, float]], before: dict[str, tuple[int, float]],
                  seconds: float) -> dict[str, float]:
    """Mean cores of each process over the window; a process started within it (a
    restarted component: another pid) counts all its CPU."""
    cores = {}
    for name, (pid, used) in after.items():
        earlier = before.get(name)
        used -= earlier[1] if earlier and earlier[0] == pid else 0.0
        cores[name] = round(used / max(seconds, 1e-3), 2)
    return cores


_TASKS = re.compile(r"shard (\d+): .*; (\d+) asyncio tasks$", re.M)


def fleet_tasks(log: Path) -> dict[str, int]:
    """asyncio tasks per shard, from each shard's latest summary line in the fleet log."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    return {shard: int(tasks) for shard, tasks in _TASKS.findall(text)}


async def wait_until(what: str, done: Callable[[], bool], timeout: float,
                     check: Callable[[], None] = lambda: None) -> float:
    """Seconds until ``done()``; a `UserError` after ``timeout``."""
    started = time.monotonic()
    while not done():
        check()
        if time.monotonic() - started > timeout:
            raise UserError(f"{what}: not after {timeout:.0f}s")
        await asyncio.sleep(0.5)
    return time.monotonic() - started


# -- a benchmark's life ------------------------------------------------------------------------
#: Every committed result says what machine state its numbers come from.
SHARED = ("small size on a shared machine (2 cores used by other sessions' clusters at the "
          "same time): proves the script, not the product's limits")


def default_processes(nodes: int) -> int:
    """One fleet process per 1000 kubelet-fidelity nodes: what one process holds on one
    core (benchmarks/results/scale-kubelet-*.json)."""
    return max(1, -(-nodes // 1000))


def start_fleet(cluster: LocalCluster, nodes: int, *, prefix: str, fidelity: str,
                processes: int) -> None:
    """The supervised fleet of `pykubemark up --nodes` (a dead worker is replaced)."""
    from pykubemark.cluster.hollow import HollowArgs, start_hollow

    args = HollowArgs(nodes=nodes, prefix=prefix, fidelity=fidelity, processes=processes)
    with console.status("starting hollow nodes") as status:
        start_hollow(cluster, args, progress=status.update)
    console.print(f"{nodes} hollow nodes Ready ({fidelity}, {processes} process(es))")


def _relative(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return path.name


@contextlib.contextmanager
def result_file(kind: str, directory: Path, parameters: dict[str, Any],
                note: str) -> Iterator[ResultFile]:
    """The result JSON, saved at once and after every step by the caller; its status is
    "complete" only if the body finished, else why it did not."""
    import shlex
    import sys

    result = ResultFile(kind, directory)
    result.data = {
        "benchmark": kind,
        "command": shlex.join([_relative(Path(sys.executable)), *sys.argv]),
        "note": note,
        "status": "running",
        "started": utcnow().isoformat(),
        "parameters": parameters,
        "environment": environment(),
    }
    result.save()
    console.print(f"results: {result.path}")
    try:
        with recording_status(result.data):
            yield result
    finally:
        result.data["ended"] = utcnow().isoformat()
        with shielded():
            result.save()


@contextlib.contextmanager
def own_cluster(name: str, size: int, apiserver_args: Iterable[str] = ()) -> Iterator[LocalCluster]:
    """A cluster for this run only, stopped whatever happens (a second Ctrl-C included)."""
    cluster = start_cluster(name, size=size, apiserver_args=apiserver_args)
    try:
        yield cluster
    finally:
        tear_down(cluster, name)
