"""How long `pykubemark deploy` takes to bring N hollow nodes Ready on a target, as shard
pods on a base cluster, and what each shard pod costs.

Needs two local clusters (same $PYKUBEMARK_STATE): a base with a real node and the image
loaded, and a target:

    pykubemark image build --out /tmp/pykubemark.tar
    pykubemark up --name base --real-node --load-image /tmp/pykubemark.tar
    pykubemark up --name target
    .venv/bin/python benchmarks/deploy_ready.py --nodes 300 --nodes-per-pod 100

Writes benchmarks/results/deploy-<time>.json (after every phase), then undeploys.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click
import psutil
from benchlib import results_dir_option, run_cli

from pykubemark.measure.resources import cpu_seconds

CLI = [sys.executable, "-m", "pykubemark"]


def _kubeconfig(name: str) -> str:
    from pykubemark.cluster.state import load

    return load(name).kubeconfig


def _ready(target: str, prefix: str) -> int:
    out = subprocess.run([*CLI, "kubectl", "--name", target, "--", "get", "nodes", "-o",
                          "json"], capture_output=True, text=True, check=True).stdout
    count = 0
    for node in json.loads(out)["items"]:
        if node["metadata"]["name"].startswith(prefix + "-"):
            conditions = node.get("status", {}).get("conditions", [])
            count += any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return count


def _shard_processes() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if "--shard-from-pod-name" in cmdline and "hollow" in cmdline:
            found.append(proc)
    return found


@click.command()
@click.option("--base", default="base", show_default=True)
@click.option("--target", default="target", show_default=True)
@click.option("--nodes", type=int, default=300, show_default=True)
@click.option("--nodes-per-pod", type=int, default=100, show_default=True)
@click.option("--idle-seconds", type=float, default=60.0, show_default=True,
              help="Idle time after all nodes are Ready before the cost is read.")
@results_dir_option()
def main(base: str, target: str, nodes: int, nodes_per_pod: int, idle_seconds: float,
         results_dir: Path) -> None:
    from pykubemark.files import write_atomic

    results_dir.mkdir(parents=True, exist_ok=True)
    out = results_dir / f"deploy-{time.strftime('%Y%m%d-%H%M%S')}.json"
    data: dict = {"command": " ".join(["benchmarks/deploy_ready.py", *sys.argv[1:]]),
                  "nodes": nodes, "nodes_per_pod": nodes_per_pod,
                  "shards": -(-nodes // nodes_per_pod), "cpus": os.cpu_count()}

    def save() -> None:
        write_atomic(out, json.dumps(data, indent=2) + "\n")

    started = time.monotonic()
    subprocess.run([*CLI, "deploy", "--base-kubeconfig", _kubeconfig(base), "--kubeconfig",
                    _kubeconfig(target), "--nodes", str(nodes), "--nodes-per-pod",
                    str(nodes_per_pod), "--wait", "600"], check=True)
    data["shard_pods_ready_seconds"] = round(time.monotonic() - started, 1)
    save()
    try:
        while (ready := _ready(target, "shard")) < nodes:
            if time.monotonic() - started > 900:
                data["error"] = f"only {ready}/{nodes} Ready after 900 s"
                save()
                raise SystemExit(1)
            time.sleep(1)
        data["nodes_ready_seconds"] = round(time.monotonic() - started, 1)
        save()
        time.sleep(idle_seconds)
        procs = _shard_processes()
        cpu_before = {p.pid: cpu_seconds([p]) for p in procs}
        time.sleep(30)
        data["idle_per_shard"] = [{
            "rss_mib": round(p.memory_info().rss / 2**20, 1),
            "cpu_millicores": round(1000 * (cpu_seconds([p]) - cpu_before[p.pid]) / 30, 1),
        } for p in procs]
        save()
    finally:
        started = time.monotonic()
        subprocess.run([*CLI, "undeploy", "--base-kubeconfig", _kubeconfig(base),
                        "--delete-nodes"], check=False)
        data["undeploy_seconds"] = round(time.monotonic() - started, 1)
        save()
    click.echo(json.dumps(data, indent=2))


if __name__ == "__main__":
    run_cli(main)  # a UserError (no such cluster) is one line, not a traceback
