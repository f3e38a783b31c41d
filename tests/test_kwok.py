"""KWOK as an engine: `up --engine kwok` and `hollow --engine kwok` run one real KWOK
controller (built once per machine) against the real control plane; its nodes take a
Deployment's pods, and nothing of it outlives `down` or Ctrl-C."""

from __future__ import annotations

import json
import subprocess

import psutil
import pytest
from helpers import CLI, Cluster, is_ready, run_cli, wait_for
from test_cluster import one_line_error

KWOK_USER = "kwok:controller"


def kwok_processes(marker: str) -> list[psutil.Process]:
    """Live kwok controllers whose command line mentions ``marker`` (a cluster's
    directory, where their kubeconfig is)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] == psutil.STATUS_ZOMBIE or not cmdline:
            continue
        if cmdline[0].endswith("/kwok") and any(marker in a for a in cmdline):
            found.append(proc)
    return found


def deployment(name: str, replicas: int, nodes: list[str]) -> str:
    labels = {"app": name}
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{
                        "key": "kubernetes.io/hostname", "operator": "In",
                        "values": nodes}]}]}}},
                "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}],
            }}}})


def node_names(cluster: Cluster, prefix: str, *, ready: bool = False) -> set[str]:
    return {n["metadata"]["name"] for n in cluster.get_json("nodes")["items"]
            if n["metadata"]["name"].startswith(f"{prefix}-") and (is_ready(n) or not ready)}


def ready_nodes(cluster: Cluster, prefix: str) -> set[str]:
    return node_names(cluster, prefix, ready=True)


def pods_of(cluster: Cluster, app: str) -> list[dict]:
    return cluster.get_json("pods", "-l", f"app={app}")["items"]


@pytest.mark.slow
def test_up_with_kwok_nodes_runs_a_deployment_and_down_stops_kwok() -> None:
    run_cli("up", "--name", "kwup", "--audit", "--engine", "kwok", "--nodes", "3",
            "--prefix", "kwu", timeout=600)
    cluster = Cluster("kwup")
    names = [f"kwu-{i}" for i in range(3)]
    marker = str(cluster.local.dir)
    try:
        assert len(kwok_processes(marker)) == 1
        assert cluster.state.proc("kwok") is not None
        for name in names:
            node = cluster.get_json("node", name)
            assert is_ready(node)
            assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
            assert node["metadata"]["labels"]["type"] == "kwok"
        # The node-lifecycle controller lifts the not-ready taint once it sees them Ready.
        wait_for("KWOK nodes untainted", lambda: all(
            not cluster.get_json("node", n)["spec"].get("taints") for n in names), 60)
        cluster.kubectl("apply", "-f", "-", stdin=deployment("kw", 6, names))

        def running() -> list[dict] | None:
            pods = pods_of(cluster, "kw")
            ok = len(pods) == 6 and all(p["status"].get("phase") == "Running" for p in pods)
            return pods if ok else None

        pods = wait_for("6 pods Running on KWOK nodes", running, 120)
        assert {p["spec"]["nodeName"] for p in pods} <= set(names)
        assert all(p["status"].get("podIP") for p in pods)
        cluster.kubectl("scale", "deployment", "kw", "--replicas=0")
        wait_for("the pods gone", lambda: not pods_of(cluster, "kw"), 120)
        leases = cluster.get_json("leases", "-n", "kube-node-lease")["items"]
        assert {lease["metadata"]["name"] for lease in leases} >= set(names)
        # One identity acts for every node: the statuses, the leases, the deletions.
        audit = cluster.audit_log.read_text()
        assert f'"username":"{KWOK_USER}"' in audit
    finally:
        run_cli("down", "--name", "kwup", check=False)
    assert not kwok_processes(marker)


@pytest.mark.slow
def test_hollow_engine_kwok_until_ctrl_c_leaves_nothing() -> None:
    run_cli("up", "--name", "kwfg", timeout=600)
    cluster = Cluster("kwfg")
    log = cluster.local.dir / "logs" / "hollow-kwok.log"
    marker = str(cluster.local.dir)  # in the controller's --kubeconfig
    try:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [*CLI, "hollow", "--engine", "kwok", "--kubeconfig", cluster.kubeconfig,
                 "--nodes", "2", "--prefix", "kwg", "--delete-nodes-on-exit"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for("2 KWOK nodes Ready", lambda: proc.poll() is None and
                     ready_nodes(cluster, "kwg") == {"kwg-0", "kwg-1"}, 120, 2)
            assert len(kwok_processes(marker)) == 1
            proc.send_signal(2)  # SIGINT, as Ctrl-C
            assert proc.wait(60) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
        assert not kwok_processes(marker)
        assert not node_names(cluster, "kwg")
    finally:
        run_cli("down", "--name", "kwfg", check=False)


@pytest.mark.parametrize("args", [
    ("hollow", "--kubeconfig", "/nonexistent", "--fidelity", "lite"),
    ("up", "--name", "kwbad", "--processes", "2"),
])
def test_pykubemark_only_options_are_refused_for_kwok(args: tuple[str, ...]) -> None:
    result = run_cli(*args, "--engine", "kwok", "--nodes", "1", check=False)
    line = one_line_error(result)
    assert "pykubemark engine only, not --engine kwok" in line


def test_a_kubelet_option_is_refused_for_kwok() -> None:
    result = run_cli("hollow", "--engine", "kwok", "--kubeconfig", "/nonexistent",
                     "--nodes", "1", "--proxy-kubeconfig", "/nonexistent", check=False)
    line = one_line_error(result)
    assert "--proxy-kubeconfig" in line and "not --engine kwok" in line
