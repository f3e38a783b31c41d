"""Established connections to the apiserver per hollow node, per transport.

Runs ``pykubemark hollow --nodes N`` against a real apiserver once per transport, waits
until every node is Ready, lets it idle, and counts the ESTABLISHED TCP connections from
the fleet's processes to the apiserver port (psutil, i.e. the kernel's view), and the
fleet's CPU seconds over the idle window.

    python benchmarks/connections.py --kubeconfig K [--nodes 20] [--idle 30]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from pykubemark.kube import load_kubeconfig
from pykubemark.measure.resources import cpu_seconds, process_tree

HERE = Path(__file__).resolve().parent
VARIANTS = {
    "h1-json": ["--transport", "h1", "--content-type", "json"],
    "h2-json": ["--transport", "h2", "--content-type", "json"],
    "h2-protobuf": ["--transport", "h2", "--content-type", "protobuf"],
}


def connections(proc: psutil.Process, port: int) -> int:
    total = 0
    for p in process_tree(proc):
        with contextlib.suppress(psutil.Error):
            total += sum(1 for c in p.net_connections(kind="tcp") if c.raddr
                         and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)
    return total


def ready_nodes(kubectl: str, kubeconfig: str, prefix: str) -> int:
    out = subprocess.run([kubectl, "--kubeconfig", kubeconfig, "get", "nodes", "-o", "json"],
                         capture_output=True, text=True, check=True).stdout
    return sum(1 for n in json.loads(out)["items"] if n["metadata"]["name"].startswith(prefix)
               and any(c["type"] == "Ready" and c["status"] == "True"
                       for c in n["status"].get("conditions", [])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "connections.json")
    args = parser.parse_args()
    from pykubemark.provision.binaries import find_kubectl

    kubectl = str(find_kubectl())
    port = urlsplit(load_kubeconfig(args.kubeconfig).server).port
    result: dict = {
        "what": "ESTABLISHED TCP connections to the apiserver per hollow node (kernel's view)",
        "command": f"python benchmarks/connections.py --kubeconfig K --nodes {args.nodes} "
                   f"--idle {args.idle}",
        "machine": "shared: 2 cores, other helpers running real clusters at the same time",
        "nodes": args.nodes, "results": {},
    }
    for name in args.variants.split(","):
        prefix = f"conn-{name}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "pykubemark", "hollow", "--kubeconfig", args.kubeconfig,
             "--nodes", str(args.nodes), "--prefix", prefix, "--delete-nodes-on-exit",
             *VARIANTS[name]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL)
        fleet = psutil.Process(proc.pid)
        try:
            deadline = time.monotonic() + 300
            while ready_nodes(kubectl, args.kubeconfig, prefix) < args.nodes:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"{name}: nodes not Ready (exit {proc.poll()})")
                time.sleep(3)
            time.sleep(10)
            c0 = cpu_seconds(process_tree(fleet))
            time.sleep(args.idle)
            held = connections(fleet, port)
            value = {"established_connections": held,
                     "per_node": round(held / args.nodes, 2),
                     "idle_cpu_s": round(cpu_seconds(process_tree(fleet)) - c0, 2),
                     "idle_window_s": args.idle,
                     "fleet_rss_mib": round(sum(p.memory_info().rss for p in process_tree(fleet))
                                            / 2**20, 1)}
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        result["results"][name] = value
        print(name, json.dumps(value), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
