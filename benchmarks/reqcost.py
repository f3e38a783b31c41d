"""Client CPU per request of the hollow nodes' transport, this checkout against another.

A pod cycle (benchmarks/podpath.py) takes minutes and resolves about 10 %; most of a pod's
CPU is its dozen requests, so a change to the transport is measured here in seconds: on a
running or throw-away local cluster, ``--connections`` clients (one HTTP/2 connection each,
protobuf, as a hollow kubelet's) each do ``--rounds`` times what the kubelet's status
manager does for a pod — GET its uid and status, PATCH its status (the same status every
time, so that etcd does not grow under the benchmark) — and the child process's own CPU
(getrusage) is divided by its requests. With ``--baseline-src`` a second child runs the
same from other sources; the sides alternate ``--repeat`` times and the medians are
reported. On two cores or more the control plane is pinned to CPU 0 and the children to
CPU 1 (``--no-pin`` to leave them), else the apiserver's work on the same core makes the
figure drift from run to run.

    python benchmarks/reqcost.py --baseline-src /tmp/base/src --repeat 6
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import psutil
from benchlib import (
    Api,
    ApiFailure,
    ResultFile,
    cluster_options,
    console,
    environment,
    recording_status,
    run_cli,
    running_or_throwaway,
    shielded,
    utcnow,
)

from pykubemark.cluster.control_plane import LocalCluster

NAMESPACE = "bench-reqcost"


# -- the child: one side's clients ---------------------------------------------------------
def child(kubeconfig: str, connections: int, rounds: int) -> dict[str, float]:
    """Runs with the side's sources first on sys.path (PYTHONPATH)."""
    import asyncio

    from pykubemark.kube.client import Client
    from pykubemark.kube.config import load_kubeconfig

    async def main() -> dict[str, float]:
        config = load_kubeconfig(kubeconfig)
        clients = [Client(config, http2=True, content_type="protobuf")
                   for _ in range(connections)]

        async def pod(client: Client, i: int, n: int) -> None:
            path = f"/api/v1/namespaces/{NAMESPACE}/pods/p-{i}"
            for _ in range(n):
                current = await client.object("GET", path, fields=("metadata.uid", "status"))
                await client.patch(f"{path}/status", {
                    "metadata": {"uid": current["metadata"]["uid"]},
                    "status": {"message": "reqcost"}}, as_json=False)

        await asyncio.gather(*(pod(c, i, 3) for i, c in enumerate(clients)))  # dial, warm
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu, wall = usage.ru_utime + usage.ru_stime, time.monotonic()
        await asyncio.gather(*(pod(c, i, rounds) for i, c in enumerate(clients)))
        usage = resource.getrusage(resource.RUSAGE_SELF)
        spent, took = usage.ru_utime + usage.ru_stime - cpu, time.monotonic() - wall
        for client in clients:
            await client.close()
        requests = 2 * connections * rounds
        return {"requests": requests, "cpu_seconds": spent, "wall_seconds": took,
                "us_per_request": 1e6 * spent / requests}

    try:
        import uvloop
    except ImportError:  # the product runs without it too
        return asyncio.run(main())
    return uvloop.run(main())


# -- the parent ----------------------------------------------------------------------------
def prepare(cluster: LocalCluster, api: Api, connections: int) -> None:
    with contextlib.suppress(ApiFailure):
        api.request("POST", "/api/v1/namespaces",
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    deadline = time.monotonic() + 120
    while not cluster.service_account_has_token(NAMESPACE):
        if time.monotonic() > deadline:
            raise SystemExit(f"no service-account token in {NAMESPACE} after 120 s")
        time.sleep(0.5)
    for i in range(connections):  # unscheduled (no nodes): they stay Pending, untouched
        with contextlib.suppress(ApiFailure):
            api.request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p-{i}"},
                "spec": {"containers": [{"name": "c", "image": "pause"}]}})


def pin(cluster: LocalCluster) -> dict[int, list[int]]:
    """The control plane to CPU 0; returns what to restore."""
    before: dict[int, list[int]] = {}
    for proc in cluster.state.running():
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(proc.pid)
            before[proc.pid] = process.cpu_affinity()
            process.cpu_affinity([0])
            for thread in process.threads():  # Go's threads are pinned one by one
                with contextlib.suppress(psutil.Error, OSError):
                    os.sched_setaffinity(thread.id, {0})
    return before


def unpin(before: dict[int, list[int]]) -> None:
    for pid, cpus in before.items():
        with contextlib.suppress(psutil.Error, OSError):
            for thread in psutil.Process(pid).threads():
                os.sched_setaffinity(thread.id, set(cpus))


def run_side(src: Path | None, kubeconfig: Path, connections: int, rounds: int,
             pinned: bool) -> dict[str, Any]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = f"{src}{os.pathsep}{env.get('PYTHONPATH', '')}".rstrip(os.pathsep)
    argv = [sys.executable, __file__, "--child", str(kubeconfig), "--connections",
            str(connections), "--rounds", str(rounds)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900,
                          stdin=subprocess.DEVNULL,
                          preexec_fn=(lambda: os.sched_setaffinity(0, {1})) if pinned else None)
    if done.returncode != 0:
        raise SystemExit(f"a side failed: {done.stderr.strip()[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(cluster_name: str | None, name: str, results_dir: Path, connections: int,
            rounds: int, repeat: int, baseline_src: Path | None, pin_cpus: bool,
            label: str) -> None:
    with running_or_throwaway(cluster_name, name) as cluster:
        _measure(cluster, results_dir, connections, rounds, repeat, baseline_src, pin_cpus,
                 label)


def _measure(cluster: LocalCluster, results_dir: Path, connections: int, rounds: int,
             repeat: int, baseline_src: Path | None, pin_cpus: bool, label: str) -> None:
    pinned = pin_cpus and (os.cpu_count() or 1) >= 2
    restore: dict[int, list[int]] = {}
    results = ResultFile(f"reqcost-{label}", results_dir)
    result = results.data = {
        "benchmark": "reqcost", "label": label, "status": "running",
        "started": utcnow().isoformat(),
        "params": {"connections": connections, "rounds": rounds, "repeat": repeat,
                   "baseline_src": str(baseline_src) if baseline_src else None,
                   "pinned": pinned},
        "environment": environment(), "runs": [],
    }
    try:
        with recording_status(result):
            prepare(cluster, Api(cluster), connections)
            if pinned:
                restore = pin(cluster)
            sides: dict[str, Path | None] = {"py": None}
            if baseline_src is not None:
                sides["base"] = baseline_src
            for i in range(repeat):
                order = list(sides) if i % 2 == 0 else list(reversed(sides))
                for side in order:
                    run = run_side(sides[side], cluster.dir / "kubeconfig", connections,
                                   rounds, pinned)
                    result["runs"].append({"side": side, **run})
                    console.print(f"run {i} {side}: {run['us_per_request']:.0f} µs CPU per "
                                  f"request ({run['requests']} requests, "
                                  f"{run['wall_seconds']:.1f} s)")
                    result["us_per_request_median"] = {
                        s: statistics.median(r["us_per_request"] for r in result["runs"]
                                             if r["side"] == s)
                        for s in sides if any(r["side"] == s for r in result["runs"])}
                    results.save()
    finally:
        result["finished"] = utcnow().isoformat()
        results.save()
        with shielded():
            unpin(restore)
    console.print(f"µs CPU per request (median of {repeat}): "
                  f"{result.get('us_per_request_median')}; written to {results.path}")


@click.command()
@cluster_options("bench-reqcost")
@click.option("--connections", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=200, show_default=True,
              help="GET + PATCH pairs per connection and run.")
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--baseline-src", type=click.Path(path_type=Path, exists=True), default=None,
              help="Also run from these pykubemark sources (`git archive REV src | tar -x "
                   "-C DIR`, then DIR/src), alternating with this checkout.")
@click.option("--pin/--no-pin", "pin_cpus", default=True, show_default=True,
              help="Control plane on CPU 0, the measured clients on CPU 1.")
@click.option("--label", default="run")
@click.option("--child", "child_kubeconfig", default=None, hidden=True)
def main(cluster_name: str | None, name: str, results_dir: Path, connections: int,
         rounds: int, repeat: int, baseline_src: Path | None, pin_cpus: bool, label: str,
         child_kubeconfig: str | None) -> None:
    """Client CPU per request of the HTTP/2 + protobuf transport."""
    if child_kubeconfig is not None:
        print(json.dumps(child(child_kubeconfig, connections, rounds)))
        return
    run_cli(lambda: measure(cluster_name, name, results_dir, connections, rounds, repeat,
                            baseline_src, pin_cpus, label))


if __name__ == "__main__":
    main()
