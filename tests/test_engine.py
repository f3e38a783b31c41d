"""The Go kubemark as an engine: `hollow --engine kubemark` and `up --engine kubemark`
run real Go hollow nodes against the real control plane, and stop every one of them."""

from __future__ import annotations

import json

import psutil
import pytest
from helpers import Cluster, Fleet, run_cli, wait_for
from test_cluster import one_line_error

#: Tests that start clusters of their own: `pytest -m "not slow"` leaves them out.
pytestmark = pytest.mark.slow


def go_processes(prefix: str) -> list[psutil.Process]:
    """Live Go kubemark processes of the nodes ``prefix-*`` (kubelet or proxy)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(a.startswith("--morph=") for a in cmdline) and any(
                a.startswith(f"--name={prefix}-") for a in cmdline):
            found.append(proc)
    return found


def pinned_pod(name: str, nodes: list[str]) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{
                    "key": "kubernetes.io/hostname", "operator": "In", "values": nodes}]}]}}},
            "containers": [{"name": "pause", "image": "k8s.gcr.io/pause:3.2"}],
        },
    })


def test_go_nodes_run_a_pod_and_ctrl_c_leaves_no_process(cluster: Cluster) -> None:
    # The Go hollow kubelet does no TLS bootstrap: it needs a user that may create Nodes.
    fleet = Fleet(cluster, 2, "gok", "--engine", "kubemark", "--kubeconfig",
                  str(cluster.local.kubeconfig_for("hollow-kubelet")))
    try:
        fleet.wait_ready()
        assert len(go_processes("gok")) == 4  # a kubelet and a proxy per node
        cluster.kubectl("apply", "-f", "-", stdin=pinned_pod("on-go", fleet.names))

        def running() -> dict | None:
            pod = cluster.get_json("pod", "on-go")
            return pod if pod["status"].get("phase") == "Running" else None

        pod = wait_for("the pod Running on a Go node", running, 120)
        assert pod["spec"]["nodeName"] in fleet.names
        assert fleet.stop() == 0
        wait_for("no Go kubemark process left", lambda: not go_processes("gok"), 30)
    finally:
        if fleet.proc.poll() is None:
            fleet.proc.kill()
        for proc in go_processes("gok"):
            proc.kill()
        cluster.kubectl("delete", "pod", "on-go", "--ignore-not-found", "--wait=false")
        cluster.kubectl("delete", "node", *fleet.names, "--ignore-not-found")


def test_up_with_go_nodes_and_down_stops_them() -> None:
    run_cli("up", "--name", "gonodes", "--engine", "kubemark", "--nodes", "1",
            "--prefix", "gup", timeout=600)
    try:
        cluster = Cluster("gonodes")
        node = cluster.get_json("node", "gup-0")
        assert any(c["type"] == "Ready" and c["status"] == "True"
                   for c in node["status"]["conditions"])
        assert len(go_processes("gup")) == 2
    finally:
        run_cli("down", "--name", "gonodes")
    assert not go_processes("gup")


def test_no_kubemark_binary_is_one_line(tmp_path) -> None:
    result = run_cli("hollow", "--engine", "kubemark", "--kubeconfig", str(tmp_path / "k"),
                     "--nodes", "1", check=False, env={"PYKUBEMARK_BIN_DIR": str(tmp_path)})
    line = one_line_error(result)
    assert "kubemark binary" in line


def test_pykubemark_only_options_are_refused_for_kubemark(tmp_path) -> None:
    result = run_cli("hollow", "--engine", "kubemark", "--kubeconfig", str(tmp_path / "k"),
                     "--nodes", "1", "--fidelity", "lite", check=False)
    line = one_line_error(result)
    assert "--fidelity" in line and "pykubemark engine only" in line
