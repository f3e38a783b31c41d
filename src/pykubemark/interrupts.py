"""Ctrl-C and SIGTERM for commands that start processes: clean up once, or leave at once.

The first SIGINT or SIGTERM raises `KeyboardInterrupt` where the command is, so its
cleanup (`finally`, `except BaseException`) stops what it started. A second one, during
that cleanup, exits at once with one line that says what is left behind. Code that must
not be cut in half — a child started but not yet recorded — runs under `critical()`,
which holds a signal until the section is done, so nothing is ever started unrecorded.

Every signal handler of pykubemark is installed here: `handle` and `restore` (a thread's
handlers, in the main thread), `ignore`, and `in_loop` (an asyncio loop's), so what a
signal does is found in one place.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, NoReturn

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Exit code of a command stopped by an interrupt (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130
Handler = Callable[[int, FrameType | None], Any]


def handle(handler: Handler, signals: tuple[int, ...] = SIGNALS) -> dict[int, Any]:
    """Install ``handler`` for ``signals`` (in the main thread); what was there before,
    for `restore`."""
    return {sig: signal.signal(sig, handler) for sig in signals}


def restore(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def ignore(*signals: int) -> None:
    """From now on ``signals`` (default SIGINT and SIGTERM) do nothing."""
    handle(signal.SIG_IGN, signals or SIGNALS)


def raise_interrupt(_signum: int, _frame: FrameType | None) -> NoReturn:
    """A handler that stops the main thread where it is, as Ctrl-C does."""
    raise KeyboardInterrupt


def in_loop(handler: Callable[[], object], signals: tuple[int, ...] = SIGNALS) -> None:
    """Call ``handler`` in the running event loop on each of ``signals``."""
    import asyncio

    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, handler)


class Guard:
    """Installed for the duration of one command, in the main thread."""

    def __init__(self, left_behind: Callable[[], str]) -> None:
        self.left_behind = left_behind
        self.interrupted = False
        self._depth = 0
        self._pending: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Guard:
        global _active
        if threading.current_thread() is threading.main_thread():
            self._previous = handle(self._handle)
            _active = self
        return self

    def __exit__(self, *_exc: object) -> None:
        global _active
        if _active is self:
            _active = None
            restore(self._previous)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self._depth:
            self._pending = signum
            return
        if self.interrupted:
            self.leave_now()
        self.interrupted = True
        raise KeyboardInterrupt

    def leave_now(self) -> None:
        leave_now(self.left_behind)

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._pending is not None:
                signum, self._pending = self._pending, None
                self._handle(signum, None)


_active: Guard | None = None


def leave_now(left_behind: Callable[[], str]) -> None:
    """The second interrupt: no more cleanup, one line that says what is left, exit."""
    try:
        what = left_behind()
    except Exception as exc:  # the line must still be written
        what = f"unknown ({exc!r})"
    sys.stderr.write(f"pykubemark: interrupted again, exiting now; left behind: {what}\n")
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def cleaning_up() -> Iterator[None]:
    """Cleanup is under way: the next interrupt leaves at once instead of cutting the
    cleanup in half with a `KeyboardInterrupt`."""
    if _active is not None:
        _active.interrupted = True
    yield


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block is done (a no-op without a `Guard`)."""
    guard = _active
    if guard is None:
        yield
        return
    with guard.critical():
        yield
