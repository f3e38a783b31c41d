"""429 Too Many Requests from a real apiserver: the client waits as told and retries."""

from __future__ import annotations

import asyncio
import re

from helpers import Cluster, run_cli

from pykubemark.kube import Client, load_kubeconfig


def test_429_retry_after_is_honoured(binaries) -> None:
    # One read in flight at a time, and no priority-and-fairness queueing: the
    # apiserver's max-in-flight filter answers 429 with Retry-After: 1.
    run_cli("up", "--name", "throttled",
            "--apiserver-arg=--max-requests-inflight=1",
            "--apiserver-arg=--enable-priority-and-fairness=false")
    try:
        cluster = Cluster("throttled")
        config = load_kubeconfig(cluster.kubeconfig)

        async def burst() -> list[bytes]:
            async with Client(config) as client:
                return await asyncio.gather(*(
                    client.get("/api/v1/namespaces/default/serviceaccounts")
                    for _ in range(40)))

        answers = asyncio.run(burst())
        assert len(answers) == 40 and all(b'"items"' in a for a in answers)
        metrics = cluster.kubectl("get", "--raw", "/metrics")
        throttled = sum(
            float(m.group(1)) for m in re.finditer(
                r'^apiserver_request_total\{[^}]*code="429"[^}]*\} (\S+)$', metrics, re.M))
        assert throttled > 0, "the apiserver never throttled: the test proved nothing"
    finally:
        run_cli("down", "--name", "throttled")
