"""Client-side QPS/burst limiting, as client-go's token bucket does it.

The kubelet and kube-proxy each send at most ``qps`` requests a second with bursts of
``burst`` (5 and 10 by default in 1.20); a hollow node keeps the same budget so that it
cannot load the apiserver more than a real node could.
"""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    __slots__ = ("_last", "_tokens", "burst", "qps")

    def __init__(self, qps: float, burst: int) -> None:
        self.qps = qps
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._last = time.monotonic()

    def reserve(self) -> float:
        """Take a token now; return how long to wait before using it (0 if none)."""
        if self.qps <= 0:
            return 0.0
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    async def wait(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


UNLIMITED = TokenBucket(0, 1)
