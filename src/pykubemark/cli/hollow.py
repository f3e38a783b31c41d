"""`pykubemark hollow`: nodes against any cluster, in the foreground."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pykubemark.cli.options import node_options
from pykubemark.cli.output import err_console
from pykubemark.engines import HollowOptions
from pykubemark.hollow.launch import run_hollow


@click.command()
@click.option("--kubeconfig", type=click.Path(path_type=Path), default=None,
              help="Kubeconfig of the cluster (default: $KUBECONFIG, ~/.kube/config).")
@click.option("--proxy-kubeconfig", type=click.Path(path_type=Path), default=None,
              help="Separate credentials for the hollow kube-proxies (default: --kubeconfig).")
@click.option("--nodes", type=click.IntRange(1, 100_000), required=True)
@node_options
@click.option("--cert-dir", type=click.Path(path_type=Path), default=None,
              help="Where bootstrapped node certificates are kept and reused "
              "(default: $PYKUBEMARK_STATE/hollow-certs, one subdirectory per apiserver).")
@click.option("--delete-nodes-on-exit", is_flag=True, help="Delete the Node objects on exit.")
@click.option("--supervise", is_flag=True,
              help="Run the nodes in child processes and restart one that dies, with the same "
              "node names (always so with --processes > 1).")
@click.option("--restarts-file", type=click.Path(path_type=Path), default=None,
              help="Record the restarts of child processes in this JSON file.")
@click.option("--shard-from-pod-name", "pod_name", default=None, metavar="POD_NAME",
              help="Shard pod of `deploy`: the StatefulSet ordinal K at the end of POD_NAME "
              "makes the prefix PREFIX-K and this shard's nodes the K-th share of "
              "--total-nodes, --nodes each.")
@click.option("--total-nodes", type=click.IntRange(1, 10_000_000), default=None,
              help="With --shard-from-pod-name: nodes of all shards together.")
@click.option("--heartbeat-file", type=click.Path(path_type=Path), default=None,
              help="Touch this file while every node renews its lease (for `pykubemark alive`).")
@click.option("--chaos-file", type=click.Path(path_type=Path), default=None,
              help="Apply the node failures that `pykubemark chaos --file` writes to this file.")
@click.option("--kubelet-port", type=click.IntRange(0, 65535), default=0,
              help="Port of every node's kubelet API (default: a free one per process; "
              "with --kubelet-address, the first node's, default 10250).")
@click.option("--kubelet-address", envvar="PYKUBEMARK_KUBELET_ADDRESS", default=None,
              help="Serve every node's kubelet API on this address, one port per node "
              "from --kubelet-port (default 10250) up, instead of one loopback address per "
              "node; also the nodes' InternalIP. For shards in pods with a network of their "
              "own (`deploy`'s shards share the base node's and use loopback addresses). "
              "[env: PYKUBEMARK_KUBELET_ADDRESS]")
@click.option("--kubelet-client-ca", type=click.Path(path_type=Path, exists=True,
                                                      dir_okay=False), default=None,
              help="Client certificates of this CA authenticate their CN (the apiserver's "
              "--kubelet-client-certificate); default: the kubeconfig's CA. Bearer tokens go "
              "through a TokenReview, every request through a SubjectAccessReview, as a "
              "kubelet's defaults have it; anonymous requests get 401.")
@click.option("--kubelet-anonymous", is_flag=True,
              help="UNSAFE: the kubelet APIs answer anyone, unauthenticated and unauthorized "
              "(a kubelet's --anonymous-auth and --authorization-mode=AlwaysAllow): every "
              "user of the machine reads the pods' specs and logs.")
@click.option("--kubelet-netns", default=None, metavar="NETNS",
              help="Serve each node's kubelet API inside this network namespace, where the "
              "node addresses (--node-ip-base) are local, instead of on loopback (the "
              "apiserver's node proxy refuses loopback addresses). `up` makes one.")
@click.option("--node-ip-base", default=None, metavar="CIDR",
              help="The nodes' InternalIPs: the CIDR's first address + 1 + the node's index "
              "(default: the profile's node_ip_base, 127.16.0.0/12).")
@click.option("--watch-kubeconfig", type=click.Path(path_type=Path, exists=True,
                                                     dir_okay=False), default=None,
              help="--fidelity lite: credentials for the shared watches of all pods and nodes "
              "(default: the first node's; since Kubernetes 1.32 a node may watch only its "
              "own pods, so per-node identities need this).")
@click.option("--kubelet-version", default=None, metavar="X.Y.Z",
              help="Act as this release's kubelet and kube-proxy (default: the apiserver's "
              "own version, from /version).")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="Serve the fleet's own metrics (Prometheus text, docs/metrics.md) at "
              "http://127.0.0.1:PORT/metrics; with --processes N, process K on PORT+K.")
@click.option("-v", "--verbose", is_flag=True, help="Log every failed request.")
def hollow(**options: Any) -> None:
    """Run hollow nodes (kubelet + kube-proxy each) against a cluster until Ctrl-C."""
    run_hollow(HollowOptions(**options), say=err_console.print)
