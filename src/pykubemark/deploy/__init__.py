"""Hollow nodes as pods on a base cluster: `pykubemark deploy`, `deploy status`, `undeploy`.

Where one machine is not enough, Kubernetes itself spreads the shards: a StatefulSet on
an ordinary (base) cluster runs `pykubemark hollow` for a share of the nodes per pod,
all pointed at the target cluster under test, as the Kubemark blog's 2000-node setup does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
import yaml

from pykubemark.deploy import apply
from pykubemark.deploy.manifests import DeploySpec, manifests
from pykubemark.errors import UserError
from pykubemark.kube.client import ApiError
from pykubemark.kube.config import KubeConfig, flatten_kubeconfig, load_kubeconfig
from pykubemark.kube.probe import check_server

__all__ = ["DeploySpec", "deploy", "dry_run", "status", "undeploy"]


def base_permissions(namespace: str) -> list[tuple[str, str, str, str]]:
    return [("create", "", "namespaces", ""), ("create", "", "secrets", namespace),
            ("create", "", "serviceaccounts", namespace),
            ("create", "apps", "statefulsets", namespace),
            ("delete", "apps", "statefulsets", namespace), ("list", "", "pods", namespace)]


def target_text(kubeconfig: Path | None, context: str | None) -> str:
    return yaml.safe_dump(flatten_kubeconfig(kubeconfig, context), sort_keys=False)


def dry_run(spec: DeploySpec, kubeconfig: Path | None, context: str | None) -> str:
    """The manifests as one YAML stream (no cluster is contacted)."""
    return yaml.safe_dump_all(manifests(spec, target_text(kubeconfig, context)),
                              sort_keys=False)


def _run(coro, server: str):
    try:
        return asyncio.run(coro)
    except ApiError as exc:
        raise UserError(f"apiserver {server} answered {exc.status}: {exc.message}") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise UserError(f"cannot reach apiserver {server}: {exc}") from None


def deploy(spec: DeploySpec, base_kubeconfig: Path | None, kubeconfig: Path | None,
           context: str | None, *, wait: float | None,
           on_progress: Callable[[str], None]) -> None:
    text = target_text(kubeconfig, context)
    target = load_kubeconfig(kubeconfig, context)
    check_server(target)  # the shards must be able to register nodes
    base = load_kubeconfig(base_kubeconfig)
    check_server(base, permissions=base_permissions(spec.namespace))
    _run(apply.deploy(base, spec, text, wait=wait, on_progress=on_progress), base.server)


def _target_config(deployed: apply.Deployed, kubeconfig: Path | None,
                   context: str | None) -> KubeConfig:
    if kubeconfig is not None or not deployed.target_kubeconfig:
        return load_kubeconfig(kubeconfig, context)
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".kubeconfig") as handle:
        handle.write(deployed.target_kubeconfig)
        handle.flush()
        return load_kubeconfig(handle.name)


def status(base_kubeconfig: Path | None, kubeconfig: Path | None, context: str | None,
           namespace: str, name: str) -> tuple[apply.Deployed, dict[int, int] | str]:
    """The deployment and Ready nodes per shard on the target (or why they are unknown)."""
    base = load_kubeconfig(base_kubeconfig)
    deployed = _run(apply.read_deployed(base, namespace, name), base.server)
    if deployed is None:
        raise UserError(f"nothing deployed in namespace {namespace} on {base.server}")
    target = _target_config(deployed, kubeconfig, context)
    try:
        ready: dict[int, int] | str = _run(apply.ready_nodes(target, deployed.spec),
                                           target.server)
    except UserError as exc:
        ready = exc.message
    return deployed, ready


def undeploy(base_kubeconfig: Path | None, kubeconfig: Path | None, context: str | None,
             namespace: str, name: str, *, delete_nodes: bool,
             on_progress: Callable[[str], None]) -> tuple[list[str], int]:
    base = load_kubeconfig(base_kubeconfig)
    deployed = _run(apply.read_deployed(base, namespace, name), base.server)
    target = None
    if delete_nodes and deployed is not None:
        target = _target_config(deployed, kubeconfig, context)
        check_server(target, verb="delete")
    deleted = _run(apply.undeploy(base, namespace, name, on_progress=on_progress),
                   base.server)
    removed = 0
    if target is not None and deployed is not None:
        removed = _run(apply.delete_nodes(target, deployed.spec), target.server)
    return deleted, removed
