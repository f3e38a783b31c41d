"""`lite` fidelity: per-node leases and status, but one shared watch per resource."""

from __future__ import annotations

from collections import Counter

import yaml
from helpers import KUBELET_USER, PROXY_USER, Cluster, Fleet, hollow_audit, utcnow, wait_for

NODES = 20


def test_lite_fleet_runs_pods_with_one_watch_per_resource(cluster: Cluster, tmp_path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump({"extra_labels": {"pykubemark.io/fleet": "lite"}}))
    fleet = Fleet(cluster, NODES, "lite", "--fidelity", "lite", "--profile", str(profile),
                  "--events", "--delete-nodes-on-exit", "--watch-kubeconfig",
                  str(cluster.local.kubeconfig_for("hollow-kubelet")))
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
        # --events: what a real kubelet posts (the Go kubemark posts none)
        def kubelet_reasons() -> set[str]:
            events = cluster.get_json("events", "--field-selector",
                                      f"involvedObject.name={pods[0]['metadata']['name']}")
            # (the scheduler's events.k8s.io events come without a `source`)
            return {e["reason"] for e in events["items"]
                    if e.get("source", {}).get("component") == "kubelet"}

        # Events are posted beside the status, under their own rate limit.
        wait_for("the kubelet's events", lambda: kubelet_reasons() >= {
            "Pulled", "Created", "Started"}, 30, 1)
        cluster.kubectl("delete", "deployment", "lite")
        wait_for("lite pods gone",
                 lambda: not cluster.get_json("pods", "-l", "app=lite")["items"], 180, 2)
        until = utcnow()
    finally:
        assert fleet.stop() == 0
    requests = list(hollow_audit(cluster.audit_log, since=fleet.started, until=until,
                                 users=[KUBELET_USER, PROXY_USER, "pykubemark:hollow-kubelet"]))
    watches = Counter((r.user, r.resource) for r in requests if r.initial_list)
    # One LIST per shared informer, not one per node.
    shared = "pykubemark:hollow-kubelet"  # --watch-kubeconfig's user
    assert watches[(shared, "pods")] == 1
    assert watches[(shared, "nodes")] == 1
    assert not watches[(KUBELET_USER, "pods")]
    assert watches[(PROXY_USER, "services")] == 1
    assert watches[(PROXY_USER, "endpointslices")] == 1
    pod_lists = [r for r in requests if r.resource == "pods" and r.initial_list]
    assert pod_lists[0].selectors() == {"fieldSelector": "spec.nodeName!="}
    # Leases stay per node.
    renewed = {r.name for r in requests if r.resource == "leases"
               and r.verb in ("create", "update") and r.code < 300}
    assert renewed == set(fleet.names)


def test_job_pods_complete(cluster: Cluster) -> None:
    fleet = Fleet(cluster, 3, "jobs", "--delete-nodes-on-exit")
    try:
        fleet.wait_ready()
        job = {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "work", "namespace": "default"},
            "spec": {
                "completions": 6, "parallelism": 3, "backoffLimit": 0,
                "template": {
                    "metadata": {"annotations": {"pykubemark.io/run-seconds": "2"}},
                    "spec": {"restartPolicy": "Never",
                             "nodeSelector": {"kubernetes.io/hostname": "jobs-1"},
                             "containers": [{"name": "c", "image": "busybox"}]},
                },
            },
        }
        cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(job))
        cluster.kubectl("wait", "--for=condition=complete", "job/work", "--timeout=120s",
                        timeout=150)
        pods = cluster.get_json("pods", "-l", "job-name=work")["items"]
        assert len(pods) == 6
        for pod in pods:
            assert pod["status"]["phase"] == "Succeeded"
            state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
            assert state["exitCode"] == 0 and state["reason"] == "Completed"
        cluster.kubectl("delete", "job", "work")
    finally:
        assert fleet.stop() == 0


def test_proxies_watch_the_releases_endpointslices(cluster: Cluster) -> None:
    """Today's kube-proxy: EndpointSlices of discovery.k8s.io/v1, Services without
    headless ones, its own Node and the ServiceCIDRs; no core/v1 Endpoints."""
    fleet = Fleet(cluster, 2, "slices", "--delete-nodes-on-exit")
    try:
        fleet.wait_ready()
        until = utcnow()
    finally:
        assert fleet.stop() == 0
    lists = [r for r in hollow_audit(cluster.audit_log, since=fleet.started, until=until,
                                   users=[PROXY_USER]) if r.initial_list]
    slices = [r for r in lists if r.resource == "endpointslices"]
    assert len(slices) == 2  # one per node
    assert all(r.uri.startswith("/apis/discovery.k8s.io/v1/endpointslices") for r in slices)
    assert slices[0].selectors() == {"labelSelector": "!service.kubernetes.io/headless"}
    assert {r.resource for r in lists} == {"endpointslices", "services", "nodes",
                                           "servicecidrs"}
