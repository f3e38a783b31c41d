"""Client CPU per request of the hollow nodes' transport, this checkout against another.

A pod cycle (benchmarks/podpath.py) takes minutes and resolves about 10 %; most of a pod's
CPU is its dozen requests, so a change to the transport is measured here in seconds: on a
running or throw-away local cluster, ``--connections`` clients (one HTTP/2 connection each,
protobuf, as a hollow kubelet's) each do ``--rounds`` times what the kubelet's status
manager does for a pod — GET its uid and status, PATCH its status (the same status every
time, so that etcd does not grow under the benchmark) — and the child process's own CPU
(getrusage) is divided by its requests. With ``--baseline-src`` a second child runs the
same from other sources on pods of its own, at the same time (``--alternate``: one after
the other, which goes first alternating), ``--repeat`` times; the medians and the ratio of
each pair are reported. Both at once, because the machine's own speed drifts by half
within seconds (each run times a fixed piece of Python before and after itself): at once,
both sides meet the same speed. On two cores or more the control plane is pinned to CPU 0
and the children to CPU 1 (``--no-pin`` to leave them), else the apiserver's work on the
same core makes the figure drift from run to run.

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
def probe_ms() -> float:
    """CPU milliseconds of a fixed piece of pure Python: how fast the machine runs
    Python right now (on this machine it drifts by half within seconds)."""
    started = time.process_time()
    for _ in range(5):
        sum(i * i for i in range(100_000))
    return 1e3 * (time.process_time() - started)


def syscalls() -> dict[str, int]:
    """This process's read and write system calls so far (``/proc/self/io``)."""
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return {"syscr": 0, "syscw": 0}
    fields = dict(line.split(": ") for line in text.splitlines())
    return {"syscr": int(fields["syscr"]), "syscw": int(fields["syscw"])}


def child(kubeconfig: str, connections: int, rounds: int, first: int = 0) -> dict[str, Any]:
    """Runs with the side's sources first on sys.path (PYTHONPATH)."""
    import asyncio

    from pykubemark.kube.client import Client
    from pykubemark.kube.config import load_kubeconfig

    async def main() -> dict[str, Any]:
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

        await asyncio.gather(*(pod(c, first + i, 3)  # dial, warm up
                               for i, c in enumerate(clients)))
        speed = probe_ms()
        before, io, wall = resource.getrusage(resource.RUSAGE_SELF), syscalls(), time.monotonic()
        await asyncio.gather(*(pod(c, first + i, rounds) for i, c in enumerate(clients)))
        after, took = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - wall
        io = {k: v - io[k] for k, v in syscalls().items()}
        speed_after = probe_ms()
        for client in clients:
            await client.close()
        requests = 2 * connections * rounds
        spent = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        # How the process met its answers: fewer reads and sleeps per request, more
        # answers found per wake-up.
        return {"requests": requests, "cpu_seconds": spent, "wall_seconds": took,
                "us_per_request": 1e6 * spent / requests,
                "reads_per_request": io["syscr"] / requests,
                "writes_per_request": io["syscw"] / requests,
                "sleeps_per_request": (after.ru_nvcsw - before.ru_nvcsw) / requests,
                "probe_ms_before_after": [round(speed, 1), round(speed_after, 1)]}

    try:
        import uvloop
    except ImportError:  # the product runs without it too
        return asyncio.run(main())
    return uvloop.run(main())


# -- the parent ----------------------------------------------------------------------------
def prepare(cluster: LocalCluster, api: Api, pods: int) -> None:
    with contextlib.suppress(ApiFailure):
        api.request("POST", "/api/v1/namespaces",
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    deadline = time.monotonic() + 120
    while not cluster.namespace_ready(NAMESPACE):
        if time.monotonic() > deadline:
            raise SystemExit(f"no service-account token in {NAMESPACE} after 120 s")
        time.sleep(0.5)
    for i in range(pods):  # unscheduled (no nodes): they stay Pending, untouched
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


def start_side(src: Path | None, kubeconfig: Path, connections: int, rounds: int,
               first: int, pinned: bool) -> subprocess.Popen[str]:
    """One side's clients in a child process (on CPU 1 when pinned), on the pods from
    ``first`` on."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = f"{src}{os.pathsep}{env.get('PYTHONPATH', '')}".rstrip(os.pathsep)
    argv = [sys.executable, __file__, "--child", str(kubeconfig), "--connections",
            str(connections), "--rounds", str(rounds), "--first", str(first)]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL,
                            preexec_fn=(lambda: os.sched_setaffinity(0, {1})) if pinned
                            else None)


def finish_sides(procs: dict[str, subprocess.Popen[str]]) -> dict[str, dict[str, Any]]:
    """Each side's result, in order; when one side fails (or on Ctrl-C) none is left
    running."""
    try:
        runs = {}
        for side, proc in procs.items():
            out, err = proc.communicate(timeout=900)
            if proc.returncode != 0:
                raise SystemExit(f"side {side} failed: {err.strip()[-1500:]}")
            runs[side] = json.loads(out.strip().splitlines()[-1])
        return runs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def pairs(runs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(py, base) of each round."""
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for run in runs:
        by_round.setdefault(run["round"], {})[run["side"]] = run
    return [(r["py"], r["base"]) for _, r in sorted(by_round.items())
            if "py" in r and "base" in r]


def measure(cluster_name: str | None, name: str, results_dir: Path, connections: int,
            rounds: int, repeat: int, baseline_src: Path | None, pin_cpus: bool,
            label: str, together: bool = True) -> None:
    with running_or_throwaway(cluster_name, name) as cluster:
        _measure(cluster, results_dir, connections, rounds, repeat, baseline_src, pin_cpus,
                 label, together)


def _measure(cluster: LocalCluster, results_dir: Path, connections: int, rounds: int,
             repeat: int, baseline_src: Path | None, pin_cpus: bool, label: str,
             together: bool) -> None:
    pinned = pin_cpus and (os.cpu_count() or 1) >= 2
    restore: dict[int, list[int]] = {}
    results = ResultFile(f"reqcost-{label}", results_dir)
    result = results.data = {
        "benchmark": "reqcost", "label": label, "status": "running",
        "started": utcnow().isoformat(),
        "params": {"connections": connections, "rounds": rounds, "repeat": repeat,
                   "baseline_src": str(baseline_src) if baseline_src else None,
                   "pinned": pinned, "together": together and baseline_src is not None},
        "environment": environment(), "runs": [],
    }
    try:
        with recording_status(result):
            sides: dict[str, Path | None] = {"py": None}
            if baseline_src is not None:
                sides["base"] = baseline_src
            prepare(cluster, Api(cluster), len(sides) * connections)
            if pinned:
                restore = pin(cluster)
            first = {side: k * connections for k, side in enumerate(sides)}
            kubeconfig = cluster.dir / "kubeconfig"

            def start(side: str) -> subprocess.Popen[str]:
                return start_side(sides[side], kubeconfig, connections, rounds, first[side],
                                  pinned)

            for i in range(repeat):
                order = list(sides) if i % 2 == 0 else list(reversed(sides))
                if together:
                    runs = finish_sides({side: start(side) for side in order})
                else:
                    runs = {side: finish_sides({side: start(side)})[side] for side in order}
                for side, run in runs.items():
                    result["runs"].append({"side": side, "round": i, **run})
                    console.print(
                        f"run {i} {side}: {run['us_per_request']:.0f} µs CPU per request "
                        f"({run['requests']} requests, {run['wall_seconds']:.1f} s; per "
                        f"request {run['reads_per_request']:.2f} reads, "
                        f"{run['sleeps_per_request']:.2f} sleeps)")
                result["us_per_request_median"] = {
                    side: statistics.median(r["us_per_request"] for r in result["runs"]
                                            if r["side"] == side) for side in sides}
                if "base" in runs:
                    ratios = [r["us_per_request"] / b["us_per_request"]
                              for r, b in pairs(result["runs"])]
                    result["py_over_base_per_round"] = [round(x, 3) for x in ratios]
                    result["py_over_base_median"] = statistics.median(ratios)
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
@click.option("--together/--alternate", default=True, show_default=True,
              help="With --baseline-src: both sides at once on the clients' CPU (the "
                   "machine's speed, which drifts, then is the same for both), or one "
                   "after the other.")
@click.option("--label", default="run")
@click.option("--child", "child_kubeconfig", default=None, hidden=True)
@click.option("--first", "first_pod", type=int, default=0, hidden=True)
def main(cluster_name: str | None, name: str, results_dir: Path, connections: int,
         rounds: int, repeat: int, baseline_src: Path | None, pin_cpus: bool, together: bool,
         label: str, child_kubeconfig: str | None, first_pod: int) -> None:
    """Client CPU per request of the HTTP/2 + protobuf transport."""
    if child_kubeconfig is not None:
        print(json.dumps(child(child_kubeconfig, connections, rounds, first_pod)))
        return
    run_cli(lambda: measure(cluster_name, name, results_dir, connections, rounds, repeat,
                            baseline_src, pin_cpus, label, together))


if __name__ == "__main__":
    main()
