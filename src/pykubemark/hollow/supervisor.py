"""Shards of a fleet as child processes, each restarted when it dies.

A shard that crashes (a bug, the OOM killer, a stray `kill -9`) is started again with
the same shard index, so its nodes come back under the same names before the
controller-manager's grace period runs out; they find their Node, Lease and pods and
adopt them. Restarts back off exponentially (as the kubelet's CrashLoopBackOff does)
and are recorded in a JSON file that `pykubemark status` reads.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from pykubemark import interrupts
from pykubemark.files import write_atomic

log = logging.getLogger("pykubemark.hollow")
#: First restart delay, its cap, and how long a shard must live for the delay to reset.
BACKOFF_INITIAL = 1.0
BACKOFF_CAP = 30.0
STABLE_AFTER = 60.0
STOP_TIMEOUT = 20.0


def describe_exit(code: int | None) -> str:
    if code is None:
        return "running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with {code}"


@dataclass
class Shard:
    index: int
    process: BaseProcess | None = None
    started: float = 0.0
    restarts: int = 0
    failures: int = 0
    restart_at: float | None = None
    last_exit: str = ""
    history: list[str] = field(default_factory=list)

    def backoff(self) -> float:
        return min(BACKOFF_CAP, BACKOFF_INITIAL * 2 ** max(0, self.failures - 1))


class Supervisor:
    """Runs ``target(shard_index)`` in one spawned process per shard until stopped."""

    def __init__(self, shards: int, target: Callable[[int], None], *,
                 restarts_file: Path | None = None,
                 left_behind: Callable[[], str] = lambda: "nothing") -> None:
        self.shards = [Shard(i) for i in range(shards)]
        self.target = target
        self.restarts_file = restarts_file
        self.left_behind = left_behind
        self.stopping = False
        self._ctx = multiprocessing.get_context("spawn")
        self._load_restarts()

    # -- signals ------------------------------------------------------------------------
    def _on_signal(self, _signum: int, _frame: object) -> None:
        if self.stopping:  # the second Ctrl-C: leave now, take the shards along
            for shard in self.shards:
                if shard.process is not None and shard.process.is_alive():
                    with contextlib.suppress(OSError):
                        shard.process.kill()
            interrupts.leave_now(self.left_behind)
        self.stopping = True
        self._forward(signal.SIGTERM)

    def _forward(self, sig: int) -> None:
        for shard in self.shards:
            if shard.process is not None and shard.process.pid and shard.process.is_alive():
                with contextlib.suppress(OSError):
                    os.kill(shard.process.pid, sig)

    # -- run ----------------------------------------------------------------------------
    def run(self) -> None:
        interrupts.handle(self._on_signal)
        for shard in self.shards:
            if self.stopping:
                break
            self._start(shard)
        self._record()
        while not self.stopping:
            self._watch(timeout=self._next_timeout())
        self._stop_all()

    def _next_timeout(self) -> float:
        now = time.monotonic()
        pending = [s.restart_at - now for s in self.shards if s.restart_at is not None]
        return max(0.05, min([1.0, *pending]))

    def _watch(self, timeout: float) -> None:
        sentinels = [s.process.sentinel for s in self.shards
                     if s.process is not None and s.restart_at is None]
        if sentinels:
            multiprocessing.connection.wait(sentinels, timeout)
        else:
            time.sleep(timeout)
        if self.stopping:
            return
        now = time.monotonic()
        for shard in self.shards:
            process = shard.process
            if shard.restart_at is None and process is not None and not process.is_alive():
                process.join()
                shard.last_exit = describe_exit(process.exitcode)
                shard.failures = 1 if now - shard.started >= STABLE_AFTER else shard.failures + 1
                delay = shard.backoff()
                shard.restart_at = now + delay
                log.error("shard %d (pid %s) %s; restarting it in %.0f s", shard.index,
                          process.pid, shard.last_exit, delay)
            elif shard.restart_at is not None and now >= shard.restart_at:
                shard.restart_at = None
                shard.restarts += 1
                shard.history.append(f"{_now()} {shard.last_exit}")
                self._start(shard)
                log.warning("shard %d restarted (pid %s, restart %d); its nodes come back "
                            "under the same names and adopt their pods", shard.index,
                            shard.process.pid if shard.process else "?", shard.restarts)
                self._record()

    def _start(self, shard: Shard) -> None:
        process = self._ctx.Process(target=_shard_main, args=(self.target, shard.index),
                                    name=f"hollow-{shard.index}")
        process.start()
        shard.process = process
        shard.started = time.monotonic()

    def _stop_all(self) -> None:
        self._forward(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for shard in self.shards:
            if shard.process is None:
                continue
            shard.process.join(timeout=max(0.1, deadline - time.monotonic()))
            if shard.process.is_alive():
                log.error("shard %d did not stop in %.0f s; killing it", shard.index,
                          STOP_TIMEOUT)
                shard.process.kill()
                shard.process.join(5)

    # -- the restarts file ----------------------------------------------------------------
    def _load_restarts(self) -> None:
        """A supervisor started again (`pykubemark restart hollow`) keeps counting."""
        if self.restarts_file is None:
            return
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, IndexError):
            data = json.loads(self.restarts_file.read_text())
            for entry in data.get("shards", []):
                shard = self.shards[int(entry["shard"])]
                shard.restarts = int(entry.get("restarts", 0))
                shard.history = list(entry.get("history", []))[-10:]

    def _record(self) -> None:
        if self.restarts_file is None:
            return
        data: dict[str, Any] = {
            "restarts": sum(s.restarts for s in self.shards),
            "shards": [{"shard": s.index, "pid": s.process.pid if s.process else None,
                        "restarts": s.restarts, "history": s.history[-10:]}
                       for s in self.shards],
        }
        write_atomic(self.restarts_file, json.dumps(data, indent=1) + "\n")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _shard_main(target: Callable[[int], None], index: int) -> None:
    _die_with_parent()
    interrupts.ignore(signal.SIGINT)  # the supervisor forwards SIGTERM
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    target(index)
