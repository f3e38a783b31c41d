"""How long N hollow nodes take to get their certificates by TLS bootstrap.

Starts a fresh local cluster (its controller-manager approves and signs node CSRs, as
kubeadm's does), then asks for N node certificates through the CSR API with the
cluster's bootstrap credential, at most C in flight, exactly as `pykubemark hollow
--node-credentials bootstrap` does: key, CSR, LIST+WATCH until issued, cached on disk.
Then asks again for the same N, which must come from the cache.

    .venv/bin/python benchmarks/bootstrap.py --nodes 200 --concurrency 50

Writes ``results/bootstrap-<timestamp>.json``.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import click
from benchlib import ResultFile, console, environment, run_cli, shielded, start_cluster

from pykubemark.kube.bootstrap import NodeCredentials
from pykubemark.kube.client import Client
from pykubemark.kube.config import load_kubeconfig


async def _bootstrap(kubeconfig: Path, nodes: int, concurrency: int,
                     cert_dir: Path) -> dict[str, float]:
    config = load_kubeconfig(kubeconfig)
    async with Client(config) as client:
        credentials = NodeCredentials(client, cert_dir, concurrency=concurrency)
        latencies: list[float] = []

        async def one(name: str) -> None:
            started = time.monotonic()
            await credentials.config_for(name)
            latencies.append(time.monotonic() - started)

        started = time.monotonic()
        await asyncio.gather(*(one(f"boot-{i}") for i in range(nodes)))
        total = time.monotonic() - started
        cached_started = time.monotonic()
        await asyncio.gather(*(credentials.config_for(f"boot-{i}") for i in range(nodes)))
        cached = time.monotonic() - cached_started
    latencies.sort()
    return {
        "issued": credentials.requested, "reused": credentials.reused,
        "seconds_total": round(total, 2),
        "per_node_seconds_p50": round(statistics.median(latencies), 3),
        "per_node_seconds_p99": round(latencies[int(0.99 * (len(latencies) - 1))], 3),
        "nodes_per_second": round(nodes / total, 1),
        "seconds_from_cache": round(cached, 2),
    }


@click.command()
@click.option("--nodes", type=int, default=200, show_default=True)
@click.option("--concurrency", type=int, default=50, show_default=True,
              help="CSRs in flight at once (hollow's default).")
@click.option("--name", default="bench-bootstrap", show_default=True)
def main(nodes: int, concurrency: int, name: str) -> None:
    def body() -> None:
        result = ResultFile("bootstrap")
        result.data = {"environment": environment(), "nodes": nodes,
                       "concurrency": concurrency}
        cluster = start_cluster(name, audit=False)
        try:
            with tempfile.TemporaryDirectory(prefix="pykubemark-bootstrap-") as tmp:
                measured = asyncio.run(_bootstrap(cluster.kubeconfig_for("kubelet-bootstrap"),
                                                  nodes, concurrency, Path(tmp)))
            result.data["bootstrap"] = measured
            result.save()
            console.print(measured)
            console.print(f"written to {result.path}")
        finally:
            with shielded():
                cluster.down()

    run_cli(body)


if __name__ == "__main__":
    main()
