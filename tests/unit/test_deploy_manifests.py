"""The manifests of `pykubemark deploy`: shares, names, sizing, wiring of the shard pods."""

from __future__ import annotations

import base64

import pytest
import yaml

from pykubemark.deploy.manifests import (
    DeploySpec,
    manifests,
    resources,
    shard_prefix,
    stateful_set,
)
from pykubemark.errors import UserError
from pykubemark.kube.config import flatten_kubeconfig


def test_shares_cover_every_node_once() -> None:
    spec = DeploySpec(nodes=250, nodes_per_pod=100)
    assert spec.shards == 3
    assert [spec.shard_nodes(k) for k in range(4)] == [100, 100, 50, 0]
    names = [n for k in range(spec.shards) for n in spec.node_names(k)]
    assert len(names) == len(set(names)) == 250
    assert names[0] == "shard-0-0" and names[-1] == "shard-2-49"


def test_shard_prefix_from_statefulset_pod_name() -> None:
    assert shard_prefix("shard", "pykubemark-12") == ("shard-12", 12)
    assert shard_prefix("x", "my-set-name-0") == ("x-0", 0)
    with pytest.raises(ValueError):
        shard_prefix("shard", "pykubemark")


def test_resources_grow_with_nodes_per_pod() -> None:
    small, big = resources(10), resources(1000)

    def mib(q: str) -> int:
        return int(q.removesuffix("Mi"))

    def milli(q: str) -> int:
        return int(q.removesuffix("m"))

    assert mib(big["requests"]["memory"]) > mib(small["requests"]["memory"])
    assert milli(big["requests"]["cpu"]) > milli(small["requests"]["cpu"])
    for r in (small, big):
        assert mib(r["limits"]["memory"]) >= mib(r["requests"]["memory"])
        assert milli(r["limits"]["cpu"]) >= milli(r["requests"]["cpu"])


def test_statefulset_pods_run_hollow_for_their_share() -> None:
    spec = DeploySpec(nodes=6, nodes_per_pod=4, image="img:1")
    sts = stateful_set(spec)
    pod = sts["spec"]["template"]["spec"]
    assert sts["spec"]["replicas"] == 2
    assert pod["hostNetwork"] is True
    container = pod["containers"][0]
    args = container["args"]
    assert args[args.index("--nodes") + 1] == "4"
    assert args[args.index("--total-nodes") + 1] == "6"
    assert args[args.index("--shard-from-pod-name") + 1] == "$(POD_NAME)"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    heartbeat = args[args.index("--heartbeat-file") + 1]
    assert heartbeat in container["livenessProbe"]["exec"]["command"]
    mounts = {v["mountPath"] for v in container["volumeMounts"]}
    kubeconfig = args[args.index("--kubeconfig") + 1]
    assert any(kubeconfig.startswith(m + "/") for m in mounts)
    assert any(heartbeat.startswith(m + "/") for m in mounts)
    # the selector selects the template's pods
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    secret_names = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    created = {o["metadata"]["name"] for o in manifests(spec, "x") if o["kind"] == "Secret"}
    assert secret_names <= created


def test_manifests_in_creation_order_in_one_namespace() -> None:
    objs = manifests(DeploySpec(nodes=3, namespace="ns1"), "kc")
    assert [o["kind"] for o in objs] == ["Namespace", "ServiceAccount", "Secret", "StatefulSet"]
    assert all(o["metadata"].get("namespace", "ns1") == "ns1" for o in objs)


def test_flattened_kubeconfig_inlines_files(tmp_path) -> None:
    (tmp_path / "ca.crt").write_bytes(b"CA")
    (tmp_path / "client.crt").write_bytes(b"CERT")
    (tmp_path / "client.key").write_bytes(b"KEY")
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1",
                                               "certificate-authority": "ca.crt"}}],
        "users": [{"name": "u", "user": {"client-certificate": str(tmp_path / "client.crt"),
                                         "client-key": "client.key"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    flat = flatten_kubeconfig(path)
    cluster = flat["clusters"][0]["cluster"]
    user = flat["users"][0]["user"]
    assert base64.b64decode(cluster["certificate-authority-data"]) == b"CA"
    assert base64.b64decode(user["client-certificate-data"]) == b"CERT"
    assert base64.b64decode(user["client-key-data"]) == b"KEY"
    assert "certificate-authority" not in cluster and "client-key" not in user


def test_flattened_kubeconfig_refuses_exec_and_missing_files(tmp_path) -> None:
    path = tmp_path / "kubeconfig"
    base = {"current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}
    path.write_text(yaml.safe_dump({**base, "users": [
        {"name": "u", "user": {"exec": {"command": "aws"}}}]}))
    with pytest.raises(UserError, match="exec"):
        flatten_kubeconfig(path)
    path.write_text(yaml.safe_dump({**base, "users": [
        {"name": "u", "user": {"tokenFile": "missing"}}]}))
    with pytest.raises(UserError, match="tokenFile"):
        flatten_kubeconfig(path)
