"""Hollow nodes as pods on a real base cluster (`up --real-node`: a real kubelet on
containerd), pointed at the session cluster as target: `deploy`, a shard pod's restart,
`deploy status`, `undeploy`, and the refusals that must leave nothing behind."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import Cluster, is_ready, run_cli, wait_for

#: Tests that start a base cluster with a real node: `pytest -m "not slow"` leaves them out.
pytestmark = pytest.mark.slow

NODES, PER_POD = 6, 3
IMAGE_ARCHIVE = Path("~/.cache/pykubemark/image/test-image.tar").expanduser()
SRC = Path(__file__).resolve().parents[1]


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def image_archive(binaries) -> Path:
    """`pykubemark image build`, redone only when the sources changed (cached outside
    the repo, like the Kubernetes build)."""
    newest = max(p.stat().st_mtime for p in [SRC / "pyproject.toml",
                                             *(SRC / "src").rglob("*.py")])
    if not IMAGE_ARCHIVE.is_file() or IMAGE_ARCHIVE.stat().st_mtime < newest:
        run_cli("image", "build", "--out", str(IMAGE_ARCHIVE), timeout=1200)
    return IMAGE_ARCHIVE


@pytest.fixture(scope="module")
def base(image_archive) -> Iterator[Cluster]:
    run_cli("up", "--name", "base", "--real-node", "--load-image", str(image_archive),
            timeout=900)
    try:
        yield Cluster("base")
    finally:
        run_cli("down", "--name", "base", check=False)


def _ours(base: Cluster) -> list[str]:
    """Every object of pykubemark on the base cluster."""
    out = base.kubectl("get", "namespaces,statefulsets,pods,secrets,serviceaccounts",
                       "--all-namespaces", "-l", "app.kubernetes.io/managed-by=pykubemark",
                       "-o", "name")
    return out.split()


def _deploy(base: Cluster, target: Cluster, *extra: str, check: bool = True):
    return run_cli("deploy", "--base-kubeconfig", base.kubeconfig, "--kubeconfig",
                   target.kubeconfig, "--nodes", str(NODES), "--nodes-per-pod", str(PER_POD),
                   *extra, check=check, timeout=600)


def _shard_nodes(target: Cluster, shard: int | None = None) -> list[dict]:
    prefix = "shard-" if shard is None else f"shard-{shard}-"
    return [n for n in target.get_json("nodes")["items"]
            if n["metadata"]["name"].startswith(prefix)]


def test_an_image_the_node_does_not_have_leaves_nothing(base: Cluster, cluster: Cluster) -> None:
    result = _deploy(base, cluster, "--image", "localhost/no-such-image:1",
                     "--image-pull-policy", "Never", "--wait", "120", check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("pykubemark: shard pod"), result.stderr
    assert "ErrImageNeverPull" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _ours(base) == []


def test_base_without_permissions_or_unreachable_leaves_nothing(base: Cluster,
                                                                cluster: Cluster,
                                                                tmp_path: Path) -> None:
    limited = base.local.kubeconfig_for("scheduler")  # may not create namespaces
    result = run_cli("deploy", "--base-kubeconfig", str(limited), "--kubeconfig",
                     cluster.kubeconfig, "--nodes", "2", check=False)
    assert result.returncode == 2
    assert "may not create" in result.stderr and len(result.stderr.splitlines()) == 1
    assert _ours(base) == []
    gone = yaml.safe_load(Path(base.kubeconfig).read_text())
    gone["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    (tmp_path / "gone").write_text(yaml.safe_dump(gone))
    result = run_cli("deploy", "--base-kubeconfig", str(tmp_path / "gone"), "--kubeconfig",
                     cluster.kubeconfig, "--nodes", "2", check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("pykubemark: cannot reach apiserver https://127.0.0.1:1")


def test_deploy_restart_and_undeploy(base: Cluster, cluster: Cluster) -> None:
    _deploy(base, cluster)
    wait_for(f"{NODES} shard nodes Ready on the target",
             lambda: sum(is_ready(n) for n in _shard_nodes(cluster)) == NODES, timeout=120)
    status = run_cli("deploy", "status", "--base-kubeconfig", base.kubeconfig).stdout
    assert status.count("Running") == NODES // PER_POD

    # a Deployment of the target runs on them
    names = sorted(n["metadata"]["name"] for n in _shard_nodes(cluster))
    on_names = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
                               "values": names}]}]}}
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "on-shards", "namespace": "default"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "on-shards"}},
                 "template": {"metadata": {"labels": {"app": "on-shards"}}, "spec": {
                     "affinity": {"nodeAffinity": on_names},
                     "containers": [{"name": "c", "image": "k8s.gcr.io/pause:3.2"}]}}}}))
    try:
        cluster.kubectl("rollout", "status", "deployment/on-shards", "--timeout=120s",
                        timeout=150)
        pods = cluster.get_json("pods", "-l", "app=on-shards")["items"]
        assert {p["spec"]["nodeName"] for p in pods} <= set(names)
    finally:
        cluster.kubectl("delete", "deployment", "on-shards", "--wait=false", check=False)

    # a shard pod deleted on the base comes back, and its nodes renew their leases again
    old_uid = base.get_json("pod", "-n", "pykubemark", "pykubemark-0")["metadata"]["uid"]
    deleted_at = dt.datetime.now(dt.UTC)
    base.kubectl("delete", "pod", "-n", "pykubemark", "pykubemark-0", "--wait=false")

    def restarted() -> bool:
        pod = base.get_json("pods", "-n", "pykubemark")["items"]
        return any(p["metadata"]["name"] == "pykubemark-0" and p["metadata"]["uid"] != old_uid
                   and p.get("status", {}).get("phase") == "Running" for p in pod)

    wait_for("the StatefulSet to restart pykubemark-0", restarted, timeout=120)
    restarted_at = dt.datetime.now(dt.UTC)

    def renewed_since_restart() -> bool:
        leases = cluster.get_json("leases", "-n", "kube-node-lease")["items"]
        ours = [lease for lease in leases if lease["metadata"]["name"].startswith("shard-0-")]
        return len(ours) == PER_POD and all(
            _parse(lease["spec"]["renewTime"]) > restarted_at for lease in ours)

    wait_for("shard 0's leases renewed after its restart", renewed_since_restart, timeout=120)
    wait_for("shard 0's nodes Ready", lambda: all(is_ready(n) for n in _shard_nodes(cluster, 0)),
             timeout=120)
    went_not_ready = [n["metadata"]["name"] for n in _shard_nodes(cluster, 0)
                      if any(c["type"] == "Ready"
                             and _parse(c["lastTransitionTime"]) > deleted_at
                             for c in n["status"]["conditions"])]
    print(f"shard 0 back after {(restarted_at - deleted_at).total_seconds():.0f}s; nodes that "
          f"went NotReady meanwhile: {went_not_ready or 'none'}")

    result = run_cli("undeploy", "--base-kubeconfig", base.kubeconfig, "--delete-nodes",
                     timeout=400)
    assert "StatefulSet" in result.stdout
    assert _ours(base) == []
    wait_for("the shard nodes deleted on the target", lambda: _shard_nodes(cluster) == [],
             timeout=60)
