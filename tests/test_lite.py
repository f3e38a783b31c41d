"""`lite` fidelity: per-node leases and status, but one shared watch per resource."""

from __future__ import annotations

from collections import Counter

import yaml
from helpers import KUBELET_USER, PROXY_USER, Cluster, Fleet, utcnow, wait_for

from pykubemark.measure.audit import read_audit

NODES = 20


def test_lite_fleet_runs_pods_with_one_watch_per_resource(cluster: Cluster, tmp_path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump({"extra_labels": {"pykubemark.io/fleet": "lite"}}))
    fleet = Fleet(cluster, NODES, "lite", "--fidelity", "lite", "--profile", str(profile),
                  "--delete-nodes-on-exit")
    try:
        fleet.wait_ready()
        nodes = fleet.nodes_json()
        assert all(n["metadata"]["labels"]["pykubemark.io/fleet"] == "lite" for n in nodes)
        deployment = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "lite", "namespace": "default"},
            "spec": {
                "replicas": NODES * 3,
                "selector": {"matchLabels": {"app": "lite"}},
                "template": {
                    "metadata": {"labels": {"app": "lite"}},
                    "spec": {"nodeSelector": {"pykubemark.io/fleet": "lite"},
                             "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.2"}]},
                },
            },
        }
        cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(deployment))
        cluster.kubectl("rollout", "status", "deployment/lite", "--timeout=300s", timeout=330)
        pods = cluster.get_json("pods", "-l", "app=lite")["items"]
        assert len(pods) == NODES * 3
        assert all(p["status"]["phase"] == "Running" for p in pods)
        assert len({p["status"]["podIP"] for p in pods}) == len(pods)
        cluster.kubectl("delete", "deployment", "lite")
        wait_for("lite pods gone",
                 lambda: not cluster.get_json("pods", "-l", "app=lite")["items"], 180, 2)
        until = utcnow()
    finally:
        assert fleet.stop() == 0
    requests = list(read_audit(cluster.audit_log, since=fleet.started, until=until,
                               users=[KUBELET_USER, PROXY_USER]))
    watches = Counter((r.user, r.resource) for r in requests if r.verb == "list")
    # One LIST per shared informer, not one per node.
    assert watches[(KUBELET_USER, "pods")] == 1
    assert watches[(KUBELET_USER, "nodes")] == 1
    assert watches[(PROXY_USER, "services")] == 1
    assert watches[(PROXY_USER, "endpoints")] == 1
    pod_lists = [r for r in requests if r.resource == "pods" and r.verb == "list"]
    assert pod_lists[0].selectors() == {"fieldSelector": "spec.nodeName!="}
    # Leases stay per node.
    renewed = {r.name for r in requests if r.resource == "leases" and r.verb == "update"}
    assert renewed == set(fleet.names)
