"""Hollow nodes as part of a local cluster: started by `up --nodes`, stopped by `down`."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pykubemark.cluster import health
from pykubemark.cluster.control_plane import LocalCluster, python_argv
from pykubemark.errors import UserError
from pykubemark.kube.nodes import count_ready
from pykubemark.waiting import ReadyCount


def chaos_file(cluster: LocalCluster) -> Path:
    return cluster.dir / "chaos.json"


def cluster_chaos_file(name: str) -> Path:
    """Where `chaos --name` writes node failures for the nodes of `up --nodes`."""
    return chaos_file(LocalCluster.load(name))


@dataclass
class HollowArgs:
    nodes: int
    prefix: str = "hollow"
    fidelity: str | None = None
    processes: int = 1
    profile: Path | None = None
    events: bool | None = None
    endpoint_slices: bool = False
    register_rate: float = 50.0
    node_credentials: str = "bootstrap"
    kubelet_api: bool = True
    transport: str = "h2"
    content_type: str = "protobuf"
    #: Where the nodes' addresses are local (cluster/hollow_net.py), and their range.
    netns: str | None = None
    node_ip_base: str | None = None
    #: The fleet's /metrics on 127.0.0.1 from this port (one per process).
    metrics_port: int | None = None

    def argv(self, cluster: LocalCluster) -> list[str]:
        kubelet_user = "kubelet-bootstrap" if self.node_credentials == "bootstrap" \
            else "hollow-kubelet"
        args = [
            "hollow", "--kubeconfig", str(cluster.kubeconfig_for(kubelet_user)),
            "--proxy-kubeconfig", str(cluster.kubeconfig_for("hollow-proxy")),
            "--node-credentials", self.node_credentials,
            "--cert-dir", str(cluster.dir / "hollow-certs"),
            "--nodes", str(self.nodes), "--prefix", self.prefix,
            "--transport", self.transport, "--content-type", self.content_type,
            "--processes", str(self.processes), "--register-rate", str(self.register_rate),
            # A fleet process that dies is replaced; `status` shows how often.
            "--supervise", "--restarts-file", str(cluster.restarts_file("hollow")),
            # `pykubemark chaos --name` writes node failures there.
            "--chaos-file", str(chaos_file(cluster)),
        ]
        if self.metrics_port:
            args += ["--metrics-port", str(self.metrics_port)]
        if self.fidelity:
            args += ["--fidelity", self.fidelity]
        if self.fidelity == "lite":
            # The shared watches of every pod and node need a user allowed to make them.
            args += ["--watch-kubeconfig", str(cluster.kubeconfig_for("hollow-kubelet"))]
        if self.profile:
            args += ["--profile", str(self.profile.resolve())]
        if self.events is not None:
            args.append("--events" if self.events else "--no-events")
        if self.endpoint_slices:
            args.append("--endpoint-slices")
        if self.kubelet_api:
            # The apiserver calls in with its --kubelet-client-certificate, from this CA.
            args += ["--kubelet-client-ca", str(cluster.dir / "pki" / "ca.crt")]
            if self.netns and self.node_ip_base:
                args += ["--kubelet-netns", self.netns, "--node-ip-base", self.node_ip_base]
        else:
            args.append("--no-kubelet-api")
        return python_argv(*args)


#: Seconds without one more Ready node after which `up --nodes` gives up.
STALL = 120.0


def ready_nodes(cluster: LocalCluster, prefix: str) -> int | None:
    """Nodes of ``prefix`` Ready; None when the apiserver did not answer the list (an
    overloaded one times out), which is not none Ready."""
    # resourceVersion=0: from the watch cache, not a quorum read of every node from etcd
    status, body = health.get(cluster.state.server + "/api/v1/nodes?resourceVersion=0",
                              token=cluster.token("admin"), ca_cert=cluster.dir / "pki" / "ca.crt",
                              timeout=30)
    if status != 200:
        return None
    return count_ready(json.loads(body).get("items", []), prefix)


def start_hollow(cluster: LocalCluster, args: HollowArgs,
                 progress: Callable[[str], None] = lambda _msg: None) -> None:
    if args.kubelet_api and args.netns is None and os.geteuid() == 0 \
            and shutil.which("ip") is not None:
        # Addresses the apiserver's node proxy accepts (it refuses loopback ones).
        from pykubemark.cluster import hollow_net

        net = cluster.state.hollow_network or hollow_net.create(cluster.state)
        args = dataclasses.replace(args, netns=net.netns, node_ip_base=net.cidr)
    if args.metrics_port is None:
        from pykubemark.cluster.ports import free_run

        args = dataclasses.replace(args, metrics_port=free_run(args.processes))
    cluster.state.ports["hollow-metrics"] = args.metrics_port or 0
    proc = cluster.add_process("hollow", args.argv(cluster), port=args.metrics_port)
    # A busy machine registers slowly but steadily: give up only when no node turned Ready
    # for STALL seconds. Listing every node is itself load at thousands, so poll less often.
    # (at 5000 nodes every 20 s, not 6: each list serializes every Node)
    interval = min(20.0, 1.0 + args.nodes / 250)
    waiting = ReadyCount("hollow nodes Ready", stall=STALL, progress=progress)
    while not waiting.done(ready_nodes(cluster, args.prefix), args.nodes):
        if not proc.alive():
            from pykubemark.cluster.processes import last_lines

            raise UserError(f"hollow nodes exited: {last_lines(proc.log, 2)} (log: {proc.log})")
        if line := waiting.overdue():
            raise UserError(f"{line} (log: {proc.log})")
        time.sleep(interval)
