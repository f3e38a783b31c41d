"""KWOK as an engine, without a cluster: what it refuses, the Nodes it creates, the
controller's command line, the RBAC it binds, and which files of the module it takes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pykubemark.engines import ENGINES, HollowOptions, NodeOptions, register_rate
from pykubemark.engines.kwok import (
    ANNOTATION,
    kwok_argv,
    node_object,
    object_path,
    rbac_objects,
    refuse_hollow_options,
)
from pykubemark.errors import UserError
from pykubemark.provision.kwok import Kwok, kwok_version, stage_files


def test_kwok_is_an_engine_and_refuses_what_only_hollow_nodes_do() -> None:
    engine = ENGINES["kwok"]
    assert register_rate(engine, None) == 50.0
    engine.check(NodeOptions(count=3, prefix="k", register_rate=5.0))
    with pytest.raises(UserError) as info:
        engine.check(NodeOptions(count=3, fidelity="lite", transport="h1",
                                 node_credentials="shared"))
    assert str(info.value) == ("--fidelity, --transport, --node-credentials apply to the "
                               "pykubemark engine only, not --engine kwok")
    with pytest.raises(UserError, match=r"does not fit in 10\.128\.0\.0/10"):
        engine.check(NodeOptions(count=20_000))
    assert engine.node_names(NodeOptions(count=2, prefix="k")) == ["k-0", "k-1"]


def test_hollow_options_for_kubelets_or_proxies_are_refused() -> None:
    refuse_hollow_options(HollowOptions(nodes=NodeOptions(count=1), delete_nodes_on_exit=True))
    with pytest.raises(UserError, match=r"^--proxy-kubeconfig apply to the pykubemark or "
                       r"kubemark engine only, not --engine kwok$"):
        refuse_hollow_options(HollowOptions(nodes=NodeOptions(count=1),
                                            proxy_kubeconfig=Path("p")))
    with pytest.raises(UserError, match=r"^--kubelet-port, --kubelet-version apply"):
        refuse_hollow_options(HollowOptions(nodes=NodeOptions(count=1), kubelet_port=1,
                                            kubelet_version="1.37.2"))


def test_a_node_is_kwokctls_with_addresses_of_its_own() -> None:
    node = node_object("kw-5", 5)
    meta = node["metadata"]
    assert meta["annotations"][ANNOTATION] == "fake"
    assert meta["labels"]["type"] == "kwok"
    assert meta["labels"]["kubernetes.io/hostname"] == "kw-5"
    assert "taints" not in node["spec"]  # a Deployment's pods land on it, as kwokctl's
    assert node["spec"]["podCIDRs"] == ["10.128.5.0/24"]
    assert node["status"]["addresses"] == [{"type": "InternalIP", "address": "127.48.0.6"},
                                           {"type": "Hostname", "address": "kw-5"}]
    assert node["status"]["allocatable"] == {"cpu": "32", "memory": "256Gi", "pods": "110"}
    assert "conditions" not in node["status"]  # KWOK's node-initialize Stage writes them


def test_the_controller_reads_no_user_config_and_serves_on_loopback(tmp_path: Path) -> None:
    argv = kwok_argv(Kwok("v0.8.0", tmp_path), Path("/c/kubeconfig"), Path("/c/kwok"), 4242)
    assert argv[:3] == ["env", "KWOK_WORKDIR=/c/kwok", str(tmp_path / "bin" / "kwok")]
    assert "--enable-crds=Stage" in argv
    assert "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake" in argv
    assert "--node-lease-duration-seconds=40" in argv
    assert "--server-address=127.0.0.1:4242" in argv
    assert not [a for a in argv if a.startswith("--node-port")]


def test_objects_are_addressed_by_group_version_and_kind() -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "stages.kwok.x-k8s.io"}}
    assert object_path(crd) == ("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                                "stages.kwok.x-k8s.io")
    stage = {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage",
             "metadata": {"name": "pod-ready"}}
    assert object_path(stage) == "/apis/kwok.x-k8s.io/v1alpha1/stages/pod-ready"
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}}
    assert object_path(node) == "/api/v1/nodes/n"


def test_kwoks_role_and_flow_schema_are_bound_to_the_user(tmp_path: Path) -> None:
    rbac = tmp_path / "manifests" / "rbac"
    rbac.mkdir(parents=True)
    (rbac / "role.yaml").write_text(yaml.safe_dump_all([None, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "kwok-controller"}, "rules": []}]))
    (rbac / "flow_schema.yaml").write_text(yaml.safe_dump({
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
        "metadata": {"name": "kwok-controller"},
        "spec": {"priorityLevelConfiguration": {"name": "exempt"}, "rules": [{
            "subjects": [{"kind": "ServiceAccount", "serviceAccount": {
                "name": "kwok-controller", "namespace": "kube-system"}}]}]}}))
    found = {obj["kind"]: obj for obj in rbac_objects(Kwok("v0.8.0", tmp_path), "kwok:c")}
    assert set(found) == {"ClusterRole", "ClusterRoleBinding", "FlowSchema"}
    binding = found["ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == "kwok-controller"
    assert binding["subjects"] == [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io",
                                    "name": "kwok:c"}]
    assert found["FlowSchema"]["spec"]["rules"][0]["subjects"] == [
        {"kind": "User", "user": {"name": "kwok:c"}}]
    assert found["FlowSchema"]["spec"]["priorityLevelConfiguration"]["name"] == "exempt"


def test_the_stages_are_those_the_fast_kustomization_lists(tmp_path: Path) -> None:
    def kustomization(directory: str, *resources: str) -> None:
        (tmp_path / directory).mkdir(parents=True, exist_ok=True)
        (tmp_path / directory / "kustomization.yaml").write_text(
            yaml.safe_dump({"resources": list(resources)}))
        for name in resources:
            if name.endswith(".yaml"):
                (tmp_path / directory / name).write_text("kind: Stage\n")

    kustomization("kustomize/stage/node/fast", "node-initialize.yaml")
    kustomization("kustomize/stage/pod/fast", "pod-ready.yaml", "pod-delete.yaml")
    kustomization("kustomize/stage/fast", "../node/fast", "../pod/fast")
    assert [p.name for p in stage_files(tmp_path)] == ["node-initialize.yaml",
                                                       "pod-ready.yaml", "pod-delete.yaml"]


def test_the_kwok_version_is_pinned_unless_the_environment_says(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYKUBEMARK_KWOK_VERSION", raising=False)
    assert kwok_version() == "v0.8.0"
    monkeypatch.setenv("PYKUBEMARK_KWOK_VERSION", "0.7.0")
    assert kwok_version() == "v0.7.0"
    monkeypatch.setenv("PYKUBEMARK_KWOK_VERSION", "latest")
    with pytest.raises(UserError, match="is not a KWOK release"):
        kwok_version()
