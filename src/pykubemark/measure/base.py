"""What every measurement shares: the context it runs in, its SLOs, its life cycle.

A measurement observes the cluster between ``start()`` and ``stop()`` and rewrites its
files every few seconds while it runs, so an interrupted run still leaves what was
measured so far. ``stop()`` may be called at any time — twice, or after a ``start()``
that failed half-way — because the runner calls it from its cleanup path.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp

from pykubemark.kube import ApiError, Client
from pykubemark.kube.watch import cancel_all
from pykubemark.measure.slos import Slo
from pykubemark.report.output import Output

log = logging.getLogger(__name__)
SYNC_TIMEOUT = 60.0
FINAL_TIMEOUT = 15.0  # a last scrape of a cluster that is gone must not hold up Ctrl-C


class MeasurementError(Exception):
    """A measurement could not start observing (the cluster did not answer)."""


@dataclass
class Context:
    client: Client                       # admin client on the cluster under test
    output: Output
    processes: dict[str, int] = field(default_factory=dict)  # name -> pid, children included
    etcd_metrics_url: str | None = None  # e.g. http://127.0.0.1:2379/metrics (local etcd)


class Measurement(abc.ABC):
    """Start, observe, write every ``write_every`` seconds, stop and write once more."""

    name: ClassVar[str]
    write_every: ClassVar[float] = 10.0

    def __init__(self, ctx: Context, **params: Any) -> None:
        self.ctx = ctx
        self.params = params
        self._tasks: list[asyncio.Task[Any]] = []
        self._started = False
        self._stopped = False

    @property
    def output(self) -> Output:
        return self.ctx.output

    async def start(self) -> None:
        self._started = True
        try:
            await self._begin()
        except (ApiError, aiohttp.ClientError, OSError) as exc:
            raise MeasurementError(f"{self.name} could not start: {exc}") from exc
        self._spawn(self._write_loop(), "writer")

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        await cancel_all(self._tasks)
        if self._started:
            try:
                await asyncio.wait_for(self._end(), FINAL_TIMEOUT)
            except Exception as exc:  # the cluster may be gone: keep what we have
                log.warning("%s: final collection failed: %r", self.name, exc)
        try:
            self.write()
        finally:
            await self._close()

    def slos(self) -> list[Slo]:
        return []

    def progress(self) -> dict[str, int]:
        return {}

    # -- for subclasses ------------------------------------------------------------------
    @abc.abstractmethod
    async def _begin(self) -> None:
        """Take the baseline; return once observing."""

    async def _refresh(self) -> None:
        """Collect what the periodic write needs (a scrape, say)."""
        return None

    async def _end(self) -> None:
        """Final collection at stop; the default is one more refresh."""
        await self._refresh()

    @abc.abstractmethod
    def write(self) -> None:
        """Write every file from what is known now (also after a partial start)."""

    async def _close(self) -> None:
        """Release what the measurement opened itself (clients of its own)."""
        return None

    def _spawn(self, coro: Any, what: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.name}:{what}")
        self._tasks.append(task)
        return task

    async def _synced(self, event: asyncio.Event, what: str) -> None:
        """Wait for a reflector's first LIST; a reflector retries forever, we do not."""
        try:
            await asyncio.wait_for(event.wait(), SYNC_TIMEOUT)
        except TimeoutError:
            raise MeasurementError(f"{self.name}: could not list {what} within "
                                   f"{SYNC_TIMEOUT:.0f} s") from None

    async def _write_loop(self) -> None:
        while True:
            await asyncio.sleep(self.write_every)
            try:
                await self._refresh()
                self.write()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failed scrape must not end the measurement
                log.warning("%s: periodic write failed: %r", self.name, exc)
