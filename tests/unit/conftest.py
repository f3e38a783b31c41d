"""A fake monotonic clock for the modules whose logic depends on elapsed time."""

from __future__ import annotations

import types
from collections.abc import Callable

import pytest


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeClock]:
    """Install a fake ``time.monotonic`` into a module: ``fake_clock(module, now)``."""

    def install(module: types.ModuleType, now: float = 1000.0) -> FakeClock:
        clock = FakeClock(now)
        monkeypatch.setattr(module, "time", types.SimpleNamespace(monotonic=clock.monotonic))
        return clock

    return install
