"""Local control plane lifecycle: up, status, down, and what bad input gets."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
from pathlib import Path

import psutil
import pytest
from helpers import Cluster, run_cli

from pykubemark.provision.releases import default_release

COMPONENTS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pykubemark: ")
    return lines[0]


def test_status_shows_every_component_healthy(cluster: Cluster) -> None:
    out = run_cli("status", "--name", cluster.name).stdout
    for component in COMPONENTS:
        row = next(line for line in out.splitlines() if component in line)
        assert "healthy" in row and "unhealthy" not in row, row
    state = cluster.state
    assert [p.name for p in state.processes] == COMPONENTS
    for proc in state.processes:
        assert proc.alive()
        assert str(proc.pid) in out and str(proc.port) in out


def test_kubeconfig_works_with_kubectl(cluster: Cluster) -> None:
    mode = stat.S_IMODE(os.stat(cluster.kubeconfig).st_mode)
    assert mode == 0o600
    version = json.loads(cluster.kubectl("get", "--raw", "/version"))
    assert version["gitVersion"] == default_release().tag
    assert cluster.kubectl("get", "--raw", "/readyz").strip() == "ok"


def test_default_namespace_is_ready_for_pods(cluster: Cluster) -> None:
    """Its service account, and the root CA every pod's projected token volume mounts."""
    assert cluster.get_json("serviceaccount", "default", "-n", "default")
    root_ca = cluster.get_json("configmap", "kube-root-ca.crt", "-n", "default")
    assert "BEGIN CERTIFICATE" in root_ca["data"]["ca.crt"]


def test_second_cluster_gets_other_ports_and_down_leaves_nothing(cluster: Cluster) -> None:
    run_cli("up", "--name", "second")
    try:
        second = Cluster("second")
        first_ports = set(cluster.state.ports.values())
        second_ports = set(second.state.ports.values())
        assert first_ports.isdisjoint(second_ports)
        assert second.kubectl("get", "--raw", "/readyz").strip() == "ok"
        pids = [p.pid for p in second.state.processes]
        children = [c.pid for pid in pids for c in psutil.Process(pid).children(recursive=True)]
        assert len(pids) == 4
    finally:
        out = run_cli("down", "--name", "second").stdout
    assert "stopped" in out
    for pid in pids + children:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    # The first cluster is untouched.
    assert all(p.alive() for p in cluster.state.processes)
    status = run_cli("status", "--name", "second").stdout
    assert status.count("stopped") == 4


def test_unknown_cluster_name_is_one_line_and_exit_2() -> None:
    for command in ("status", "down"):
        line = one_line_error(run_cli(command, "--name", "no-such-cluster", check=False))
        assert "no-such-cluster" in line


def test_invalid_cluster_name_is_rejected() -> None:
    line = one_line_error(run_cli("up", "--name", "Bad_Name", check=False))
    assert "Bad_Name" in line


def test_up_on_a_running_name_is_refused(cluster: Cluster) -> None:
    line = one_line_error(run_cli("up", "--name", cluster.name, check=False))
    assert "already running" in line
    assert all(p.alive() for p in cluster.state.processes)


def test_port_already_taken_is_refused(binaries) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        line = one_line_error(run_cli("up", "--name", "porttaken", "--port", str(port),
                                      check=False))
    assert str(port) in line and "in use" in line


def test_bin_dir_without_binaries_is_refused(tmp_path) -> None:
    (tmp_path / "kube-apiserver").write_text("#!/bin/sh\n")
    line = one_line_error(run_cli("provision", "--bin-dir", str(tmp_path), check=False))
    assert "kube-scheduler" in line and str(tmp_path) in line
    line = one_line_error(run_cli("up", "--name", "nobin", "--bin-dir",
                                  str(tmp_path / "missing"), check=False))
    assert "not a directory" in line


def test_bin_dir_with_binaries_builds_nothing(binaries, tmp_path) -> None:
    for name in ("kube-apiserver", "kube-scheduler", "kube-controller-manager"):
        os.symlink(binaries.path(name), tmp_path / name)
    out = run_cli("provision", "--bin-dir", str(tmp_path), "--no-build").stdout
    assert "--bin-dir" in out
    assert "Building" not in out


def test_building_without_go_is_refused(tmp_path) -> None:
    env = {"PATH": str(tmp_path), "PYKUBEMARK_CACHE": str(tmp_path / "cache")}
    line = one_line_error(run_cli("provision", check=False, env=env))
    assert "Go" in line and "--bin-dir" in line


def test_a_release_the_proxy_does_not_serve_is_one_line_and_leaves_nothing(tmp_path) -> None:
    cache = tmp_path / "cache"
    line = one_line_error(run_cli("provision", "--kubernetes-version", "9.99.0", check=False,
                                  env={"PYKUBEMARK_CACHE": str(cache)}))
    assert "9.99.0" in line and "not served" in line and "log:" in line
    log = Path(line.split("log: ")[1])
    assert log.is_file() and "9.99.0" in log.read_text()
    assert not list((cache / "kubernetes").glob("*9.99.0*"))


@pytest.mark.parametrize("version", ["1.37", "v1.37.2-rc.1", "latest"])
def test_a_version_that_is_not_a_release_is_refused(version: str) -> None:
    line = one_line_error(run_cli("provision", "--kubernetes-version", version, check=False))
    assert "--kubernetes-version" in line


def test_health_get_tells_answer_refusal_and_silence_apart(cluster: Cluster,
                                                           tmp_path) -> None:
    from pykubemark.cluster import health
    from pykubemark.cluster.pki import write_pki

    local = cluster.local
    server, ca, token = cluster.state.server, local.dir / "pki" / "ca.crt", local.token("admin")
    status, body = health.get(f"{server}/api/v1/nodes/no-such-node", token=token, ca_cert=ca)
    assert status == 404 and json.loads(body)["reason"] == "NotFound"
    assert health.get(f"{server}/readyz", token="not-a-token", ca_cert=ca)[0] == 401
    # Another CA does not vouch for the apiserver: the TLS handshake fails, nothing answers.
    other_ca = write_pki(tmp_path)["ca_cert"]
    assert health.get(f"{server}/readyz", token=token, ca_cert=other_ca) == (0, b"")
    with socket.socket() as sock:  # bound, not listening: the connection is refused
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
        assert health.get(f"http://127.0.0.1:{closed}/health") == (0, b"")
        assert not health.healthy(f"http://127.0.0.1:{closed}/health")


def test_node_bootstrap_rbac_is_idempotent_and_needs_an_admin(cluster: Cluster) -> None:
    from pykubemark.cluster.node_bootstrap import allow_node_bootstrap
    from pykubemark.errors import UserError

    local = cluster.local
    ca = local.dir / "pki" / "ca.crt"
    allow_node_bootstrap(cluster.state.server, local.token("admin"), ca)  # all there: 409s
    roles = cluster.get_json("clusterrolebinding", "kubeadm:kubelet-bootstrap")
    assert roles["subjects"][0]["name"] == "system:bootstrappers"
    with pytest.raises(UserError) as raised:
        allow_node_bootstrap(cluster.state.server, "not-a-token", ca)
    assert "401" in raised.value.message and "ClusterRole" in raised.value.message
