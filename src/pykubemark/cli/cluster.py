"""Local clusters: up, down, status, restart, kubectl, real-nodes."""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich.table import Table

from pykubemark.cli.options import bin_dir_option, name_option, node_options, release_option
from pykubemark.cli.output import console, err_console
from pykubemark.cluster import lifecycle
from pykubemark.cluster.addons import parse_addons
from pykubemark.cluster.control_plane import LocalCluster, UpOptions
from pykubemark.cluster.real_node import usage
from pykubemark.cluster.state import all_names
from pykubemark.engines import NodeOptions


@click.command()
@name_option
@bin_dir_option
@release_option
@click.option("--port", "apiserver_port", type=int, default=None,
              help="kube-apiserver port on 127.0.0.1 (default: a free one).")
@click.option("--audit/--no-audit", default=False,
              help="Write the apiserver's audit log (Metadata level) to the state dir.")
@click.option("--etcd-tmpfs", is_flag=True, help="Keep etcd's data in /dev/shm.")
@click.option("--apiserver-arg", "apiserver_args", multiple=True,
              help="Extra kube-apiserver flag, e.g. --apiserver-arg=--max-requests-inflight=800")
@click.option("--controller-manager-arg", "controller_manager_args", multiple=True,
              help="Extra kube-controller-manager flag (the last one of a name wins).")
@click.option("--scheduler-arg", "scheduler_args", multiple=True,
              help="Extra kube-scheduler flag (the last one of a name wins).")
@click.option("--etcd-arg", "etcd_args", multiple=True,
              help="Extra etcd flag, e.g. --etcd-arg=--snapshot-count=1000 (the last one of a "
              "name wins).")
@click.option("--nodes", type=click.IntRange(0, 100_000), default=0, show_default=True,
              help="Hollow nodes to start with the cluster (stopped by `down`).")
@click.option("--size", type=click.IntRange(0, 100_000), default=None,
              help="Size the apiserver's in-flight limits and caches for this many nodes as "
              "Kubernetes' kubemark master does (default: --nodes).")
@node_options
@click.option("--real-nodes", "real_nodes", type=click.IntRange(0, 250), default=0,
              help="Also N real nodes NAME-node-I: the release's kubelet and kube-proxy on "
              "Debian's containerd, runc and CNI plugins, each in a network namespace, cgroup "
              "and containerd of its own, pods reaching pods and services across nodes. "
              "Needs root.")
@click.option("--real-node", is_flag=True,
              help="Also one real node NAME-node in the host's network (no kube-proxy), so "
              "`deploy`'s host-network shards reach a target apiserver on the host's "
              "loopback: a base cluster for `deploy`. Needs root.")
@click.option("--load-image", "load_images", multiple=True, type=click.Path(path_type=Path),
              help="With --real-node(s): import this image archive (e.g. from `pykubemark "
              "image build`) into every real node's containerd.")
@click.option("--addons", "addons", default=None, metavar="LIST",
              help="Addons to run beside the control plane, comma-separated: "
              "metrics-server (`kubectl top`, HPAs), coredns; or none. Built once from Go "
              "modules at the versions the release is tested with (docs/addons.md). "
              "Default: none (metrics-server costs the fleet ~1.3 ms CPU per node per "
              "15 s scrape).")
@click.option("--prometheus", is_flag=True,
              help="Also run Debian's prometheus on 127.0.0.1, scraping the control plane, "
              "etcd, the hollow fleet and the addons (`status` shows its address; "
              "`run --prometheus URL` reads measurements from it).")
def up(name: str, bin_dir: Path | None, kubernetes_version: str | None,
       apiserver_port: int | None, audit: bool, etcd_tmpfs: bool, apiserver_args: tuple[str, ...],
       controller_manager_args: tuple[str, ...], scheduler_args: tuple[str, ...],
       etcd_args: tuple[str, ...], nodes: NodeOptions, size: int | None, engine: str,
       real_nodes: int, real_node: bool, load_images: tuple[Path, ...], addons: str | None,
       prometheus: bool) -> None:
    """Start a local control plane (etcd, apiserver, scheduler, controller-manager)."""
    started = lifecycle.up(lifecycle.UpRequest(
        cluster=UpOptions(name=name, apiserver_port=apiserver_port, audit=audit,
                          etcd_tmpfs=etcd_tmpfs, apiserver_args=apiserver_args,
                          controller_manager_args=controller_manager_args,
                          scheduler_args=scheduler_args, etcd_args=etcd_args,
                          size=nodes.count if size is None else size),
        bin_dir=bin_dir, kubernetes_version=kubernetes_version, engine=engine, nodes=nodes,
        real_nodes=real_nodes, real_node=real_node, load_images=load_images,
        addons=parse_addons(addons), prometheus=prometheus),
        err_console.status)
    state = started.cluster.state
    kubeconfig = state.kubeconfig
    console.print(f"cluster [bold]{name}[/] is up: {state.server}"
                  + (f" with {nodes.count} {started.engine.title}" if nodes.count else "")
                  + (f" and real node {name}-node" if real_node else "")
                  + (f" and {real_nodes} real node(s) {name}-node-0.." if real_nodes else ""))
    for line in _extras(started.cluster):
        console.print(f"  {line}")
    console.print(f"  kubeconfig: {kubeconfig}")
    console.print(f"  export KUBECONFIG={kubeconfig}")
    kubectl = started.binaries.kubectl or "kubectl"
    console.print(f"  {kubectl} --kubeconfig {kubeconfig} get --raw /readyz")
    console.print(f"  stop it with: pykubemark down --name {name}")


@click.command()
@name_option
@click.option("--purge", is_flag=True, help="Also delete the state directory (certs, logs).")
def down(name: str, purge: bool) -> None:
    """Stop every process of a local cluster."""
    stopped = lifecycle.down(name, purge=purge)
    if stopped:
        console.print(f"cluster '{name}' stopped: {', '.join(stopped)}")
    else:
        console.print(f"cluster '{name}' was not running")


@click.command()
@click.option("--name", default=None, help="One cluster (default: all).")
def status(name: str | None) -> None:
    """Show each component of the local clusters: pid, port, health."""
    names = [name] if name else all_names()
    if not names:
        console.print("no clusters")
        return
    for cluster_name in names:
        cluster = LocalCluster.load(cluster_name)
        table = Table(title=f"{cluster_name}  {cluster.state.server}",
                      caption=f"kubeconfig: {cluster.state.kubeconfig}")
        for column in ("component", "pid", "port", "health", "restarts"):
            table.add_column(column)
        for row in cluster.status():
            table.add_row(str(row["component"]), str(row["pid"] or "-"),
                          str(row["port"] or "-"), str(row["health"]), str(row["restarts"]))
        console.print(table)
        for line in _extras(cluster):
            console.print(f"  {line}")
        if cluster.state.real_nodes:
            _real_nodes_table(cluster)


def _extras(cluster: LocalCluster) -> list[str]:
    """Addons, the fleet's metrics and Prometheus, each on a line."""
    from pykubemark.cluster import prometheus

    state = cluster.state
    lines = []
    if state.addons:
        lines.append("addons: " + ", ".join(f"{k} {v}" for k, v in state.addons.items()))
    hollow = state.proc("hollow")
    if hollow is not None and hollow.alive() and state.ports.get("hollow-metrics"):
        lines.append(f"fleet metrics: http://127.0.0.1:{state.ports['hollow-metrics']}/metrics"
                     " (process K of --processes on the port + K)")
    server = state.proc("prometheus")
    if (url := prometheus.url(cluster)) and server is not None and server.alive():
        lines.append(f"prometheus: {url}")
    return lines


def _real_nodes_table(cluster: LocalCluster) -> None:
    """Each real node's address, namespace, containerd socket and what it costs."""
    table = Table(title=f"{cluster.state.name}: real nodes", caption="agents: kubelet, "
                  "containerd and its shims, kube-proxy; CPU %: of one core over 1 s; "
                  "CPU s: since start")
    for column in ("node", "address", "netns", "containerd socket", "agents RSS MiB",
                   "agents CPU %", "agents CPU s", "containers", "containers RSS MiB"):
        table.add_column(column, overflow="fold")
    for row in usage(cluster.state):
        table.add_row(str(row["node"]), str(row["address"]), str(row["netns"]),
                      str(row["runtime"]), f"{row['agents_rss_mib']:.1f}",
                      f"{row['agents_cpu_percent']:.1f}", f"{row['agents_cpu_seconds']:.1f}",
                      str(row["containers"]), f"{row['containers_rss_mib']:.1f}")
    console.print(table)


@click.command()
@name_option
@click.argument("component")
@click.option("--downtime", type=click.FloatRange(0, 3600), default=0.0, show_default=True,
              help="Seconds to stay down before starting again.")
@click.option("--signal", "how", type=click.Choice(["kill", "term"]), default="kill",
              show_default=True, help="kill: SIGKILL, as a crash; term: SIGTERM, a clean stop.")
def restart(name: str, component: str, downtime: float, how: str) -> None:
    """Stop one component of a local cluster and start it again with the same flags.

    COMPONENT: etcd, kube-apiserver, kube-scheduler, kube-controller-manager or hollow.
    Returns once it is healthy again.
    """
    cluster = LocalCluster.load(name)
    with err_console.status(f"restarting {component} of cluster '{name}'"):
        proc = cluster.restart(component, downtime=downtime, kill=how == "kill")
    console.print(f"{proc.name} of cluster '{name}' restarted: pid {proc.pid}"
                  + (", healthy" if proc.health_url else ""))


@click.command(context_settings={"ignore_unknown_options": True,
                                 "allow_interspersed_args": False})
@name_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def kubectl(name: str, args: tuple[str, ...]) -> None:
    """Run kubectl against a local cluster: pykubemark kubectl --name N -- get nodes."""
    argv = lifecycle.kubectl_argv(name, args)
    os.execv(argv[0], argv)


@click.group(name="real-nodes")
def real_nodes() -> None:
    """Real nodes of a running local cluster (see `up --real-nodes`)."""


@real_nodes.command(name="add")
@name_option
@click.option("--count", type=click.IntRange(1, 250), default=1, show_default=True,
              help="Real nodes to add.")
@click.option("--load-image", "load_images", multiple=True, type=click.Path(path_type=Path),
              help="Also import this image archive into the new nodes' containerd.")
def real_nodes_add(name: str, count: int, load_images: tuple[Path, ...]) -> None:
    """Add real nodes NAME-node-I (each with its own network namespace, cgroup,
    containerd, kubelet and kube-proxy) to a running local cluster; returns once they
    are Ready. On failure or Ctrl-C the nodes it made are undone, the cluster runs on."""
    added = lifecycle.add_real_nodes(name, count, load_images, err_console.status)
    console.print(f"cluster [bold]{name}[/]: real node(s) {', '.join(added)} Ready")
