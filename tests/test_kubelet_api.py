"""The kubelet's own API on hollow nodes, reached the way users reach it: through the
real apiserver (`kubectl logs`, `exec`, the node proxy), which dials each node's
InternalIP and kubelet port with its --kubelet-client-certificate; and directly, with
bearer tokens and without credentials, as a kubelet with its configuration file's
defaults answers them (TokenReview and SubjectAccessReview through the real apiserver)."""

from __future__ import annotations

import ipaddress
import json
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Cluster, Fleet, run_cli, wait_for
from test_cluster import one_line_error

NS = "kubelet-api"
PREFIX = "kapi"


def _pod(name: str, node: str, requests: dict[str, str] | None = None,
         annotations: dict[str, str] | None = None) -> dict:
    container: dict = {"name": "main", "image": "registry.k8s.io/pause:3.2"}
    if requests:
        container["resources"] = {"requests": requests}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "annotations": annotations or {}},
        "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
                 "containers": [container]},
    }


@pytest.fixture(scope="module")
def chaos_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kubelet-api") / "chaos.json"


@pytest.fixture(scope="module")
def fleet(cluster: Cluster, chaos_file: Path) -> Iterator[Fleet]:
    # No --kubelet-client-ca: the kubeconfig's CA verifies the apiserver's certificate.
    fleet = Fleet(cluster, 2, PREFIX, "--fidelity", "lite", "--delete-nodes-on-exit",
                  "--chaos-file", str(chaos_file),
                  "--watch-kubeconfig", str(cluster.local.kubeconfig_for("hollow-kubelet")))
    try:
        fleet.wait_ready()
        cluster.create_namespace(NS)
        pods = [
            _pod("web-0", f"{PREFIX}-0", {"cpu": "200m", "memory": "64Mi"}),
            _pod("web-1", f"{PREFIX}-1", {"cpu": "100m", "memory": "32Mi"}),
            _pod("crasher", f"{PREFIX}-0", annotations={
                "pykubemark.io/failure": "crashloop", "pykubemark.io/exit-code": "3",
                "pykubemark.io/run-seconds": "1"}),
        ]
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                              "items": pods}))
        wait_for("web pods Running", lambda: all(
            cluster.get_json("pod", "-n", NS, name)["status"].get("phase") == "Running"
            for name in ("web-0", "web-1")))
        yield fleet
    finally:
        cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)
        code = fleet.stop()
    assert code == 0, fleet.log.read_text()[-2000:]


def _kubectl_error(cluster: Cluster, *args: str) -> str:
    """kubectl's error output for a command that must fail."""
    from pykubemark.provision.binaries import find_kubectl

    result = subprocess.run([str(find_kubectl()), "--kubeconfig", cluster.kubeconfig, *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0, result.stdout
    return result.stderr


def _raw(cluster: Cluster, node: str, path: str) -> str:
    return cluster.kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/{path}")


def test_nodes_have_distinct_addresses_of_the_clusters_range_and_a_kubelet_port(
        cluster: Cluster, fleet: Fleet) -> None:
    """Addresses of the cluster's own namespace (the node proxy refuses loopback ones)."""
    network = ipaddress.ip_network(cluster.local.state.hollow_network.cidr)
    endpoints = set()
    for node in fleet.nodes_json():
        address = next(a["address"] for a in node["status"]["addresses"]
                       if a["type"] == "InternalIP")
        assert ipaddress.ip_address(address) in network
        endpoints.add((address, node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]))
        assert _raw(cluster, node["metadata"]["name"], "healthz") == "ok"
    assert len(endpoints) == 2


def test_kubectl_logs_returns_the_containers_log(cluster: Cluster, fleet: Fleet) -> None:
    out = run_cli("kubectl", "--name", cluster.name, "--", "logs", "-n", NS, "web-0").stdout
    assert f"container main of pod {NS}/web-0 starting" in out
    assert len(run_cli("kubectl", "--name", cluster.name, "--", "logs", "-n", NS, "web-0",
                       "--tail=1").stdout.splitlines()) == 1


def test_previous_log_of_a_crash_looping_container_has_its_exit(cluster: Cluster,
                                                                 fleet: Fleet) -> None:
    def restarted() -> bool:
        statuses = cluster.get_json("pod", "-n", NS, "crasher")["status"].get(
            "containerStatuses", [])
        return bool(statuses) and statuses[0]["restartCount"] >= 1

    wait_for("the crasher to restart", restarted, timeout=90)
    out = cluster.kubectl("logs", "-n", NS, "crasher", "--previous")
    assert out.splitlines()[-1] == "main exiting with code 3 (Error)"


def test_previous_log_of_a_container_never_restarted_is_refused(cluster: Cluster,
                                                                fleet: Fleet) -> None:
    error = _kubectl_error(cluster, "logs", "-n", NS, "web-1", "--previous")
    assert 'previous terminated container "main" in pod "web-1" not found' in error


def test_stats_summary_names_the_node_and_its_pods(cluster: Cluster, fleet: Fleet) -> None:
    summary = json.loads(_raw(cluster, f"{PREFIX}-0", "stats/summary"))
    assert summary["node"]["nodeName"] == f"{PREFIX}-0"
    pods = {p["podRef"]["name"]: p for p in summary["pods"]}
    assert "web-0" in pods and "web-1" not in pods
    web = pods["web-0"]
    assert 0 < web["cpu"]["usageNanoCores"] <= 200_000_000
    assert 0 < web["memory"]["workingSetBytes"] <= 64 << 20
    assert summary["node"]["cpu"]["usageNanoCores"] > web["cpu"]["usageNanoCores"]


def test_pods_and_metrics_answer_per_node(cluster: Cluster, fleet: Fleet) -> None:
    for node, mine in ((f"{PREFIX}-0", "web-0"), (f"{PREFIX}-1", "web-1")):
        names = {p["metadata"]["name"] for p in json.loads(_raw(cluster, node, "pods"))["items"]}
        assert mine in names and ({"web-0", "web-1"} - {mine}).isdisjoint(names)
        metrics = _raw(cluster, node, "metrics/resource")
        assert f'container_memory_working_set_bytes{{container="main",namespace="{NS}",' \
               f'pod="{mine}"}}' in metrics


def test_exec_is_refused_with_a_clear_message(cluster: Cluster, fleet: Fleet) -> None:
    error = _kubectl_error(cluster, "exec", "-n", NS, "web-0", "--", "ls")
    assert "streaming method exec disabled" in error


def _direct(fleet: Fleet, path: str, token: str | None = None) -> tuple[int, str]:
    """A request straight to the first node's kubelet API, not through the apiserver."""
    node = fleet.nodes_json()[0]
    address = next(a["address"] for a in node["status"]["addresses"]
                   if a["type"] == "InternalIP")
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"https://{address}:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def test_a_client_without_credentials_is_refused(fleet: Fleet) -> None:
    assert _direct(fleet, "/pods") == (401, "Unauthorized")
    assert _direct(fleet, "/stats/summary")[0] == 401


def test_bearer_tokens_are_reviewed_and_authorized_by_the_apiserver(cluster: Cluster,
                                                                   fleet: Fleet) -> None:
    """A service account's token: reviewed (TokenReview) and authorized as nodes/pods or
    nodes/proxy (SubjectAccessReview) by the real apiserver, through the node's own
    credentials, as a kubelet with webhook authentication and authorization does."""
    for account in ("reader", "stranger"):
        cluster.kubectl("create", "serviceaccount", "-n", NS, account, check=False)
    role = f"{PREFIX}-node-reader"
    cluster.kubectl("create", "clusterrole", role, "--verb=get",
                    "--resource=nodes/pods,nodes/stats", check=False)
    cluster.kubectl("create", "clusterrolebinding", role, f"--clusterrole={role}",
                    f"--serviceaccount={NS}:reader", check=False)
    try:
        stranger = cluster.kubectl("create", "token", "-n", NS, "stranger").strip()
        status, text = _direct(fleet, "/pods", stranger)
        assert status == 403, text
        assert f"user=system:serviceaccount:{NS}:stranger" in text
        assert "subresource(s)=[pods proxy]" in text
        reader = cluster.kubectl("create", "token", "-n", NS, "reader").strip()
        status, text = _direct(fleet, "/pods", reader)
        assert status == 200, text
        assert json.loads(text)["kind"] == "PodList"
        assert _direct(fleet, "/stats/summary", reader)[0] == 200
        assert _direct(fleet, "/metrics/resource", reader)[0] == 403  # nodes/metrics not given
        assert _direct(fleet, "/pods", "not-a-token") == (401, "Unauthorized")
    finally:
        cluster.kubectl("delete", "clusterrolebinding,clusterrole", role, check=False)


def test_an_anonymous_fleet_answers_anyone(cluster: Cluster, fleet: Fleet) -> None:
    """--kubelet-anonymous: a kubelet with --anonymous-auth and AlwaysAllow."""
    open_fleet = Fleet(cluster, 1, f"{PREFIX}-open", "--fidelity", "lite",
                       "--delete-nodes-on-exit", "--kubelet-anonymous", "--watch-kubeconfig",
                       str(cluster.local.kubeconfig_for("hollow-kubelet")))
    try:
        open_fleet.wait_ready()
        status, text = _direct(open_fleet, "/pods")
        assert status == 200 and json.loads(text)["kind"] == "PodList"
        assert _direct(open_fleet, "/stats/summary")[0] == 200
    finally:
        assert open_fleet.stop() == 0, open_fleet.log.read_text()[-2000:]


def test_a_stopped_node_answers_nothing_until_it_resumes(cluster: Cluster, fleet: Fleet,
                                                        chaos_file: Path) -> None:
    """After the other tests of the fleet: it stops a node (and brings it back)."""
    stopped = f"{PREFIX}-1"

    def healthy(node: str) -> bool:
        return cluster.kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/healthz",
                               check=False) == "ok"

    run_cli("chaos", "stop", "--file", str(chaos_file), "--nodes", stopped)
    try:
        wait_for(f"{stopped}'s kubelet API to stop answering", lambda: not healthy(stopped),
                 timeout=60)
        assert healthy(f"{PREFIX}-0")
    finally:
        run_cli("chaos", "clear", "--file", str(chaos_file))
    wait_for(f"{stopped}'s kubelet API to answer again", lambda: healthy(stopped), timeout=60)


def test_node_addresses_outside_loopback_are_refused_in_one_line(tmp_path: Path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text("node_ip_base: 198.18.0.0/15\n")
    line = one_line_error(run_cli("hollow", "--nodes", "2", "--profile", str(profile),
                                  check=False))
    assert "198.18.0.1" in line and "--no-kubelet-api" in line
    line = one_line_error(run_cli("hollow", "--nodes", "2", "--kubelet-address", "nowhere",
                                  check=False))
    assert "nowhere" in line
