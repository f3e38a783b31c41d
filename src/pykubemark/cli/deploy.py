"""Hollow nodes as pods on a base cluster: deploy, deploy status, undeploy."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from pykubemark.cli.output import console, err_console
from pykubemark.deploy import DeploySpec
from pykubemark.deploy import deploy as do_deploy
from pykubemark.deploy import dry_run as manifests_yaml
from pykubemark.deploy import status as read_status
from pykubemark.deploy import undeploy as do_undeploy
from pykubemark.deploy.manifests import DEFAULT_IMAGE
from pykubemark.errors import UserError

base_kubeconfig_option = click.option(
    "--base-kubeconfig", type=click.Path(path_type=Path), default=None,
    help="Kubeconfig of the base cluster that runs the shard pods (default: $KUBECONFIG, "
    "~/.kube/config).")
target_kubeconfig_option = click.option(
    "--kubeconfig", type=click.Path(path_type=Path), default=None,
    help="Kubeconfig of the target cluster the hollow nodes join (copied into a Secret, "
    "certificate and token files inlined).")
namespace_option = click.option("--namespace", default="pykubemark", show_default=True,
                                help="Namespace on the base cluster.")


@click.group(invoke_without_command=True)
@base_kubeconfig_option
@target_kubeconfig_option
@click.option("--context", default=None, help="Context of the target kubeconfig.")
@click.option("--nodes", type=click.IntRange(1, 10_000_000), default=None,
              help="Hollow nodes in all (required).")
@click.option("--nodes-per-pod", type=click.IntRange(1, 100_000), default=100,
              show_default=True, help="Nodes per shard pod; ceil(N/M) pods.")
@namespace_option
@click.option("--image", default=None,
              help="Image with pykubemark (default: localhost/pykubemark:VERSION, as made by "
              "`pykubemark image build` and imported on the base's nodes).")
@click.option("--image-pull-policy", type=click.Choice(["IfNotPresent", "Always", "Never"]),
              default="IfNotPresent", show_default=True)
@click.option("--prefix", default="shard", show_default=True,
              help="Node names are PREFIX-K-I: shard K (the pod's ordinal), node I.")
@click.option("--fidelity", type=click.Choice(["kubelet", "lite"]), default="kubelet",
              show_default=True)
@click.option("--wait", type=click.FloatRange(0), default=300.0, show_default=True,
              help="Seconds to wait for every shard pod to be Ready (0: do not wait).")
@click.option("--dry-run", is_flag=True, help="Print the manifests; contact no cluster.")
@click.option("-o", "--output", type=click.Choice(["yaml"]), default="yaml",
              help="Format of --dry-run.")
@click.pass_context
def deploy(ctx: click.Context, base_kubeconfig: Path | None, kubeconfig: Path | None,
           context: str | None, nodes: int | None, nodes_per_pod: int, namespace: str,
           image: str | None, image_pull_policy: str, prefix: str, fidelity: str, wait: float,
           dry_run: bool, output: str) -> None:
    """Run hollow nodes as pods of a StatefulSet on a base cluster, joining a target cluster.

    \b
    Each of the ceil(N/M) shard pods runs `pykubemark hollow` for M nodes named
    PREFIX-K-0.. (K: the pod's ordinal, stable across restarts), with:
    - hostNetwork: true, so that a target apiserver on 127.0.0.1 of the base node
      (a single-machine setup) is reachable;
    - requests sized from the measured cost of an idle hollow node (README, "per hollow
      node", benchmarks/cost.py: 0.52 MiB RSS, 0.20 millicores): 96 MiB + 2 x 0.52 MiB
      and 20m + 2 x 0.2m per node; memory limit 2 x the request, CPU limit 4 x the request
      but at least one core (a throttled shard would renew its leases late);
    - a liveness probe (`pykubemark alive`) that fails when the shard's nodes stopped
      renewing their leases for 50 s, and a 30 s grace period on SIGTERM.
    Objects are created in order and deleted again if anything fails (a refused object,
    an image the base's nodes cannot pull): nothing half-created is left.
    """
    if ctx.invoked_subcommand is not None:
        return
    if nodes is None:
        raise UserError("deploy: --nodes is required")
    spec = DeploySpec(nodes=nodes, nodes_per_pod=min(nodes_per_pod, nodes), namespace=namespace,
                      image=image or DEFAULT_IMAGE, prefix=prefix, fidelity=fidelity,
                      image_pull_policy=image_pull_policy)
    if dry_run:
        click.echo(manifests_yaml(spec, kubeconfig, context), nl=False)
        return
    with err_console.status("deploying") as shown:
        do_deploy(spec, base_kubeconfig, kubeconfig, context, wait=wait or None,
                  on_progress=shown.update)
    console.print(f"deployed {spec.nodes} hollow nodes in {spec.shards} shard pods "
                  f"(namespace {namespace}); `pykubemark deploy status` shows them")


@deploy.command(name="status")
@base_kubeconfig_option
@click.option("--kubeconfig", type=click.Path(path_type=Path), default=None,
              help="Kubeconfig of the target (default: the one in the deployment's Secret).")
@click.option("--context", default=None, help="Context of the target kubeconfig.")
@namespace_option
def deploy_status(base_kubeconfig: Path | None, kubeconfig: Path | None, context: str | None,
                  namespace: str) -> None:
    """Shards, nodes per shard and Ready nodes on the target."""
    deployed, ready = read_status(base_kubeconfig, kubeconfig, context, namespace, "pykubemark")
    spec = deployed.spec
    table = Table(title=f"{spec.nodes} hollow nodes in {spec.shards} shards "
                  f"(namespace {namespace})",
                  caption=ready if isinstance(ready, str) else None)
    for column in ("shard", "pod", "phase", "restarts", "nodes", "ready on target"):
        table.add_column(column)
    for ordinal in range(spec.shards):
        pod = deployed.pods.get(ordinal)
        statuses = (pod or {}).get("status", {}).get("containerStatuses") or []
        table.add_row(str(ordinal), pod["metadata"]["name"] if pod else "-",
                      (pod or {}).get("status", {}).get("phase", "-"),
                      str(sum(c.get("restartCount", 0) for c in statuses)),
                      str(spec.shard_nodes(ordinal)),
                      "?" if isinstance(ready, str) else str(ready.get(ordinal, 0)))
    console.print(table)


@click.command()
@base_kubeconfig_option
@click.option("--kubeconfig", type=click.Path(path_type=Path), default=None,
              help="Kubeconfig of the target (default: the one in the deployment's Secret).")
@click.option("--context", default=None, help="Context of the target kubeconfig.")
@namespace_option
@click.option("--delete-nodes", is_flag=True, help="Also delete the Node objects on the target.")
def undeploy(base_kubeconfig: Path | None, kubeconfig: Path | None, context: str | None,
             namespace: str, delete_nodes: bool) -> None:
    """Remove what `deploy` created on the base cluster (and the target's Nodes)."""
    with err_console.status("undeploying") as shown:
        deleted, nodes = do_undeploy(base_kubeconfig, kubeconfig, context, namespace,
                                     "pykubemark", delete_nodes=delete_nodes,
                                     on_progress=shown.update)
    console.print("deleted: " + (", ".join(deleted) or "nothing (nothing was deployed)")
                  + (f"; {nodes} nodes on the target" if delete_nodes else ""))
