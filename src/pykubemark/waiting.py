"""Waiting until N things are ready, one poll at a time: the hollow nodes of `up`, Go
hollow nodes, the shard pods of `deploy`, a phase's pods.

Each such wait counts, says how far it is, stops once all are ready and gives up after a
timeout, or once no more turned ready for a while (a busy machine registers thousands of
nodes slowly but steadily). `ReadyCount` is that bookkeeping; the caller's loop polls (in
a thread or an event loop), checks what only it knows (a process that died, a pod that
cannot start) and raises its own error with the line `overdue` gives:

    waiting = ReadyCount("hollow nodes Ready", stall=120, progress=print)
    while not waiting.done(count(), wanted):
        if line := waiting.overdue():
            raise UserError(f"{line} (log: {log})")
        time.sleep(1)
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ReadyCount:
    """``what`` polled until ``wanted`` are ready: at most ``timeout`` s in all, or
    ``stall`` s without one more ready than any poll found before."""

    def __init__(self, what: str, *, timeout: float | None = None,
                 stall: float | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        self.what = what
        self.timeout = timeout
        self.stall = stall
        self.progress = progress
        self.started = self.last_more = time.monotonic()
        self.best = 0
        self.ready = self.wanted = 0

    def done(self, ready: int | None, wanted: int) -> bool:
        """One poll's count (said to ``progress``): True once ``wanted`` are ready. None:
        the poll got no answer, and the last count stands."""
        self.ready, self.wanted = self.ready if ready is None else ready, wanted
        ready = self.ready
        if self.progress is not None:
            self.progress(f"{self.what}: {ready}/{wanted}")
        if ready > self.best:
            self.best, self.last_more = ready, time.monotonic()
        return ready >= wanted

    def overdue(self) -> str | None:
        """Why to give up after the last poll (a line for the error), or None."""
        now = time.monotonic()
        only = f"only {self.ready}/{self.wanted} {self.what}"
        if self.timeout is not None and now - self.started > self.timeout:
            return f"{only} after {self.timeout:.0f}s"
        if self.stall is not None and now - self.last_more > self.stall:
            return (f"{only} after {now - self.started:.0f}s, none more in the last "
                    f"{self.stall:.0f}s")
        return None
