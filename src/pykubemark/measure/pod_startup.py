"""Pod startup latency per pod, as clusterloader2's PodStartupLatency defines its phases.

One LIST+WATCH of the selected pods. Pods that exist when ``start()`` begins are left
out: those of a consistent LIST (from etcd) and those of the reflector's first LIST
(served from the apiserver's watch cache, which can lag behind etcd). For every other
pod four instants are kept:

- create:   ``metadata.creationTimestamp``
- schedule: ``lastTransitionTime`` of the ``PodScheduled`` condition
- run:      the latest ``containerStatuses[].state.running.startedAt``
- watch:    when this process received the event in which the pod was first Running
            with all its containers started

and the phases ``create_to_schedule``, ``schedule_to_run``, ``run_to_watch``,
``schedule_to_watch`` and ``pod_startup`` (create→watch, the SLI) are differences of
those. The first three are stamped by the apiserver or the kubelet with 1 s resolution
(truncated), the watch time by our clock with microseconds: a phase ending at "watch" can
read up to 1 s long, a phase between two stamps is whole seconds. clusterloader2 of the
1.20 era read the same fields (its schedule instant came from the scheduler's event).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pykubemark.kube.watch import Reflector
from pykubemark.measure.base import Context, Measurement, Slo
from pykubemark.measure.pods import Pod, existing_uids, timestamp
from pykubemark.measure.registry import POD_STARTUP
from pykubemark.measure.stats import percentiles
from pykubemark.report.output import DataItem

PHASES = {  # name -> (from, to)
    "create_to_schedule": ("create", "schedule"),
    "schedule_to_run": ("schedule", "run"),
    "run_to_watch": ("run", "watch"),
    "schedule_to_watch": ("schedule", "watch"),
    "pod_startup": ("create", "watch"),
}
SOURCES = {
    "create": "metadata.creationTimestamp (apiserver clock, 1 s resolution, truncated)",
    "schedule": "status.conditions[type=PodScheduled].lastTransitionTime "
                "(apiserver clock, 1 s resolution, truncated)",
    "run": "max of status.containerStatuses[].state.running.startedAt "
           "(kubelet clock, 1 s resolution, truncated)",
    "watch": "time the measuring process received the watch event in which the pod was "
             "first Running with all containers started (local clock, microseconds)",
    "note": "the apiserver's timestamps have 1 s resolution: phases ending at watch can "
            "read up to 1 s longer than they were, phases between two stamps are whole "
            "seconds; remote clusters add the clock skew between them and this host",
}


@dataclass
class Record:
    key: str
    create: float | None = None
    schedule: float | None = None
    run: float | None = None
    watch: float | None = None

    def phases(self) -> dict[str, float]:
        """Milliseconds of each phase whose two instants are known."""
        out = {}
        for name, (start, end) in PHASES.items():
            a, b = getattr(self, start), getattr(self, end)
            if a is not None and b is not None:
                out[name] = (b - a) * 1000.0
        return out


class PodStartupLatency(Measurement):
    name = POD_STARTUP.perfdata

    def __init__(self, ctx: Context, selector: str, *,
                 identifier: str = "PodStartupLatency",
                 threshold: float = 5.0, **params: Any) -> None:
        super().__init__(ctx, **params)
        self.selector = selector
        self.identifier = identifier
        self.threshold = threshold
        self.summary_name = f"{self.name}_{identifier}"
        self.records: dict[str, Record] = {}   # by uid
        self._before: set[str] | None = None   # uids listed at start: not measured
        self._existing: set[str] = set()
        self._reflector = Reflector(ctx.client, "/api/v1/pods", Pod, self,
                                    params={"labelSelector": selector},
                                    name=f"{self.name}:{identifier}")

    # -- reflector handler -------------------------------------------------------------
    def on_list(self, items: list[Pod]) -> None:
        if self._before is None:
            self._before = self._existing | {p.metadata.uid for p in items}
            return
        now = time.time()
        for pod in items:  # a relist: whatever changed meanwhile is seen now
            self._observe(pod, now)

    def on_event(self, kind: str, pod: Pod) -> None:
        if kind != "DELETED":
            self._observe(pod, time.time())

    def _observe(self, pod: Pod, received: float) -> None:
        uid = pod.metadata.uid
        if self._before is None or uid in self._before:
            return
        record = self.records.get(uid)
        if record is None:
            record = self.records[uid] = Record(
                pod.key, create=timestamp(pod.metadata.creationTimestamp))
        if record.schedule is None and pod.spec.nodeName:
            record.schedule = pod.scheduled_at()
        if record.watch is None and pod.started():
            record.watch = received
            record.run = pod.run_at()

    # -- life cycle ----------------------------------------------------------------------
    async def _begin(self) -> None:
        self._existing = await existing_uids(self.ctx.client, self.selector)
        self._spawn(self._reflector.run(), "reflector")
        await self._synced(self._reflector.synced, f"pods {self.selector}")

    def latencies(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {name: [] for name in PHASES}
        for record in self.records.values():
            for name, value in record.phases().items():
                out[name].append(value)
        return out

    def write(self) -> None:
        items = []
        for metric, values in self.latencies().items():
            data = percentiles(values)
            if data:
                items.append(DataItem(data, "ms", {"Metric": metric}))
        self.output.perfdata(self.summary_name, items)
        pods = {r.key: r.phases() for r in self.records.values()}
        self.output.write_json(f"raw/{self.summary_name}.json", {
            "unit": "ms", "selector": self.selector, "count": len(pods), "pods": pods,
            "sources": SOURCES,
        })

    def slos(self) -> list[Slo]:
        p99 = percentiles(self.latencies()["pod_startup"]).get("Perc99")
        return [Slo.judge(self.name, f"pod startup p99 ({self.identifier})", p99,
                          self.threshold * 1000.0, "ms")]

    def progress(self) -> dict[str, int]:
        records = self.records.values()
        return {"seen": len(self.records),
                "scheduled": sum(r.schedule is not None for r in records),
                "running": sum(r.watch is not None for r in records)}
