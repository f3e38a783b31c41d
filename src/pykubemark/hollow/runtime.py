"""A node's container runtime as one server its pods share.

A real node's runtime makes the sandboxes and starts the containers of every pod the
kubelet hands it at once, on the node's few cores: on the real nodes of
``benchmarks/sensitivity.py`` a pod took about four seconds from its binding to Running
when ten arrived at once, under one second when a slower scheduler spread their arrival.
A fixed delay per pod cannot show that. Two disciplines can:

- processor sharing (`SharedRuntime`): each pod's work (seconds at full speed) advances
  at ``min(1, slots / k)`` while ``k`` pods are in the runtime, so pods that arrive
  together finish together;
- a queue (`QueuedRuntime`): ``slots`` pods at a time, in the order they came, so they
  finish one after another — as the real nodes' sandboxes were ready, evenly spaced.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

#: Work left below this (seconds) is done: a timer may fire a hair early.
EPSILON = 1e-6


class ProcessorSharing(Generic[K]):
    """The arithmetic, on a clock the caller passes in."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("a runtime needs at least one slot")
        self.slots = slots
        self.remaining: dict[K, float] = {}
        self.at = 0.0

    def rate(self) -> float:
        """How fast each job advances now (work seconds per second)."""
        return min(1.0, self.slots / len(self.remaining)) if self.remaining else 1.0

    def _advance(self, now: float) -> None:
        if self.remaining and now > self.at:
            step = (now - self.at) * self.rate()
            for key in self.remaining:
                self.remaining[key] -= step
        self.at = max(self.at, now)

    def add(self, key: K, work: float, now: float) -> None:
        self._advance(now)
        self.remaining[key] = max(0.0, work)

    def remove(self, key: K, now: float) -> None:
        self._advance(now)
        self.remaining.pop(key, None)

    def next_finish(self) -> float | None:
        """When the job with the least work left is done, if nothing joins or leaves."""
        if not self.remaining:
            return None
        return self.at + max(0.0, min(self.remaining.values())) / self.rate()

    def finished(self, now: float) -> list[K]:
        """The jobs done by ``now``, taken out."""
        self._advance(now)
        done = [key for key, left in self.remaining.items() if left <= EPSILON]
        for key in done:
            del self.remaining[key]
        return done


class RuntimeJob:
    """One pod's work in the runtime; cancelled like a timer (the pod deleted first)."""

    __slots__ = ("_done", "_runtime")

    def __init__(self, runtime: SharedRuntime | QueuedRuntime, done: Callable[[], None]
                 ) -> None:
        self._runtime: SharedRuntime | QueuedRuntime | None = runtime
        self._done = done

    def cancel(self) -> None:
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            runtime.leave(self)

    def finish(self) -> None:
        if self._runtime is not None:
            self._runtime = None
            self._done()


class SharedRuntime:
    """Processor sharing on the running loop's clock, one timer for the next job done."""

    def __init__(self, slots: int) -> None:
        self._sharing: ProcessorSharing[RuntimeJob] = ProcessorSharing(slots)
        self._timer: asyncio.TimerHandle | None = None

    @property
    def slots(self) -> int:
        return self._sharing.slots

    def __len__(self) -> int:
        return len(self._sharing.remaining)

    def submit(self, work: float, done: Callable[[], None]) -> RuntimeJob:
        """``done`` is called once ``work`` seconds of the runtime's full speed are spent."""
        job = RuntimeJob(self, done)
        self._sharing.add(job, work, asyncio.get_running_loop().time())
        self._reschedule()
        return job

    def leave(self, job: RuntimeJob) -> None:
        self._sharing.remove(job, asyncio.get_running_loop().time())
        self._reschedule()

    def _reschedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = self._sharing.next_finish()
        if when is not None:
            self._timer = asyncio.get_running_loop().call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        done = self._sharing.finished(asyncio.get_running_loop().time())
        self._reschedule()
        for job in done:
            job.finish()


class QueuedRuntime:
    """First come, first served, ``slots`` jobs at a time, on the running loop's clock;
    a job that leaves before its turn gives its place up, one that leaves while served
    frees its slot for the next."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("a runtime needs at least one slot")
        self.slots = slots
        self._waiting: deque[tuple[RuntimeJob, float]] = deque()
        self._serving: dict[RuntimeJob, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._waiting) + len(self._serving)

    def submit(self, work: float, done: Callable[[], None]) -> RuntimeJob:
        """``done`` is called once the jobs before it and then ``work`` seconds are done."""
        job = RuntimeJob(self, done)
        self._waiting.append((job, max(0.0, work)))
        self._serve()
        return job

    def leave(self, job: RuntimeJob) -> None:
        timer = self._serving.pop(job, None)
        if timer is not None:
            timer.cancel()
        else:
            self._waiting = deque(item for item in self._waiting if item[0] is not job)
        self._serve()

    def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting and len(self._serving) < self.slots:
            job, work = self._waiting.popleft()
            self._serving[job] = loop.call_later(work, self._finish, job)

    def _finish(self, job: RuntimeJob) -> None:
        del self._serving[job]
        self._serve()
        job.finish()
