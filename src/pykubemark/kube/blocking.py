"""One REST call from synchronous code, through the project's one HTTP client.

Starting the local control plane, probing its health and the benchmarks' admin calls are
plain loops that wait between steps; they need an answer, not concurrency. Each call runs
a `Client` in an event loop of its own and closes it, so it keeps no state between calls
and works from any thread that has no event loop running. A connection per call is what
such a caller paid before (urllib); the hot paths use `Client` directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from pykubemark.kube.client import JSON, NETWORK_ERRORS, Client
from pykubemark.kube.config import KubeConfig


def call(config: KubeConfig, method: str, path: str, *,
         params: Mapping[str, str] | None = None, body: Any = None,
         content_type: str = JSON, timeout: float = 60.0) -> bytes:
    """The answer's body. Raises `ApiError` for a non-2xx answer (after the retries
    Retry-After asks for) and `OSError` when nothing answered in ``timeout`` seconds,
    as urllib does, so a caller needs no aiohttp type to tell the two apart."""

    async def once() -> bytes:
        async with Client(config, timeout=timeout) as client:
            return await client.request(method, path, params=params, body=body,
                                        content_type=content_type)

    try:
        return asyncio.run(once())
    except NETWORK_ERRORS as exc:
        if isinstance(exc, OSError):
            raise
        raise ConnectionError(f"{method} {config.server}{path}: "
                              f"{str(exc) or type(exc).__name__}") from exc
