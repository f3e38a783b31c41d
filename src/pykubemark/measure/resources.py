"""CPU and memory of the local processes under test, sampled over time (ResourceUsage).

clusterloader2's ResourceUsageSummary reads the containers of the control plane from
the kubelets' stats; here the control plane and the hollow nodes are local processes, so
we read them from /proc with psutil: CPU in cores (CPU seconds of the process and all
its descendants over the interval, divided by the interval) and resident memory in MiB
(summed over the same processes). A child that appeared during an interval is charged
all its CPU time; a process that is gone simply stops being counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil

from pykubemark.measure.base import Context, Measurement
from pykubemark.measure.registry import RESOURCE_USAGE
from pykubemark.measure.stats import percentiles
from pykubemark.report.output import DataItem

MIB = 1024.0 * 1024.0
UNITS = {"cpu": "cores", "memory": "MiB"}


def process_tree(root: int | psutil.Process) -> list[psutil.Process]:
    """The process and its descendants as they are now; empty once it is gone."""
    try:
        proc = root if isinstance(root, psutil.Process) else psutil.Process(root)
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []


def cpu_seconds(procs: Iterable[psutil.Process]) -> float:
    """User + system CPU seconds of ``procs``, each since it started; one that is gone
    counts nothing, so a difference of two readings may miss a process that exited."""
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def rss_bytes(procs: Iterable[psutil.Process]) -> int:
    """Resident memory of ``procs`` now; one that is gone counts nothing."""
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


@dataclass
class Tree:
    """One named process and its descendants, with the CPU seconds last read per pid."""

    pid: int
    cpu: dict[int, float] = field(default_factory=dict)

    def read(self, since: float) -> tuple[float, float] | None:
        """(CPU seconds used since the last read, RSS bytes), None once the root is gone."""
        procs = process_tree(self.pid)
        if not procs:
            return None
        used, rss, now = 0.0, 0.0, {}
        for proc in procs:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    total = times.user + times.system
                    mem = proc.memory_info().rss
                    created = proc.create_time()
            except psutil.Error:
                continue
            now[proc.pid] = total
            rss += mem
            if proc.pid in self.cpu:
                used += max(0.0, total - self.cpu[proc.pid])
            elif created >= since:
                used += total
        self.cpu = now
        return used, rss


class ResourceUsage(Measurement):
    name = RESOURCE_USAGE.perfdata
    series_name = RESOURCE_USAGE.series

    def __init__(self, ctx: Context, *, interval: float = 5.0, **params: Any) -> None:
        super().__init__(ctx, **params)
        self.interval = interval
        self.trees = {name: Tree(pid) for name, pid in ctx.processes.items()}
        self.series: dict[str, dict[str, list[list[float]]]] = {"cpu": {}, "memory": {}}
        self._last = time.time()

    async def _begin(self) -> None:
        await asyncio.to_thread(self._read_all)  # baseline of CPU times: no sample yet
        self._spawn(self._sample_loop(), "sampler")

    def _read_all(self) -> dict[str, tuple[float, float]]:
        since, self._last = self._last, time.time()
        out = {}
        for name, tree in self.trees.items():
            got = tree.read(since)
            if got is not None:
                out[name] = got
        return out

    async def _sample_loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            before = self._last
            readings = await asyncio.to_thread(self._read_all)
            elapsed = max(self._last - before, 1e-6)
            t = round(self.output.elapsed(), 3)
            for name, (cpu_seconds, rss) in readings.items():
                self.series["cpu"].setdefault(name, []).append([t, cpu_seconds / elapsed])
                self.series["memory"].setdefault(name, []).append([t, rss / MIB])
            self.write()

    def write(self) -> None:
        items = []
        for resource, by_name in self.series.items():
            for name, points in by_name.items():
                data = percentiles((v for _, v in points), with_max=True)
                if data:
                    items.append(DataItem(data, UNITS[resource],
                                          {"Name": name, "Resource": resource}))
            self.output.series(f"{self.series_name}_{resource}", UNITS[resource], by_name)
        self.output.perfdata(self.name, items)

    def progress(self) -> dict[str, int]:
        return {"samples": max((len(p) for p in self.series["cpu"].values()), default=0)}
