"""Objects a hollow kubelet writes: addresses, node shape, pod statuses, status patches."""

from __future__ import annotations

import copy
import time
import types
from typing import Any

import msgspec
import pytest

from pykubemark.hollow import objects
from pykubemark.hollow.objects import (
    NodeIdentity,
    PodTimes,
    nth_address,
    nth_subnet,
    pod_status,
    qos_class,
    status_patch,
)
from pykubemark.hollow.profile import Capacity, Profile
from pykubemark.kube.types import Pod

# -- literal expectations copied from shared/reference/objects/node.json (Go kubemark 1.20) --
REF_LABEL_KEYS = {
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "kubernetes.io/arch",
    "kubernetes.io/hostname",
    "kubernetes.io/os",
}
REF_CONDITIONS = [
    ("MemoryPressure", "False", "KubeletHasSufficientMemory",
     "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
]
REF_CAPACITY = {"cpu": "1", "ephemeral-storage": "0", "memory": "3840Mi", "pods": "110"}
REF_STATUS_KEYS = {
    "addresses", "allocatable", "capacity", "conditions", "daemonEndpoints", "images",
    "nodeInfo",
}
REF_NODE_INFO_KEYS = {
    "architecture", "bootID", "containerRuntimeVersion", "kernelVersion", "kubeProxyVersion",
    "kubeletVersion", "machineID", "operatingSystem", "osImage", "systemUUID",
}
# from shared/reference/objects/pod-running.json
REF_CONTAINER_STATUS_KEYS = {
    "containerID", "image", "imageID", "lastState", "name", "ready", "restartCount",
    "started", "state",
}
REF_POD_STATUS_KEYS = {
    "conditions", "containerStatuses", "hostIP", "phase", "podIP", "podIPs", "qosClass",
    "startTime",
}
POD_CONDITION_ORDER = ["Initialized", "Ready", "ContainersReady", "PodScheduled"]


def make_pod(**spec: Any) -> Pod:
    spec.setdefault("nodeName", "hollow-0")
    spec.setdefault("containers", [{"name": "pause", "image": "registry.k8s.io/pause:3.2"}])
    return msgspec.convert({
        "metadata": {"name": "web-1", "namespace": "default",
                     "uid": "c93758c5-2929-4c6f-a2b9-4405beddb8a8"},
        "spec": spec,
    }, Pod)


def times(**kw: str) -> PodTimes:
    t = PodTimes("2026-11-22T10:00:00Z")
    for key, value in kw.items():
        setattr(t, key, value)
    return t


def by_type(conditions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in conditions}


# -- addresses ----------------------------------------------------------------------------
def test_nth_subnet() -> None:
    assert nth_subnet("10.64.0.0/10", 0, 24) == "10.64.0.0/24"
    assert nth_subnet("10.64.0.0/10", 1, 24) == "10.64.1.0/24"
    assert nth_subnet("10.64.0.0/10", 256, 24) == "10.65.0.0/24"
    assert nth_subnet("10.64.0.0/10", 16383, 24) == "10.127.255.0/24"
    assert nth_subnet("10.0.0.0/16", 3, 26) == "10.0.0.192/26"


def test_nth_subnet_out_of_range() -> None:
    with pytest.raises(ValueError, match="16384"):
        nth_subnet("10.64.0.0/10", 16384, 24)
    with pytest.raises(ValueError):
        nth_subnet("10.0.0.0/24", 1, 24)


def test_nth_address() -> None:
    assert nth_address("198.18.0.0/15", 0) == "198.18.0.1"
    assert nth_address("198.18.0.0/15", 254) == "198.18.0.255"
    assert nth_address("198.18.0.0/15", 255) == "198.18.1.0"
    assert nth_address("10.0.0.0/29", 5) == "10.0.0.6"


def test_nth_address_out_of_range() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        nth_address("10.0.0.0/29", 6)  # would be the broadcast address
    with pytest.raises(ValueError):
        nth_address("198.18.0.0/15", 1 << 17)


# -- node ---------------------------------------------------------------------------------
def test_node_shape_matches_reference() -> None:
    identity = NodeIdentity("hollow-0", 0, Profile())
    node = identity.node("2026-11-22T10:03:10Z", ["registry.k8s.io/pause:3.2"])
    assert node["apiVersion"] == "v1"
    assert node["kind"] == "Node"
    meta = node["metadata"]
    assert meta["name"] == "hollow-0"
    assert set(meta["labels"]) == REF_LABEL_KEYS
    assert meta["labels"]["kubernetes.io/hostname"] == "hollow-0"
    assert meta["labels"]["kubernetes.io/os"] == "linux"
    assert meta["labels"]["beta.kubernetes.io/arch"] == meta["labels"]["kubernetes.io/arch"]
    assert node["spec"]["providerID"] == "kubemark://hollow-0"

    status = node["status"]
    assert set(status) == REF_STATUS_KEYS
    got = [(c["type"], c["status"], c["reason"], c["message"]) for c in status["conditions"]]
    assert got == REF_CONDITIONS
    for condition in status["conditions"]:
        assert condition["lastTransitionTime"] == "2026-11-22T10:03:10Z"
        assert condition["lastHeartbeatTime"] == "2026-11-22T10:03:10Z"
    assert status["capacity"] == REF_CAPACITY
    assert status["allocatable"] == REF_CAPACITY
    assert status["allocatable"] is not status["capacity"]
    assert set(status["nodeInfo"]) == REF_NODE_INFO_KEYS
    assert status["nodeInfo"]["kubeletVersion"] == "v1.20.2"
    assert status["nodeInfo"]["kubeProxyVersion"] == "v1.20.2"
    assert status["nodeInfo"]["operatingSystem"] == "linux"
    assert [a["type"] for a in status["addresses"]] == ["InternalIP", "Hostname"]
    assert status["addresses"][0]["address"] == "127.16.0.1"
    assert status["addresses"][1]["address"] == "hollow-0"
    assert status["images"][0]["names"] == ["registry.k8s.io/pause:3.2"]


def test_node_identity_derives_addresses_from_index_and_profile() -> None:
    profile = Profile(capacity=Capacity(cpu="4", pods="250"), extra_labels={"zone": "a"},
                      kubelet_version="v1.21.0")
    identity = NodeIdentity("hollow-5", 5, profile)
    assert identity.ip == "127.16.0.6"
    assert identity.pod_cidr == "10.64.5.0/24"
    node = identity.node("t", [])
    assert node["spec"]["podCIDR"] == "10.64.5.0/24"
    assert node["spec"]["podCIDRs"] == ["10.64.5.0/24"]
    assert node["metadata"]["labels"]["zone"] == "a"
    assert node["status"]["capacity"]["cpu"] == "4"
    assert node["status"]["capacity"]["pods"] == "250"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.21.0"
    assert node["status"]["images"] == []


def test_node_carries_what_the_go_hollow_node_carries() -> None:
    # shared/reference/objects/node.json: no annotation of the kubelet's own (the ttl one is
    # the controller-manager's), the fake cAdvisor's machine, system and boot IDs empty
    node = NodeIdentity("hollow-1", 1, Profile()).node("t", [])
    assert "annotations" not in node["metadata"]
    info = node["status"]["nodeInfo"]
    assert (info["machineID"], info["systemUUID"], info["bootID"]) == ("", "", "")
    real = NodeIdentity("hollow-1", 1, Profile(controller_attach_detach=True)).node("t", [])
    assert real["metadata"]["annotations"] == {
        "volumes.kubernetes.io/controller-managed-attach-detach": "true"}


def test_heartbeat_status_has_no_capacity() -> None:
    identity = NodeIdentity("hollow-0", 0, Profile())
    status = identity.status("t0", "t1", [])
    assert "capacity" not in status
    assert "allocatable" not in status
    for condition in status["conditions"]:
        assert condition["lastTransitionTime"] == "t0"
        assert condition["lastHeartbeatTime"] == "t1"


def test_csinode_and_lease_shapes() -> None:
    identity = NodeIdentity("hollow-0", 0, Profile())
    owner = [{"apiVersion": "v1", "kind": "Node", "name": "hollow-0", "uid": "u-1"}]
    csinode = identity.csinode("u-1")
    assert csinode["apiVersion"] == "storage.k8s.io/v1"
    assert csinode["kind"] == "CSINode"
    assert csinode["metadata"] == {"name": "hollow-0", "ownerReferences": owner}
    lease = identity.lease("u-1")
    assert lease["apiVersion"] == "coordination.k8s.io/v1"
    assert lease["metadata"]["namespace"] == "kube-node-lease"
    assert lease["metadata"]["ownerReferences"] == owner
    assert lease["spec"]["holderIdentity"] == "hollow-0"
    assert lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["spec"]["renewTime"].endswith("Z")
    assert "." in lease["spec"]["renewTime"]  # microsecond precision, as MicroTime


# -- QoS ----------------------------------------------------------------------------------
def _c(name: str, requests: dict | None = None, limits: dict | None = None) -> dict:
    return {"name": name, "image": "img",
            "resources": {"requests": requests or {}, "limits": limits or {}}}


def test_qos_best_effort() -> None:
    assert qos_class(make_pod(containers=[_c("a"), _c("b")])) == "BestEffort"


def test_qos_burstable_requests_only() -> None:
    pod = make_pod(containers=[_c("a", requests={"cpu": "100m"})])
    assert qos_class(pod) == "Burstable"


def test_qos_guaranteed_limits_only_or_equal_requests() -> None:
    limits = {"cpu": "1", "memory": "1Gi"}
    assert qos_class(make_pod(containers=[_c("a", limits=limits)])) == "Guaranteed"
    assert qos_class(make_pod(containers=[_c("a", requests=dict(limits), limits=limits)])) \
        == "Guaranteed"


def test_qos_burstable_when_requests_differ_or_limit_missing() -> None:
    limits = {"cpu": "1", "memory": "1Gi"}
    pod = make_pod(containers=[_c("a", requests={"cpu": "500m", "memory": "1Gi"},
                                  limits=limits)])
    assert qos_class(pod) == "Burstable"
    pod = make_pod(containers=[_c("a", limits={"cpu": "1"})])
    assert qos_class(pod) == "Burstable"
    pod = make_pod(containers=[_c("a", limits=limits), _c("b")])
    assert qos_class(pod) == "Burstable"


def test_qos_counts_init_containers() -> None:
    limits = {"cpu": "1", "memory": "1Gi"}
    pod = make_pod(containers=[_c("a", limits=limits)], initContainers=[_c("init")])
    assert qos_class(pod) == "Burstable"
    pod = make_pod(containers=[_c("a")], initContainers=[_c("init", requests={"cpu": "1"})])
    assert qos_class(pod) == "Burstable"


def test_qos_ignores_non_compute_resources() -> None:
    pod = make_pod(containers=[_c("a", requests={"ephemeral-storage": "1Gi"})])
    assert qos_class(pod) == "BestEffort"


# -- pod status ---------------------------------------------------------------------------
TWO = [{"name": "pause", "image": "registry.k8s.io/pause:3.2"},
       {"name": "side", "image": "busybox"}]


def test_pending_status() -> None:
    pod = make_pod(containers=TWO)
    status = pod_status(pod, "Pending", times(), "198.18.0.1", "10.64.0.2")
    assert status["phase"] == "Pending"
    assert status["hostIP"] == "198.18.0.1"
    assert status["podIP"] == "10.64.0.2"
    assert status["podIPs"] == [{"ip": "10.64.0.2"}]
    assert status["startTime"] == "2026-11-22T10:00:00Z"
    assert status["qosClass"] == "BestEffort"
    assert [c["type"] for c in status["conditions"]] == POD_CONDITION_ORDER
    cond = by_type(status["conditions"])
    assert cond["Initialized"]["status"] == "True"
    assert cond["PodScheduled"]["status"] == "True"
    for kind in ("Ready", "ContainersReady"):
        assert cond[kind]["status"] == "False"
        assert cond[kind]["reason"] == "ContainersNotReady"
        assert cond[kind]["message"] == "containers with unready status: [pause side]"
    assert [s["name"] for s in status["containerStatuses"]] == ["pause", "side"]
    for s in status["containerStatuses"]:
        assert s["state"] == {"waiting": {"reason": "ContainerCreating"}}
        assert s["ready"] is False
        assert s["started"] is False
        assert "containerID" not in s


def test_running_status_matches_reference_shape() -> None:
    pod = make_pod()
    t = times(started="2026-11-22T10:00:01Z", ready_since="2026-11-22T10:00:02Z")
    status = pod_status(pod, "Running", t, "198.18.0.1", "10.64.0.2")
    assert set(status) == REF_POD_STATUS_KEYS
    assert status["phase"] == "Running"
    assert [c["type"] for c in status["conditions"]] == POD_CONDITION_ORDER
    for condition in status["conditions"]:
        assert condition["status"] == "True"
        assert condition["lastProbeTime"] is None
        assert "reason" not in condition
        assert "message" not in condition
    cond = by_type(status["conditions"])
    assert cond["Ready"]["lastTransitionTime"] == "2026-11-22T10:00:02Z"
    assert cond["PodScheduled"]["lastTransitionTime"] == "2026-11-22T10:00:00Z"
    [cs] = status["containerStatuses"]
    assert set(cs) == REF_CONTAINER_STATUS_KEYS
    assert cs["ready"] is True
    assert cs["started"] is True
    assert cs["restartCount"] == 0
    assert cs["imageID"] == cs["image"] == "registry.k8s.io/pause:3.2"
    assert cs["state"] == {"running": {"startedAt": "2026-11-22T10:00:01Z"}}
    assert cs["containerID"].startswith("pykubemark://default_web-1_c93758c5_pause")


def test_status_without_pod_ip() -> None:
    status = pod_status(make_pod(), "Pending", times(), "198.18.0.1", "")
    assert "podIP" not in status
    assert "podIPs" not in status


def _terminated(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [s["state"]["terminated"] for s in status["containerStatuses"]]


def test_terminated_restart_always_stays_running() -> None:
    pod = make_pod(containers=TWO, restartPolicy="Always")
    t = times(started="2026-11-22T10:00:01Z", finished="2026-11-22T10:05:00Z")
    status = pod_status(pod, "Terminated", t, "h", "10.64.0.2")
    assert status["phase"] == "Running"
    for term in _terminated(status):
        assert term["exitCode"] == 0
        assert term["reason"] == "Completed"
        assert term["startedAt"] == "2026-11-22T10:00:01Z"
        assert term["finishedAt"] == "2026-11-22T10:05:00Z"
    for s in status["containerStatuses"]:
        assert s["ready"] is False
        assert s["started"] is False
        assert s["state"]["terminated"]["containerID"] == s["containerID"]
    cond = by_type(status["conditions"])
    assert cond["Ready"]["status"] == "False"
    assert cond["Ready"]["reason"] == "ContainersNotReady"
    assert cond["Ready"]["message"] == "containers with unready status: [pause side]"
    assert cond["Ready"]["lastTransitionTime"] == "2026-11-22T10:05:00Z"
    # the pod keeps its IP in the terminated status, as the kubelet reports it
    assert status["podIP"] == "10.64.0.2"


@pytest.mark.parametrize(("policy", "code", "phase", "reason"), [
    ("Never", 0, "Succeeded", "Completed"),
    ("Never", 137, "Failed", "Error"),
    ("OnFailure", 0, "Succeeded", "Completed"),
    ("OnFailure", 1, "Failed", "Error"),
    ("Always", 1, "Running", "Error"),
])
def test_terminated_phase_follows_restart_policy(policy: str, code: int, phase: str,
                                                  reason: str) -> None:
    pod = make_pod(restartPolicy=policy)
    status = pod_status(pod, "Terminated", times(finished="f"), "h", "ip", exit_code=code)
    assert status["phase"] == phase
    [term] = _terminated(status)
    assert term["exitCode"] == code
    assert term["reason"] == reason
    assert term["startedAt"] == "f"  # never started: falls back to the finish time


def test_succeeded_status() -> None:
    pod = make_pod(restartPolicy="Never")
    t = times(started="s", ready_since="r", finished="f")
    status = pod_status(pod, "Succeeded", t, "h", "10.64.0.9")
    assert status["phase"] == "Succeeded"
    cond = by_type(status["conditions"])
    for kind in ("Ready", "ContainersReady"):
        assert cond[kind]["status"] == "False"
        assert cond[kind]["reason"] == "PodCompleted"
        assert "message" not in cond[kind]
        assert cond[kind]["lastTransitionTime"] == "f"
    [term] = _terminated(status)
    assert term == {"exitCode": 0, "reason": "Completed", "startedAt": "s", "finishedAt": "f",
                    "containerID": status["containerStatuses"][0]["containerID"]}


def test_failed_status_carries_exit_code() -> None:
    pod = make_pod(restartPolicy="Never")
    status = pod_status(pod, "Failed", times(started="s", finished="f"), "h", "ip", exit_code=2)
    assert status["phase"] == "Failed"
    [term] = _terminated(status)
    assert term["exitCode"] == 2
    assert term["reason"] == "Error"


def test_failed_conditions_as_kubelet_1_20() -> None:
    pod = make_pod(restartPolicy="Never")
    status = pod_status(pod, "Failed", times(finished="f"), "h", "ip", exit_code=1)
    cond = by_type(status["conditions"])
    assert cond["Ready"]["reason"] == "ContainersNotReady"
    assert cond["Ready"]["message"] == "containers with unready status: [pause]"


def test_terminated_to_succeeded_says_pod_completed() -> None:
    pod = make_pod(restartPolicy="Never")
    status = pod_status(pod, "Terminated", times(finished="f"), "h", "ip")
    assert status["phase"] == "Succeeded"
    assert by_type(status["conditions"])["Ready"]["reason"] == "PodCompleted"


# -- status patch -------------------------------------------------------------------------
def smp_apply(old: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply a strategic-merge patch to a pod status as the apiserver does (the subset the
    kubelet uses: merge-keyed lists, $setElementOrder, null deletes a field)."""
    result = copy.deepcopy(old)
    for key, value in patch.items():
        if key.startswith("$setElementOrder/"):
            continue
        merge_key = objects.MERGE_LISTS.get(key)
        if merge_key and isinstance(result.get(key), list):
            merged = {item[merge_key]: dict(item) for item in result[key]}
            for item in value:
                target = merged.setdefault(item[merge_key], {})
                for k, v in item.items():
                    if v is None:
                        target.pop(k, None)
                    else:
                        target[k] = v
            order = [i[merge_key] for i in patch.get(f"$setElementOrder/{key}", [])]
            result[key] = [merged[k] for k in order if k in merged] + [
                item for k, item in merged.items() if k not in order]
        elif value is None:
            result.pop(key, None)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _without_nulls(status: dict[str, Any]) -> dict[str, Any]:
    """The status as the apiserver stores it: a null field (lastProbeTime) is absent."""
    out = copy.deepcopy(status)
    for key in objects.MERGE_LISTS:
        for item in out.get(key, []):
            for k in [k for k, v in item.items() if v is None]:
                del item[k]
    return out


def test_status_patch_unchanged_is_empty() -> None:
    status = pod_status(make_pod(), "Pending", times(), "h", "10.64.0.2")
    assert status_patch(status, copy.deepcopy(status)) == {}


def test_status_patch_ignores_the_zero_fields_a_protobuf_answer_carries() -> None:
    status = pod_status(make_pod(), "Running", times(), "h", "10.64.0.2")
    padded = copy.deepcopy(status)
    for key in objects.MERGE_LISTS:
        for item in padded.get(key, []):
            item.update({"reason": item.get("reason", ""), "message": item.get("message", "")})
    padded["nominatedNodeName"] = ""
    assert status_patch(padded, status) == {}
    padded["phase"] = "Pending"
    assert status_patch(padded, status) == {"phase": "Running"}


def test_status_patch_scalars_only_changed() -> None:
    old = {"phase": "Pending", "hostIP": "h", "qosClass": "BestEffort"}
    new = {"phase": "Running", "hostIP": "h", "qosClass": "BestEffort", "startTime": "t"}
    assert status_patch(old, new) == {"phase": "Running", "startTime": "t"}


def test_status_patch_conditions_only_changed_elements() -> None:
    old = {"conditions": [
        {"type": "Initialized", "status": "True", "lastTransitionTime": "a"},
        {"type": "Ready", "status": "False", "lastTransitionTime": "a"},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "a"},
    ]}
    new = {"conditions": [
        {"type": "Initialized", "status": "True", "lastTransitionTime": "a"},
        {"type": "Ready", "status": "True", "lastTransitionTime": "b"},
        {"type": "ContainersReady", "status": "True", "lastTransitionTime": "b"},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "a"},
    ]}
    assert status_patch(old, new) == {
        "$setElementOrder/conditions": [{"type": "Initialized"}, {"type": "Ready"},
                                        {"type": "ContainersReady"}, {"type": "PodScheduled"}],
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "b"},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": "b"},
        ],
    }


def test_status_patch_reordered_conditions_only_order() -> None:
    a = {"type": "A", "status": "True"}
    b = {"type": "B", "status": "True"}
    assert status_patch({"conditions": [a, b]}, {"conditions": [b, a]}) == {
        "$setElementOrder/conditions": [{"type": "B"}, {"type": "A"}],
    }


def test_status_patch_pod_ips() -> None:
    assert status_patch({"phase": "Pending"}, {"phase": "Pending", "podIPs": [{"ip": "x"}]}) \
        == {"podIPs": [{"ip": "x"}]}
    assert status_patch({"podIPs": [{"ip": "x"}]}, {"podIPs": [{"ip": "x"}]}) == {}
    assert status_patch({"podIPs": [{"ip": "x"}]},
                        {"podIPs": [{"ip": "x"}, {"ip": "fd00::2"}]}) == {
        "$setElementOrder/podIPs": [{"ip": "x"}, {"ip": "fd00::2"}],
        "podIPs": [{"ip": "fd00::2"}],
    }


def test_status_patch_non_merge_lists_replaced_whole() -> None:
    old = {"containerStatuses": [{"name": "a", "ready": False}, {"name": "b", "ready": False}]}
    new = {"containerStatuses": [{"name": "a", "ready": True}, {"name": "b", "ready": False}]}
    assert status_patch(old, new) == {"containerStatuses": new["containerStatuses"]}


def test_status_patch_from_scheduler_status_applies_to_pending() -> None:
    scheduled = {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                        "lastTransitionTime": "2026-11-22T09:59:59Z"}],
        "qosClass": "BestEffort",
    }
    new = pod_status(make_pod(), "Pending", times(), "h", "10.64.0.2")
    patch = status_patch(scheduled, new)
    assert "phase" not in patch
    assert "qosClass" not in patch
    assert [c["type"] for c in patch["$setElementOrder/conditions"]] == POD_CONDITION_ORDER
    assert smp_apply(_without_nulls(scheduled), patch) == _without_nulls(new)


def test_status_patch_running_to_terminated_applies() -> None:
    pod = make_pod()
    t = times(started="s", ready_since="r")
    running = pod_status(pod, "Running", t, "h", "10.64.0.2")
    t.finished = "f"
    terminated = pod_status(pod, "Terminated", t, "h", "10.64.0.2")
    patch = status_patch(running, terminated)
    assert "podIPs" not in patch
    assert "phase" not in patch  # restartPolicy Always: stays Running
    assert {c["type"] for c in patch["conditions"]} == {"Ready", "ContainersReady"}
    assert smp_apply(_without_nulls(running), patch) == _without_nulls(terminated)


def test_status_patch_pending_to_running_removes_reason() -> None:
    pod = make_pod()
    t = times(started="s")
    pending = pod_status(pod, "Pending", t, "h", "10.64.0.2")
    t.ready_since = "r"
    running = pod_status(pod, "Running", t, "h", "10.64.0.2")
    patch = status_patch(pending, running)
    applied = smp_apply(_without_nulls(pending), patch)
    assert "reason" not in by_type(applied["conditions"])["Ready"]
    assert applied == _without_nulls(running)


def test_podscheduled_keeps_the_schedulers_time() -> None:
    """The kubelet keeps PodScheduled as the scheduler wrote it; its own first sync
    (startTime, Initialized) may be later."""
    t = PodTimes("2026-11-22T10:00:03Z", bound="2026-11-22T10:00:02Z")
    status = pod_status(make_pod(), "Pending", t, "h", "ip")
    cond = by_type(status["conditions"])
    assert cond["PodScheduled"]["lastTransitionTime"] == "2026-11-22T10:00:02Z"
    assert cond["Initialized"]["lastTransitionTime"] == "2026-11-22T10:00:03Z"
    assert status["startTime"] == "2026-11-22T10:00:03Z"


def test_now_in_seconds_follows_the_clock_across_a_second(monkeypatch) -> None:
    clock = [1764000000.2]  # 2025-11-24T16:00:00Z
    monkeypatch.setattr(objects, "time", types.SimpleNamespace(
        time=lambda: clock[0], strftime=time.strftime, gmtime=time.gmtime))
    assert objects.now_seconds() == "2025-11-24T16:00:00Z"
    clock[0] += 0.7
    assert objects.now_seconds() == "2025-11-24T16:00:00Z"
    clock[0] += 0.2
    assert objects.now_seconds() == "2025-11-24T16:00:01Z"
    clock[0] += 3600 * 24
    assert objects.now_seconds() == "2025-11-25T16:00:01Z"
