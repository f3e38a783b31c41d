"""Addons of a local cluster: the real metrics-server and CoreDNS as child processes
beside the control plane, at the versions the release is tested with
(provision/addons.py builds them), stopped by `down` with the rest.

Each addon is one module with ``start(cluster, binary, version)``: it gives the addon an
identity of its own (a client certificate from the cluster CA), the RBAC objects and API
objects its manifests in the Kubernetes tree create, and starts it; its requests reach the
apiserver as those of a real cluster's addon do, and are part of every measured run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pykubemark.errors import UserError

if TYPE_CHECKING:
    from pykubemark.cluster.control_plane import LocalCluster
    from pykubemark.provision.addons import AddonVersion
    from pykubemark.provision.releases import Release

#: Every addon, in the order they start.
ADDONS = ("metrics-server", "coredns")
#: What `up` starts unless told: none. Being scraped by metrics-server costs the fleet
#: 1.3 ms of CPU per node per 15 s scrape, +55 % of an idle fleet's CPU (docs/addons.md,
#: benchmarks/results/addons-cost-*.json), and the first use builds it (minutes): a
#: user asks for it with `--addons metrics-server`.
DEFAULT_ADDONS: tuple[str, ...] = ()


def parse_addons(text: str | None) -> tuple[str, ...]:
    """``metrics-server,coredns``, ``none``, or None for the default."""
    if text is None:
        return DEFAULT_ADDONS
    words = [w.strip() for w in text.split(",") if w.strip()]
    if words in ([], ["none"]):
        return ()
    unknown = [w for w in words if w not in ADDONS]
    if unknown:
        raise UserError(f"--addons: unknown {', '.join(unknown)} "
                        f"(known: {', '.join(ADDONS)}, or none)")
    return tuple(a for a in ADDONS if a in words)


@dataclass(frozen=True)
class Prepared:
    version: AddonVersion
    binary: Path


def prepare(names: tuple[str, ...], release: Release) -> dict[str, Prepared]:
    """Each addon's version for the release and its built binary (building it once):
    done before anything starts, so that a build that fails leaves no cluster."""
    from pykubemark.provision.addons import addon_versions, build_addon

    if not names:
        return {}
    versions = addon_versions(release, names)
    return {name: Prepared(versions[name], build_addon(versions[name])) for name in names}


def start(cluster: LocalCluster, prepared: dict[str, Prepared],
          progress: Callable[[str], None] = lambda _m: None) -> None:
    from pykubemark.cluster.addons import coredns, metrics_server

    starters = {"metrics-server": metrics_server.start, "coredns": coredns.start}
    for name, item in prepared.items():
        progress(f"starting {name} {item.version.version}")
        starters[name](cluster, item.binary, item.version.version)
        cluster.state.addons[name] = item.version.version
        cluster.state.save()


def addon_dir(cluster: LocalCluster, name: str) -> Path:
    directory = cluster.dir / "addons" / name
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return directory


def identity(cluster: LocalCluster, name: str, user: str,
             groups: tuple[str, ...] = ()) -> tuple[Path, Path, Path]:
    """A client certificate from the cluster CA for ``user`` and a kubeconfig with it:
    (kubeconfig, cert, key)."""
    from pykubemark.cluster.kubeconfig import write_kubeconfig
    from pykubemark.cluster.pki import issue_client_cert
    from pykubemark.files import write_atomic

    pki = cluster.dir / "pki"
    cert, key = issue_client_cert(pki / "ca.crt", pki / "ca.key", user, groups)
    directory = addon_dir(cluster, name)
    cert_path = write_atomic(directory / "client.crt", cert)
    key_path = write_atomic(directory / "client.key", key, mode=0o600)
    kubeconfig = write_kubeconfig(directory / "kubeconfig", server=cluster.state.server,
                                  ca_cert=pki / "ca.crt", user=user, cluster=cluster.state.name,
                                  client_cert=cert, client_key=key)
    return kubeconfig, cert_path, key_path


def apply(cluster: LocalCluster, objects: list[tuple[str, dict]]) -> None:
    """Create each (collection path, object) as admin; one that exists is left as it is."""
    from pykubemark.kube.blocking import call
    from pykubemark.kube.client import ApiError
    from pykubemark.kube.config import server_config

    config = server_config(cluster.state.server, token=cluster.token("admin"),
                           ca_cert=cluster.dir / "pki" / "ca.crt")
    for path, body in objects:
        what = f"{body['kind']} {body['metadata']['name']}"
        try:
            call(config, "POST", path, body=body, timeout=30)
        except ApiError as exc:
            if not exc.conflict:
                raise UserError(f"cannot create {what}: {exc.status} {exc.message}") from None
        except OSError as exc:
            raise UserError(f"cannot create {what}: {exc}") from None


RBAC = "/apis/rbac.authorization.k8s.io/v1"


def cluster_role(name: str, rules: list[dict]) -> tuple[str, dict]:
    return f"{RBAC}/clusterroles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {"addonmanager.kubernetes.io/mode": "Reconcile"}},
        "rules": rules}


def binding(name: str, role: str, user: str, *, namespace: str | None = None,
            role_kind: str = "ClusterRole") -> tuple[str, dict]:
    kind = "RoleBinding" if namespace else "ClusterRoleBinding"
    path = f"{RBAC}/namespaces/{namespace}/rolebindings" if namespace \
        else f"{RBAC}/clusterrolebindings"
    meta: dict = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return path, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}
