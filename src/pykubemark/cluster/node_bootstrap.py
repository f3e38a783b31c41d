"""What kubeadm sets up so kubelets can join by TLS bootstrap, for the local cluster.

A token-file user ``kubelet-bootstrap`` in ``system:bootstrappers`` may create CSRs
(``system:node-bootstrapper``); the controller-manager's csrapproving controller
approves node client CSRs from that group (``...:nodeclient``) and renewals by nodes
themselves (``...:selfnodeclient``), and its csrsigning controller signs them with the
cluster CA. One addition of ours: the bootstrap user may delete Nodes, so
``hollow --delete-nodes-on-exit`` can clean up what per-node identities may not.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pykubemark.errors import UserError

if TYPE_CHECKING:
    from pykubemark.kube.config import KubeConfig

BOOTSTRAP_USER = "kubelet-bootstrap"
BOOTSTRAP_GROUP = "system:bootstrappers"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
_CSR_ROLE = "system:certificates.k8s.io:certificatesigningrequests"
#: (binding name, cluster role, subject kind, subject name), named as kubeadm names them.
BINDINGS = (
    ("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", "Group", BOOTSTRAP_GROUP),
    ("kubeadm:node-autoapprove-bootstrap", f"{_CSR_ROLE}:nodeclient", "Group", BOOTSTRAP_GROUP),
    ("kubeadm:node-autoapprove-certificate-rotation", f"{_CSR_ROLE}:selfnodeclient",
     "Group", "system:nodes"),
    ("pykubemark:hollow-cleanup", "pykubemark:hollow-cleanup", "User", BOOTSTRAP_USER),
    # The Go kubemark's proxies (benchmarks), as system:kube-proxy is bound by default.
    ("pykubemark:go-proxy", "system:node-proxier", "User", "kubemark:go-proxy"),
)
CLEANUP_ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
    "metadata": {"name": "pykubemark:hollow-cleanup"},
    "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["delete"]}],
}


def _binding(name: str, role: str, kind: str, subject: str) -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": kind,
                      "name": subject}],
    }


def _create(config: KubeConfig, path: str, body: dict) -> None:
    from pykubemark.kube.blocking import call
    from pykubemark.kube.client import ApiError

    what = f"{body['kind']} {body['metadata']['name']}"
    try:
        call(config, "POST", path, body=body, timeout=30)
    except ApiError as exc:
        if not exc.conflict:  # already there: `up` of a restarted etcd, nothing to do
            raise UserError(f"cannot create {what}: {exc.status} {exc.message}") from None
    except OSError as exc:
        raise UserError(f"cannot create {what}: {exc}") from None


def allow_node_bootstrap(server: str, admin_token: str, ca_cert: Path) -> None:
    # kube (aiohttp) is imported here, not with the module: see cluster/health.py.
    from pykubemark.kube.config import server_config

    config = server_config(server, token=admin_token, ca_cert=ca_cert)
    _create(config, f"{RBAC}/clusterroles", CLEANUP_ROLE)
    for binding in BINDINGS:
        _create(config, f"{RBAC}/clusterrolebindings", _binding(*binding))
