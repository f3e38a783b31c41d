"""The cyclic garbage collector, kept off a fleet's critical path.

A process of a thousand hollow nodes holds millions of long-lived objects (TLS
contexts, connections, clients, node state, reflector stores). CPython's full
collection walks every one of them, and does so again whenever the survivors of
younger collections grow by a quarter: at 1000 nodes under pod churn a quarter of the
process's CPU went to ``gc_collect_main`` (py-spy), and each full pass stops the event
loop for as long as it takes, which is what a late lease renewal looks like from the
apiserver's side.

Two things fix that without turning the collector off. The young generation is
collected after 10 000 allocations instead of 700, so the temporaries of a request
(headers, frames, dicts of a status) mostly die by reference count before a collection
would promote them. And once every node of the process has registered, what exists is
the fleet itself, which lives as long as the process: it is frozen (``gc.freeze``), so
later full collections walk only what came after — pods, watches, requests. A node
restarted by chaos leaves its old objects in the frozen set, where a cycle among them
would never be collected: the fleet then asks for a rebaseline (unfreeze, collect,
freeze), at most once in ten minutes: the full collection it takes is the pause this
module exists to avoid.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("pykubemark.hollow")

#: Allocations between young collections (CPython's default is 700).
YOUNG_THRESHOLD = 10_000
#: At most one rebaseline per this many seconds, however many nodes restart.
REBASELINE_EVERY = 600.0


def configure() -> None:
    """Thresholds for a fleet process; the older generations keep their defaults."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


class Baseline:
    """The frozen part of the heap: set once the fleet is up, renewed when asked."""

    def __init__(self) -> None:
        self.frozen_at: float | None = None
        self.stale = False

    def freeze(self) -> int:
        """Exempt every object alive now from later collections; returns how many were
        frozen. The first time, only the younger generations are collected first (a
        full pass over a thousand nodes' heap is the pause to avoid, while the fleet is
        already renewing leases: what garbage the old generation holds then stays, a
        bounded one-off); a rebaseline collects everything, the old kubelets' cycles
        being why it was asked for."""
        started = time.monotonic()
        if self.frozen_at is None:
            gc.collect(1)
        else:
            gc.unfreeze()
            gc.collect()
        gc.freeze()
        self.frozen_at, self.stale = time.monotonic(), False
        frozen = gc.get_freeze_count()
        log.info("heap baseline: %d objects frozen in %.2f s", frozen,
                 self.frozen_at - started)
        return frozen

    def due(self, now: float) -> bool:
        """A rebaseline was asked for and the last one is old enough."""
        return (self.stale and self.frozen_at is not None
                and now - self.frozen_at >= REBASELINE_EVERY)
