"""`pykubemark hollow` and `up --nodes` as commands: how they start, stop and refuse."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import psutil
import yaml
from helpers import Cluster, Fleet, run_cli, wait_for
from test_cluster import one_line_error


def test_missing_kubeconfig_is_one_line(tmp_path) -> None:
    line = one_line_error(run_cli("hollow", "--kubeconfig", str(tmp_path / "nope"),
                                  "--nodes", "1", check=False))
    assert "does not exist" in line


def test_malformed_kubeconfig_is_one_line(tmp_path) -> None:
    bad = tmp_path / "kubeconfig"
    bad.write_text("apiVersion: v1\nclusters: [\n")
    line = one_line_error(run_cli("hollow", "--kubeconfig", str(bad), "--nodes", "1",
                                  check=False))
    assert "not valid YAML" in line


def _kubeconfig_with(cluster: Cluster, tmp_path, *, server: str | None = None,
                     token: str | None = None):
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    if server:
        config["clusters"][0]["cluster"]["server"] = server
    if token:
        config["users"][0]["user"]["token"] = token
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def test_unreachable_server_is_one_line(cluster: Cluster, tmp_path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = _kubeconfig_with(cluster, tmp_path, server=f"https://127.0.0.1:{port}")
    line = one_line_error(run_cli("hollow", "--kubeconfig", str(path), "--nodes", "1",
                                  check=False))
    assert "cannot reach" in line and str(port) in line


def test_rejected_credentials_are_one_line(cluster: Cluster, tmp_path) -> None:
    path = _kubeconfig_with(cluster, tmp_path, token="not-a-token")
    line = one_line_error(run_cli("hollow", "--kubeconfig", str(path), "--nodes", "1",
                                  check=False))
    assert "rejected the credentials" in line and "401" in line


def test_bad_profile_is_one_line(cluster: Cluster, tmp_path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text("lease_renew: often\n")
    line = one_line_error(run_cli("hollow", "--kubeconfig", cluster.kubeconfig, "--nodes", "1",
                                  "--profile", str(profile), check=False))
    assert "profile" in line and "lease_renew" in line


def test_ctrl_c_stops_cleanly_and_leaves_nodes_registered(cluster: Cluster) -> None:
    fleet = Fleet(cluster, 3, "keep")
    fleet.wait_ready()
    children = psutil.Process(fleet.proc.pid).children(recursive=True)
    assert fleet.stop() == 0
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    names = {n["metadata"]["name"] for n in cluster.get_json("nodes")["items"]}
    assert set(fleet.names) <= names
    cluster.kubectl("delete", "node", *fleet.names)


def test_delete_nodes_on_exit_and_shards_over_processes(cluster: Cluster) -> None:
    fleet = Fleet(cluster, 6, "shard", "--processes", "2", "--delete-nodes-on-exit")
    fleet.wait_ready()
    workers = psutil.Process(fleet.proc.pid).children()
    assert len([w for w in workers if "python" in w.name()]) >= 2
    assert fleet.stop() == 0
    # multiprocessing's resource tracker leaves when it sees its parent gone.
    _gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not [w for w in alive if w.status() != psutil.STATUS_ZOMBIE]
    names = {n["metadata"]["name"] for n in cluster.get_json("nodes")["items"]}
    assert not set(fleet.names) & names


def test_up_with_nodes_and_down_stops_them() -> None:
    run_cli("up", "--name", "withnodes", "--nodes", "5", "--prefix", "wn")
    try:
        cluster = Cluster("withnodes")
        nodes = cluster.kubectl("get", "nodes", "--no-headers").splitlines()
        assert len([n for n in nodes if n.startswith("wn-") and " Ready " in n]) == 5
        hollow = cluster.state.proc("hollow")
        assert hollow is not None and hollow.alive()
        status = run_cli("status", "--name", "withnodes").stdout
        assert "hollow" in status
    finally:
        run_cli("down", "--name", "withnodes")
    assert not hollow.alive()
    leftover = subprocess.run(["pgrep", "-f", "--", "--prefix wn"], capture_output=True)
    assert leftover.stdout.strip() == b""


def test_up_with_bad_profile_starts_nothing(tmp_path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text("fidelity: extreme\n")
    result = run_cli("up", "--name", "badprofile", "--nodes", "1", "--profile", str(profile),
                     check=False)
    if result.returncode == 0:
        run_cli("down", "--name", "badprofile")
    line = one_line_error(result)
    assert "fidelity" in line
    wait_for("no cluster named badprofile", lambda: "badprofile" not in run_cli(
        "status").stdout, 5)
