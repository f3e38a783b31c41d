"""Scheduling throughput: pods bound per second, sampled every 5 s (SchedulingThroughput).

clusterloader2 lists the selected pods every 5 s, counts those with ``spec.nodeName`` and
divides the increase by the interval; the summary is p50/p90/p99/max of those windows.
We keep the pod set current with one LIST+WATCH instead of a LIST every 5 s (cheaper on a
large cluster, same count), count each pod once when first seen bound (a pod deleted
later does not make a window negative), leave out pods already bound at ``start()``, and
divide by the measured length of each window rather than the nominal 5 s. A run whose
pods were all bound before the first window closed would have no window at all
(clusterloader2 then reports zeros, and a comparison of runs loses the metric): its one
partial window, from the start to the end, counts instead.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pykubemark.kube.watch import Reflector
from pykubemark.measure.base import Context, Measurement
from pykubemark.measure.pods import Pod
from pykubemark.measure.registry import SCHEDULING_THROUGHPUT
from pykubemark.measure.stats import percentiles
from pykubemark.report.output import DataItem

SERIES_LABEL = "scheduled pods"


class SchedulingThroughput(Measurement):
    name = SCHEDULING_THROUGHPUT.perfdata

    def __init__(self, ctx: Context, selector: str, *, interval: float = 5.0,
                 **params: Any) -> None:
        super().__init__(ctx, **params)
        self.selector = selector
        self.interval = interval
        self.scheduled: set[str] = set()
        self.windows: list[tuple[float, float]] = []   # (seconds since run start, pods/s)
        self._before: set[str] | None = None
        #: The count and the clock where the open window began (None: not sampling yet).
        self._last: tuple[int, float] | None = None
        self._reflector = Reflector(ctx.client, "/api/v1/pods", Pod, self,
                                    params={"labelSelector": selector}, name=self.name)

    def on_list(self, items: list[Pod]) -> None:
        if self._before is None:
            self._before = {p.metadata.uid for p in items if p.spec.nodeName}
        for pod in items:
            self.on_event("ADDED", pod)

    def on_event(self, kind: str, pod: Pod) -> None:
        uid = pod.metadata.uid
        if pod.spec.nodeName and self._before is not None and uid not in self._before:
            self.scheduled.add(uid)

    async def _begin(self) -> None:
        self._spawn(self._reflector.run(), "reflector")
        await self._synced(self._reflector.synced, f"pods {self.selector}")
        self._spawn(self._sample(), "sampler")

    async def _sample(self) -> None:
        self._last = (len(self.scheduled), time.monotonic())
        while True:
            await asyncio.sleep(self.interval)
            self._close_window()

    def _close_window(self) -> None:
        (last_count, last_time), count, now = self._last, len(self.scheduled), time.monotonic()
        rate = (count - last_count) / max(now - last_time, 1e-3)
        self.windows.append((round(self.output.elapsed(), 3), rate))
        self._last = (count, now)

    async def _end(self) -> None:
        if not self.windows and self._last is not None and len(self.scheduled) > self._last[0]:
            self._close_window()

    def write(self) -> None:
        data = percentiles((rate for _, rate in self.windows), with_max=True)
        self.output.perfdata(self.name, [DataItem(data, "1/s")] if data else [])
        self.output.series(SCHEDULING_THROUGHPUT.series, "1/s",
                           {SERIES_LABEL: [[t, rate] for t, rate in self.windows]})

    def progress(self) -> dict[str, int]:
        return {"scheduled": len(self.scheduled)}
