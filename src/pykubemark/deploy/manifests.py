"""The objects `pykubemark deploy` creates on a base cluster, as plain dicts.

Pure functions, so that `--dry-run -o yaml` prints exactly what `deploy` creates and the
unit tests read the same manifests. One StatefulSet: its ordinals give every shard pod a
stable identity, hence stable node names across restarts, so a restarted shard adopts
its own Nodes instead of registering new ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pykubemark import __version__

MANAGED_BY = "app.kubernetes.io/managed-by"
PART_OF = "app.kubernetes.io/name"
NAME = "pykubemark"
TARGET_DIR = "/etc/pykubemark/target"
RUN_DIR = "/run/pykubemark"
HEARTBEAT = f"{RUN_DIR}/heartbeat"
DEFAULT_IMAGE = f"localhost/pykubemark:{__version__}"
ANNOTATIONS = "pykubemark.io/"

# Measured cost per idle hollow node (README, "per hollow node": benchmarks/cost.py, 500
# nodes in one process): 0.52 MiB RSS and 0.20 millicores. A shard asks for twice that per
# node, plus what one Python process with its libraries needs before any node exists.
MIB_PER_NODE = 0.52
MILLICORES_PER_NODE = 0.20
HEADROOM = 2.0
BASE_MIB = 96
BASE_MILLICORES = 20
#: No CPU limit below a core: a throttled shard renews its leases late and its nodes
#: turn NotReady, which would measure the base cluster rather than the target.
MIN_CPU_LIMIT = 1000
#: Seconds without a successful lease renewal of every node after which the liveness
#: probe fails: the controller-manager's default grace period (40 s) plus one renewal.
HEARTBEAT_MAX_AGE = 50


@dataclass(frozen=True)
class DeploySpec:
    nodes: int
    nodes_per_pod: int = 100
    namespace: str = NAME
    image: str = DEFAULT_IMAGE
    prefix: str = "shard"
    name: str = NAME
    image_pull_policy: str = "IfNotPresent"
    fidelity: str = "kubelet"
    termination_grace_seconds: int = 30

    @property
    def shards(self) -> int:
        return math.ceil(self.nodes / self.nodes_per_pod)

    def shard_nodes(self, ordinal: int) -> int:
        """Nodes of shard ``ordinal``: full shards, the last one gets the rest."""
        return max(0, min(self.nodes_per_pod, self.nodes - ordinal * self.nodes_per_pod))

    def node_names(self, ordinal: int) -> list[str]:
        return [f"{self.prefix}-{ordinal}-{i}" for i in range(self.shard_nodes(ordinal))]


def shard_prefix(prefix: str, pod_name: str) -> tuple[str, int]:
    """(node-name prefix, ordinal) of the StatefulSet pod ``pod_name`` (NAME-ORDINAL)."""
    _, sep, ordinal = pod_name.rpartition("-")
    if not sep or not ordinal.isdigit():
        raise ValueError(f"pod name '{pod_name}' does not end in -ORDINAL")
    return f"{prefix}-{int(ordinal)}", int(ordinal)


def resources(nodes_per_pod: int) -> dict:
    memory = math.ceil(BASE_MIB + HEADROOM * MIB_PER_NODE * nodes_per_pod)
    cpu = math.ceil(BASE_MILLICORES + HEADROOM * MILLICORES_PER_NODE * nodes_per_pod)
    return {
        "requests": {"memory": f"{memory}Mi", "cpu": f"{cpu}m"},
        "limits": {"memory": f"{2 * memory}Mi", "cpu": f"{max(MIN_CPU_LIMIT, 4 * cpu)}m"},
    }


def labels(spec: DeploySpec) -> dict[str, str]:
    return {PART_OF: NAME, MANAGED_BY: NAME, "app.kubernetes.io/instance": spec.name}


def namespace(spec: DeploySpec) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": spec.namespace, "labels": labels(spec)}}


def service_account(spec: DeploySpec) -> dict:
    # The shards talk to the target cluster only: no token of the base cluster in them.
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": spec.name, "namespace": spec.namespace,
                         "labels": labels(spec)},
            "automountServiceAccountToken": False}


def secret(spec: DeploySpec, target_kubeconfig: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": f"{spec.name}-target", "namespace": spec.namespace,
                         "labels": labels(spec)},
            "stringData": {"kubeconfig": target_kubeconfig}}


def hollow_args(spec: DeploySpec) -> list[str]:
    return ["hollow", "--kubeconfig", f"{TARGET_DIR}/kubeconfig",
            "--nodes", str(spec.nodes_per_pod), "--total-nodes", str(spec.nodes),
            "--prefix", spec.prefix, "--shard-from-pod-name", "$(POD_NAME)",
            "--fidelity", spec.fidelity, "--heartbeat-file", HEARTBEAT]


def stateful_set(spec: DeploySpec) -> dict:
    selector = {PART_OF: NAME, "app.kubernetes.io/instance": spec.name}
    container = {
        "name": "hollow",
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["pykubemark"],
        "args": hollow_args(spec),
        "env": [{"name": "POD_NAME",
                 "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "PYTHONUNBUFFERED", "value": "1"}],
        "resources": resources(spec.nodes_per_pod),
        "livenessProbe": {
            "exec": {"command": ["pykubemark", "alive", HEARTBEAT,
                                 "--max-age", str(HEARTBEAT_MAX_AGE)]},
            "initialDelaySeconds": 30, "periodSeconds": 20, "timeoutSeconds": 15,
            "failureThreshold": 3,
        },
        "volumeMounts": [{"name": "target", "mountPath": TARGET_DIR, "readOnly": True},
                         {"name": "run", "mountPath": RUN_DIR}],
    }
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {
            "name": spec.name, "namespace": spec.namespace, "labels": labels(spec),
            "annotations": {f"{ANNOTATIONS}nodes": str(spec.nodes),
                            f"{ANNOTATIONS}nodes-per-pod": str(spec.nodes_per_pod),
                            f"{ANNOTATIONS}prefix": spec.prefix},
        },
        "spec": {
            "replicas": spec.shards,
            "serviceName": spec.name,
            # Shards are independent: start and replace them all at once.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels(spec)},
                "spec": {
                    "serviceAccountName": spec.name,
                    "automountServiceAccountToken": False,
                    # A target apiserver on 127.0.0.1 of the base node is reachable only
                    # from the node's own network namespace.
                    "hostNetwork": True,
                    # the target's name resolves as on the node, not in the base's DNS
                    "dnsPolicy": "Default",
                    "terminationGracePeriodSeconds": spec.termination_grace_seconds,
                    "containers": [container],
                    "volumes": [
                        {"name": "target",
                         "secret": {"secretName": f"{spec.name}-target", "defaultMode": 0o400}},
                        {"name": "run", "emptyDir": {"medium": "Memory"}},
                    ],
                },
            },
        },
    }


def manifests(spec: DeploySpec, target_kubeconfig: str) -> list[dict]:
    """Everything, in the order it is created (and deleted in reverse)."""
    return [namespace(spec), service_account(spec), secret(spec, target_kubeconfig),
            stateful_set(spec)]
