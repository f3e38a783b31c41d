"""Nodes that stopped being Ready during the run (NodeReadiness).

A density run whose nodes went NotReady measured a cluster that was not whole: the
node-lifecycle controller found leases or node statuses late (the apiserver or etcd fell
behind, or the hollow side did) and began tainting nodes and marking their pods not
ready. kubemark's own e2e framework refuses such a run; here it is an SLO — no node turns
NotReady — unless the scenario fails nodes on purpose, when it is data only. The
controller-manager's verdict is read from the nodes' Ready condition (one LIST+WATCH),
never from the hollow nodes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import msgspec

from pykubemark.kube.nodes import is_ready
from pykubemark.kube.watch import Reflector
from pykubemark.measure.base import Context, Measurement, Slo
from pykubemark.measure.registry import NODE_READINESS
from pykubemark.report.output import DataItem

SERIES_LABEL = "nodes not Ready"
SLO_NAME = "nodes turned NotReady during the run"


class Meta(msgspec.Struct):
    name: str = ""
    resourceVersion: str = ""  # where the reflector's watch resumes


class Condition(msgspec.Struct):
    type: str = ""
    status: str = ""


class Status(msgspec.Struct):
    conditions: list[Condition] = []


class Node(msgspec.Struct):
    metadata: Meta = msgspec.field(default_factory=Meta)
    status: Status = msgspec.field(default_factory=Status)


class NodeReadiness(Measurement):
    name = NODE_READINESS.perfdata

    def __init__(self, ctx: Context, *, selector: str = "", judged: bool = True,
                 interval: float = 5.0, **params: Any) -> None:
        super().__init__(ctx, **params)
        #: False where the scenario fails nodes itself: their NotReady is not a verdict.
        self.judged = judged
        self.interval = interval
        self.ready: set[str] = set()
        self.not_ready: set[str] = set()
        #: Not Ready when the measurement began (None: not listed yet); not turned.
        self.not_ready_at_start: int | None = None
        #: Transitions from Ready to not Ready (False, or Unknown), per node.
        self.turned: Counter[str] = Counter()
        self.max_not_ready = 0
        self.samples: list[tuple[float, int]] = []
        #: The run's nodes (``--node-selector``): others' nodes are not its verdict.
        self._reflector = Reflector(ctx.client, "/api/v1/nodes", Node, self, name=self.name,
                                    params={"labelSelector": selector} if selector else None)

    # -- reflector handler ---------------------------------------------------------------
    def on_list(self, items: list[Node]) -> None:
        listed = {n.metadata.name for n in items}
        for name in (self.ready | self.not_ready) - listed:
            self.on_event("DELETED", Node(Meta(name)))
        for node in items:
            self.on_event("ADDED", node)
        if self.not_ready_at_start is None:
            self.not_ready_at_start = len(self.not_ready)

    def on_event(self, kind: str, node: Node) -> None:
        name = node.metadata.name
        if kind == "DELETED":
            self.ready.discard(name)
            self.not_ready.discard(name)
            return
        if is_ready(node):
            self.ready.add(name)
            self.not_ready.discard(name)
            return
        self.not_ready.add(name)
        self.max_not_ready = max(self.max_not_ready, len(self.not_ready))
        if name in self.ready:  # a node not yet Ready since it registered has not turned
            self.ready.discard(name)
            self.turned[name] += 1

    # -- life cycle ------------------------------------------------------------------------
    async def _begin(self) -> None:
        self._spawn(self._reflector.run(), "reflector")
        await self._synced(self._reflector.synced, "nodes")
        self._spawn(self._sample(), "sampler")

    async def _sample(self) -> None:
        while True:
            self.samples.append((round(self.output.elapsed(), 3), len(self.not_ready)))
            await asyncio.sleep(self.interval)

    def figures(self) -> dict[str, float]:
        return {"notReadyAtStart": self.not_ready_at_start or 0,
                "turnedNotReady": len(self.turned),
                "transitionsToNotReady": sum(self.turned.values()),
                "maxNotReady": self.max_not_ready,
                "notReadyAtEnd": len(self.not_ready)}

    def write(self) -> None:
        if self.not_ready_at_start is None:  # never listed: nothing measured, nothing claimed
            return
        self.output.perfdata(self.name, [DataItem(self.figures(), "nodes")])
        self.output.series(NODE_READINESS.series, "nodes",
                           {SERIES_LABEL: [[t, n] for t, n in self.samples]})

    def slos(self) -> list[Slo]:
        if not self.judged:
            return []
        value = float(len(self.turned)) if self.not_ready_at_start is not None else None
        return [Slo.judge(self.name, SLO_NAME, value, 0.0, "nodes")]

    def progress(self) -> dict[str, int]:
        return {"not_ready": len(self.not_ready)}
