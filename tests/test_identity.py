"""Hollow kubelets are nodes to the apiserver: each joins by TLS bootstrap, is
authenticated as system:node:<name>, authorized by the Node authorizer and admitted by
NodeRestriction without a single 403, and API Priority and Fairness files its requests
under the node flow schemas (`system-nodes`, `system-node-high`), not `exempt`."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import yaml
from helpers import Cluster, Fleet, run_cli, utcnow, wait_for

from pykubemark.measure.audit import read_audit

NODES = 5
PREFIX = "ident"
PODS = 10


def dispatched(cluster: Cluster) -> dict[str, float]:
    """APF's dispatched requests per flow schema (watches are not dispatched by APF)."""
    metrics = cluster.kubectl("get", "--raw", "/metrics")
    out: dict[str, float] = {}
    for match in re.finditer(r'^apiserver_flowcontrol_dispatched_requests_total\{[^}]*'
                             r'flow_schema="([^"]+)"[^}]*\} (\S+)$', metrics, re.M):
        out[match.group(1)] = out.get(match.group(1), 0.0) + float(match.group(2))
    return out


def csr_names(cluster: Cluster) -> set[str]:
    return {c["metadata"]["name"] for c in cluster.get_json("csr")["items"]
            if c["spec"]["username"] == "kubelet-bootstrap"}


def pod_cycle(cluster: Cluster) -> None:
    """Pods that reference a configmap, their service account's token secret and a
    projected token: each is a request the Node authorizer or NodeRestriction judges."""
    cluster.kubectl("create", "configmap", "ident-config", "--from-literal=k=v")
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "ident", "namespace": "default"},
        "spec": {
            "replicas": PODS,
            "selector": {"matchLabels": {"app": "ident"}},
            "template": {
                "metadata": {"labels": {"app": "ident"}},
                "spec": {
                    "nodeSelector": {"pykubemark.io/fleet": PREFIX},
                    "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.2",
                                    "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"},
                                                     {"name": "tok", "mountPath": "/tok"}]}],
                    "volumes": [
                        {"name": "cfg", "configMap": {"name": "ident-config"}},
                        {"name": "tok", "projected": {"sources": [{"serviceAccountToken": {
                            "path": "token", "expirationSeconds": 3600}}]}},
                    ],
                },
            },
        },
    }
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(deployment))
    try:
        cluster.kubectl("rollout", "status", "deployment/ident", "--timeout=240s", timeout=270)
    finally:
        cluster.kubectl("delete", "deployment", "ident", "--ignore-not-found")
        cluster.kubectl("delete", "configmap", "ident-config", "--ignore-not-found")
    wait_for("ident pods gone",
             lambda: not cluster.get_json("pods", "-l", "app=ident")["items"], 120, 2)


@pytest.fixture(scope="module")
def profile(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ident") / "profile.yaml"
    path.write_text(yaml.safe_dump({"extra_labels": {"pykubemark.io/fleet": PREFIX}}))
    return str(path)


@pytest.fixture(scope="module")
def cycled(cluster: Cluster, profile: str) -> Iterator[tuple[dict, dict, object, Fleet]]:
    before = dispatched(cluster)
    fleet = Fleet(cluster, NODES, PREFIX, "--profile", profile)
    try:
        fleet.wait_ready()
        pod_cycle(cluster)
    finally:
        assert fleet.stop() == 0
    # The fleet is stopped: every request it sent has been dispatched and counted.
    yield before, dispatched(cluster), utcnow(), fleet


def kubelet_requests(cluster: Cluster, fleet: Fleet, until) -> list:
    return [r for r in read_audit(cluster.audit_log, since=fleet.started, until=until)
            if r.user.startswith(f"system:node:{PREFIX}-")]


def test_kubelets_are_their_nodes_and_never_forbidden(cluster: Cluster, cycled) -> None:
    _before, _after, until, fleet = cycled
    requests = kubelet_requests(cluster, fleet, until)
    assert {r.user for r in requests} == {f"system:node:{n}" for n in fleet.names}
    kinds = {(r.verb, r.resource, r.subresource) for r in requests}
    # What the Node authorizer and NodeRestriction judge: own Node and Lease, pod
    # status, referenced configmaps and secrets, tokens bound to its pods.
    assert {("create", "nodes", ""), ("get", "leases", ""), ("patch", "pods", "status"),
            ("watch", "configmaps", ""), ("create", "serviceaccounts", "token")} <= kinds, kinds
    # The one 403 a real kubelet meets too: its watch hands it a pod before the Node
    # authorizer's graph (fed by the apiserver's own pod informer) links the pod, or its
    # configmap, secret or service account, to the node; the retry then succeeds.
    # Anything else refused, or a refusal never followed by success, is a fault.
    granted = {(r.user, r.resource, r.name) for r in requests if r.code < 300}
    refused = [(r.user, r.verb, r.resource, r.name, r.code) for r in requests
               if r.code in (401, 403)
               and not (((r.resource in ("configmaps", "secrets") and r.initial_list)
                         or (r.resource, r.subresource) == ("serviceaccounts", "token")
                         or (r.resource, r.verb) == ("pods", "get"))
                        and (r.user, r.resource, r.name) in granted)]
    assert not refused
    # Each node asked for its certificate once, with the bootstrap credential.
    bootstrap = [r for r in read_audit(cluster.audit_log, since=fleet.started, until=until,
                                       users=["kubelet-bootstrap"])
                 if r.resource == "certificatesigningrequests" and r.verb == "create"]
    assert len(bootstrap) == NODES


def test_kubelet_traffic_is_in_the_system_nodes_flow_schema(cluster: Cluster, cycled) -> None:
    before, after, until, fleet = cycled
    sent = [r for r in kubelet_requests(cluster, fleet, until) if r.verb != "watch"]
    grew = {schema: after.get(schema, 0.0) - before.get(schema, 0.0) for schema in after}
    # Leases and node status go to system-node-high (since 1.21), the rest to system-nodes.
    nodes = grew.get("system-nodes", 0.0) + grew.get("system-node-high", 0.0)
    assert nodes >= len(sent) > 0, (len(sent), grew)


def renewed_since(cluster: Cluster, fleet: Fleet) -> set[str]:
    leases = cluster.get_json("leases", "-n", "kube-node-lease")["items"]
    return {lease["metadata"]["name"] for lease in leases
            if lease["spec"]["renewTime"].replace("Z", "+00:00") > fleet.started.isoformat()}


def test_restart_reuses_the_certificates(cluster: Cluster, cycled, profile: str) -> None:
    asked = csr_names(cluster)
    fleet = Fleet(cluster, NODES, PREFIX, "--profile", profile, "--delete-nodes-on-exit")
    try:
        # The old Nodes are still Ready: wait for this fleet's own lease renewals.
        wait_for("leases renewed by the restarted fleet", lambda: renewed_since(
            cluster, fleet) == set(fleet.names), 120, 2)
    finally:
        assert fleet.stop() == 0
    assert csr_names(cluster) == asked
    names = {n["metadata"]["name"] for n in cluster.get_json("nodes")["items"]}
    assert not set(fleet.names) & names  # the bootstrap user may clean up


def test_bootstrap_without_the_right_to_create_csrs_is_refused(cluster: Cluster) -> None:
    proxy = str(cluster.local.kubeconfig_for("hollow-proxy"))
    result = run_cli("hollow", "--kubeconfig", proxy, "--node-credentials", "bootstrap",
                     "--nodes", "1", "--prefix", "nocsr", check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pykubemark: ")
    assert "certificatesigningrequests" in lines[0]
