"""429 Too Many Requests from a real apiserver: the client waits as told and retries."""

from __future__ import annotations

import asyncio
import re

import pytest
from helpers import Cluster, run_cli

from pykubemark.kube import Client, load_kubeconfig

#: Tests that start a cluster with one request in flight: `pytest -m "not slow"` leaves them out.
pytestmark = pytest.mark.slow


def throttled_requests(cluster: Cluster) -> float:
    """429s the apiserver answered (the max-in-flight filter's among them)."""
    metrics = cluster.kubectl("get", "--raw", "/metrics")
    return sum(float(m.group(1)) for m in re.finditer(
        r'^apiserver_request_total\{[^}]*code="429"[^}]*\} (\S+)$', metrics, re.M))


def test_429_retry_after_is_honoured(binaries) -> None:
    # One read in flight at a time, and no priority-and-fairness queueing: the
    # apiserver's max-in-flight filter answers 429 with Retry-After: 1.
    run_cli("up", "--name", "throttled",
            "--apiserver-arg=--max-requests-inflight=1",
            "--apiserver-arg=--enable-priority-and-fairness=false")
    try:
        cluster = Cluster("throttled")
        # system:masters are never throttled; the scheduler's user is an ordinary one.
        config = load_kubeconfig(cluster.local.kubeconfig_for("scheduler"))

        async def burst(http2: bool) -> list[bytes]:
            async with Client(config, http2=http2) as client:
                # Few enough that each gets through within client-go's 10 retries; the
                # OpenAPI document is large enough for them to overlap.
                return await asyncio.gather(*(client.get("/openapi/v2") for _ in range(6)))

        # HTTP/1.1 (aiohttp's headers) and HTTP/2 (ours, in lower case on the wire)
        for http2 in (False, True):
            before = throttled_requests(cluster)
            for _ in range(10):
                answers = asyncio.run(burst(http2))
                assert len(answers) == 6 and all(b'"swagger"' in a for a in answers)
                if throttled_requests(cluster) > before:
                    break
            assert throttled_requests(cluster) > before, \
                f"never throttled (http2={http2}): the test proved nothing"
    finally:
        run_cli("down", "--name", "throttled")
