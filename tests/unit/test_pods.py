"""Pod references and the hollow kubelet's pod state machine, without any network.

The status manager (which would make requests) is never started: the tests look at the
records and the status channel the state machine feeds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest

from pykubemark.hollow import objects, pods
from pykubemark.hollow.ipam import Ipam
from pykubemark.hollow.pods import PodLifecycle, Stage, is_job_like, referenced_objects
from pykubemark.hollow.profile import Profile, StartProfile, StopProfile
from pykubemark.kube.client import Client
from pykubemark.kube.config import KubeConfig
from pykubemark.kube.types import Pod

NODE = "hollow-0"
HOST_IP = "198.18.0.1"


def pod(name: str = "web-1", *, node: str = NODE, restart: str = "Always",
        annotations: dict[str, str] | None = None, status: dict[str, Any] | None = None,
        deleting: bool = False, host_network: bool = False, **spec: Any) -> Pod:
    metadata: dict[str, Any] = {"name": name, "namespace": "default", "uid": f"uid-{name}",
                                "annotations": annotations or {}}
    if deleting:
        metadata["deletionTimestamp"] = "2026-11-22T10:10:00Z"
        metadata["deletionGracePeriodSeconds"] = 30
    spec.setdefault("containers", [{"name": "c", "image": "registry.k8s.io/pause:3.2"}])
    return msgspec.convert({
        "metadata": metadata,
        "spec": {"nodeName": node, "restartPolicy": restart, "hostNetwork": host_network,
                 **spec},
        "status": status or {"phase": "Pending"},
    }, Pod)


# -- referenced objects -------------------------------------------------------------------
def test_referenced_objects_all_sources() -> None:
    p = msgspec.convert({
        "metadata": {"name": "p", "namespace": "ns1", "uid": "u"},
        "spec": {
            "volumes": [
                {"name": "tok", "secret": {"secretName": "default-token-abc"}},
                {"name": "cfg", "configMap": {"name": "app-config"}},
                {"name": "empty", "emptyDir": {}},
                {"name": "proj", "projected": {"sources": [
                    {"secret": {"name": "proj-secret"}},
                    {"configMap": {"name": "kube-root-ca.crt"}},
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                    {"downwardAPI": {"items": []}},
                ]}},
            ],
            "containers": [{
                "name": "app", "image": "img",
                "env": [
                    {"name": "PLAIN", "value": "x"},
                    {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}},
                    {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "modes",
                                                                       "key": "m"}}},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ],
                "envFrom": [{"secretRef": {"name": "bulk-secret"}},
                            {"configMapRef": {"name": "bulk-config"}}],
            }],
            "initContainers": [{"name": "init", "image": "img", "env": [
                {"name": "T", "valueFrom": {"secretKeyRef": {"name": "init-secret"}}}]}],
            "imagePullSecrets": [{"name": "regcred"}],
        },
    }, Pod)
    assert referenced_objects(p) == {
        ("secrets", "ns1", "default-token-abc"),
        ("configmaps", "ns1", "app-config"),
        ("secrets", "ns1", "proj-secret"),
        ("configmaps", "ns1", "kube-root-ca.crt"),
        ("secrets", "ns1", "db"),
        ("configmaps", "ns1", "modes"),
        ("secrets", "ns1", "bulk-secret"),
        ("configmaps", "ns1", "bulk-config"),
        ("secrets", "ns1", "init-secret"),
        ("secrets", "ns1", "regcred"),
    }


def test_referenced_objects_none_and_empty_names() -> None:
    assert referenced_objects(pod()) == set()
    p = msgspec.convert({"metadata": {"namespace": "ns"}, "spec": {
        "volumes": [{"name": "s", "secret": {}}, {"name": "c", "configMap": {}}],
        "imagePullSecrets": [{}],
        "containers": [{"name": "a", "envFrom": [{"secretRef": {}}]}],
    }}, Pod)
    assert referenced_objects(p) == set()


def test_referenced_objects_deduplicated() -> None:
    p = msgspec.convert({"metadata": {"namespace": "ns"}, "spec": {
        "volumes": [{"name": "a", "secret": {"secretName": "s"}},
                    {"name": "b", "projected": {"sources": [{"secret": {"name": "s"}}]}}],
        "imagePullSecrets": [{"name": "s"}],
    }}, Pod)
    assert referenced_objects(p) == {("secrets", "ns", "s")}


@pytest.mark.parametrize(("policy", "expected"), [
    ("Always", False), ("Never", True), ("OnFailure", True),
])
def test_is_job_like(policy: str, expected: bool) -> None:
    assert is_job_like(pod(restart=policy)) is expected


# -- lifecycle ----------------------------------------------------------------------------
PROFILE = Profile(
    start=StartProfile(relist_period=0, status_delay=0.01, job_run_seconds=0.01),
    stop=StopProfile(kill_delay=0.01, resyncs=[0.02], delete_after=0.05),
)


class Refs:
    def __init__(self) -> None:
        self.calls: list[tuple[set, set]] = []

    def __call__(self, added: set, removed: set) -> None:
        self.calls.append((set(added), set(removed)))


def lifecycle(refs: Refs | None = None, images: list[str] | None = None) -> PodLifecycle:
    client = Client(KubeConfig(server="https://127.0.0.1:1", ssl_context=None))
    return PodLifecycle(NODE, HOST_IP, Ipam("10.64.0.0/24"), client, PROFILE, on_refs=refs,
                        on_image=images.append if images is not None else None)


async def until(predicate: Callable[[], bool], what: str = "condition",
                limit: float = 5.0) -> None:
    """Wait for the state machine's timers; a generous bound, not a timing assertion."""
    for _ in range(int(limit / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never reached: {what}")


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())


def versions(lc: PodLifecycle, uid: str) -> list[int]:
    return [v for u, v, _ in lc.channel if u == uid]


def phases(lc: PodLifecycle, uid: str) -> list[str]:
    return [s["phase"] for u, _, s in lc.channel if u == uid]


def test_added_goes_pending_then_running() -> None:
    async def body() -> None:
        images: list[str] = []
        lc = lifecycle(images=images)
        lc.on_event("ADDED", pod())
        record = lc.pods["uid-web-1"]
        assert record.phase == "Pending"
        assert record.ip == "10.64.0.2"
        assert versions(lc, "uid-web-1") == [1]
        assert record.status["phase"] == "Pending"
        # the first sync writes startTime; no container has started yet
        assert record.status["startTime"] == record.times.scheduled
        assert record.times.started == ""
        assert record.status["podIP"] == "10.64.0.2"
        assert record.status["hostIP"] == HOST_IP
        assert images == ["registry.k8s.io/pause:3.2"]
        assert lc.needs_update("uid-web-1", 1)
        await until(lambda: record.phase == "Running", "Running")
        assert versions(lc, "uid-web-1") == [1, 2]
        assert phases(lc, "uid-web-1") == ["Pending", "Running"]
        assert record.status["containerStatuses"][0]["ready"] is True
        assert record.times.ready_since
        started = record.status["containerStatuses"][0]["state"]["running"]["startedAt"]
        assert started == record.times.started
        assert record.status["startTime"] <= started <= record.times.ready_since
        assert len(lc.ipam) == 1
        await lc.close()
    run(body)


def test_modified_updates_pod_without_new_status() -> None:
    async def body() -> None:
        lc = lifecycle()
        lc.on_event("ADDED", pod())
        record = lc.pods["uid-web-1"]
        await until(lambda: record.phase == "Running")
        lc.on_event("MODIFIED", pod(annotations={"touched": "yes"}))
        assert record.pod.metadata.annotations == {"touched": "yes"}
        assert versions(lc, "uid-web-1") == [1, 2]
        assert len(lc.ipam) == 1
        await lc.close()
    run(body)


def test_pods_of_other_nodes_ignored() -> None:
    async def body() -> None:
        lc = lifecycle()
        lc.on_event("ADDED", pod(node="hollow-1"))
        lc.on_event("ADDED", pod("unscheduled", node=""))
        assert lc.pods == {}
        assert not lc.channel
        assert len(lc.ipam) == 0
    run(body)


def test_each_pod_gets_its_own_ip() -> None:
    async def body() -> None:
        lc = lifecycle()
        for i in range(5):
            lc.on_event("ADDED", pod(f"p{i}"))
        ips = [r.ip for r in lc.pods.values()]
        assert len(set(ips)) == 5
        assert "10.64.0.1" not in ips
        await lc.close()
    run(body)


def test_host_network_pod_uses_host_ip() -> None:
    async def body() -> None:
        lc = lifecycle()
        lc.on_event("ADDED", pod(host_network=True))
        record = lc.pods["uid-web-1"]
        assert record.ip == HOST_IP
        assert len(lc.ipam) == 0
        lc.on_event("DELETED", pod(host_network=True))
        assert len(lc.ipam) == 0
        assert lc.ipam.allocate() == "10.64.0.2"
    run(body)


def test_deletion_terminates_then_becomes_deletable() -> None:
    async def body() -> None:
        lc = lifecycle()
        lc.on_event("ADDED", pod())
        record = lc.pods["uid-web-1"]
        await until(lambda: record.phase == "Running")
        lc.on_event("MODIFIED", pod(deleting=True))
        assert record.terminating
        await until(lambda: record.phase == "Terminated", "Terminated")
        # restartPolicy Always: phase stays Running, containers are terminated
        assert record.status["phase"] == "Running"
        state = record.status["containerStatuses"][0]["state"]
        assert set(state) == {"terminated"}
        assert len(lc.ipam) == 0  # the IP goes back once the sandbox is gone
        await until(lambda: record.deletable, "deletable")
        # Pending, Running, Terminated, one resync (same status, new version), then the
        # reclaim queues the latest version again so the pod is deleted at once
        assert versions(lc, "uid-web-1") == [1, 2, 3, 4, 4]
        statuses = [s for u, _, s in lc.channel if u == "uid-web-1"]
        assert statuses[3] == statuses[2]
        assert lc.needs_update("uid-web-1", 1)  # deletable: the manager must act
        await lc.close()
    run(body)


def test_deleted_before_running_never_runs() -> None:
    async def body() -> None:
        lc = lifecycle()
        lc.on_event("ADDED", pod(deleting=True))
        record = lc.pods["uid-web-1"]
        assert record.terminating
        await until(lambda: record.deletable, "deletable")
        assert record.phase == "Terminated"
        assert record.times.ready_since == ""
        # waiting (Pending), then killed, resynced and reclaimed: no container ever ran
        states = [list(s["containerStatuses"][0]["state"]) for _, _, s in lc.channel]
        assert states == [["waiting"], ["terminated"], ["terminated"], ["terminated"]]
        await lc.close()
    run(body)


def test_deleted_event_forgets_and_releases_ip() -> None:
    async def body() -> None:
        refs = Refs()
        lc = lifecycle(refs)
        p = pod(volumes=[{"name": "s", "secret": {"secretName": "tok"}}])
        lc.on_event("ADDED", p)
        assert refs.calls == [({("secrets", "default", "tok")}, set())]
        assert len(lc.ipam) == 1
        lc.on_event("DELETED", p)
        assert "uid-web-1" not in lc.pods
        assert "uid-web-1" not in lc.refs
        assert len(lc.ipam) == 0
        assert refs.calls[-1] == (set(), {("secrets", "default", "tok")})
        assert not lc.needs_update("uid-web-1", 1)
        # its timers are cancelled: no Running status is produced for a forgotten pod
        await asyncio.sleep(0.05)
        assert versions(lc, "uid-web-1") == [1]
        assert lc.ipam.allocate() == "10.64.0.2"
        lc.on_event("DELETED", p)  # twice is harmless
    run(body)


def test_a_status_written_for_a_pod_deleted_meanwhile_leaves_nothing_behind() -> None:
    async def body() -> None:
        lc = lifecycle()
        lc.on_event("ADDED", pod())
        record = lc.pods["uid-web-1"]
        lc._mark_synced(record, 1)
        assert not lc.needs_update("uid-web-1", 1)
        # the DELETED event arrives while the status manager awaits the apiserver
        lc.on_event("DELETED", pod())
        lc._mark_synced(record, 2)
        assert "uid-web-1" not in lc.synced_versions
        # a new pod of the same uid (a restart's relist) is written again from scratch
        lc.on_event("ADDED", pod())
        assert lc.needs_update("uid-web-1", 1)
        await lc.close()
    run(body)


def test_job_like_pod_succeeds() -> None:
    async def body() -> None:
        lc = lifecycle()
        lc.on_event("ADDED", pod(restart="Never",
                                 annotations={"pykubemark.io/run-seconds": "0.01"}))
        record = lc.pods["uid-web-1"]
        await until(lambda: record.phase == "Succeeded", "Succeeded")
        assert phases(lc, "uid-web-1") == ["Pending", "Running", "Succeeded"]
        assert record.exit_code == 0
        assert record.status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
        assert len(lc.ipam) == 0
        await lc.close()
    run(body)


@pytest.mark.parametrize(("annotation", "code"), [("3", 3), ("not-a-number", 1)])
def test_job_like_pod_exit_code_fails(annotation: str, code: int) -> None:
    async def body() -> None:
        lc = lifecycle()
        lc.on_event("ADDED", pod(restart="Never", annotations={
            "pykubemark.io/run-seconds": "0.01", "pykubemark.io/exit-code": annotation}))
        record = lc.pods["uid-web-1"]
        await until(lambda: record.phase == "Failed", "Failed")
        assert record.exit_code == code
        assert record.status["phase"] == "Failed"
        term = record.status["containerStatuses"][0]["state"]["terminated"]
        assert term["exitCode"] == code
        assert term["reason"] == "Error"
        await lc.close()
    run(body)


def test_job_run_seconds_default_from_profile() -> None:
    async def body() -> None:
        lc = lifecycle()
        lc.on_event("ADDED", pod(restart="Never",
                                 annotations={"pykubemark.io/run-seconds": "soon"}))
        record = lc.pods["uid-web-1"]
        await until(lambda: record.phase == "Succeeded", "Succeeded")
        await lc.close()
    run(body)


def test_running_pod_from_list_is_adopted() -> None:
    async def body() -> None:
        lc = lifecycle()
        running = pod(status={"phase": "Running", "podIP": "10.64.0.4",
                              "startTime": "2026-11-22T09:00:00Z"})
        lc.on_list([running])
        record = lc.pods["uid-web-1"]
        assert record.phase == "Running"
        assert record.ip == "10.64.0.4"
        assert record.version == 0
        assert not lc.channel
        assert lc.synced_versions["uid-web-1"] == 0
        assert record.times.scheduled == "2026-11-22T09:00:00Z"
        assert len(lc.ipam) == 1
        for i in range(4):
            lc.on_event("ADDED", pod(f"new{i}"))
        new_ips = {r.ip for u, r in lc.pods.items() if u != "uid-web-1"}
        assert "10.64.0.4" not in new_ips
        assert len(new_ips) == 4
        # seen again in a relist: still no restart, no new status
        lc.on_list([running])
        assert record.version == 0
        await asyncio.sleep(0.03)
        assert record.phase == "Running"
        assert record.version == 0
        await lc.close()
    run(body)


def test_adopted_running_job_completes() -> None:
    async def body() -> None:
        lc = lifecycle()
        lc.on_list([pod(restart="Never", status={"phase": "Running", "podIP": "10.64.0.9"})])
        record = lc.pods["uid-web-1"]
        await until(lambda: record.phase == "Succeeded", "Succeeded")
        assert versions(lc, "uid-web-1") == [1]
        assert len(lc.ipam) == 0
        await lc.close()
    run(body)


def test_adopted_finished_pod_deleted_without_kill() -> None:
    async def body() -> None:
        lc = lifecycle()
        done = pod(restart="Never", status={"phase": "Succeeded", "podIP": "10.64.0.9"})
        lc.on_list([done])
        record = lc.pods["uid-web-1"]
        assert record.phase == "Succeeded"
        assert len(lc.ipam) == 0  # a finished pod holds no address
        lc.on_event("MODIFIED", pod(restart="Never", deleting=True,
                                    status={"phase": "Succeeded", "podIP": "10.64.0.9"}))
        await until(lambda: record.deletable, "deletable")
        assert record.phase == "Succeeded"
        # nothing ran, nothing to report: only the deletion is queued, with no status
        assert list(lc.channel) == [("uid-web-1", 0, {})]
    run(body)


def test_relist_forgets_vanished_pods() -> None:
    async def body() -> None:
        lc = lifecycle()
        lc.on_event("ADDED", pod("a"))
        lc.on_event("ADDED", pod("b"))
        assert len(lc.ipam) == 2
        lc.on_list([pod("b")])
        assert set(lc.pods) == {"uid-b"}
        assert len(lc.ipam) == 1
        await lc.close()
    run(body)


def test_ip_not_released_twice() -> None:
    async def body() -> None:
        lc = lifecycle()
        lc.on_event("ADDED", pod("old"))
        old = lc.pods["uid-old"]
        lc.on_event("MODIFIED", pod("old", deleting=True))
        await until(lambda: old.phase == "Terminated", "Terminated")
        lc.on_event("ADDED", pod("replacement"))
        taken = lc.pods["uid-replacement"].ip
        lc.on_event("DELETED", pod("old"))
        lc.on_event("ADDED", pod("third"))
        assert lc.pods["uid-third"].ip != taken
        await lc.close()
    run(body)


# -- the start sequence's delays ------------------------------------------------------------
def _volume_pod() -> Pod:
    return pod(volumes=[{"name": "tok", "secret": {"secretName": "default-token-x"}}])


@pytest.mark.parametrize(("mount_time", "retry", "expected"), [
    (0.1, 0.3, 0.3),    # mounted before the first retry: started at the first retry
    (0.4, 0.3, 0.6),    # after it: at the second
    (0.6, 0.3, 0.6),    # exactly at a retry
    (0.25, 0.0, 0.25),  # no polling: as soon as mounted
    (0.0, 0.3, 0.0),    # nothing to wait for
])
def test_mount_delay_waits_for_the_volume_poll(mount_time: float, retry: float,
                                               expected: float) -> None:
    lc = lifecycle()
    lc.profile = Profile(start=StartProfile(mount_time=mount_time, mount_retry_period=retry))
    assert lc._mount_delay(_volume_pod()) == pytest.approx(expected)


def test_pod_without_volumes_starts_at_once() -> None:
    lc = lifecycle()
    lc.profile = Profile(start=StartProfile(mount_time=5.0, mount_retry_period=0.3))
    assert lc._mount_delay(pod()) == 0.0


def test_startedat_waits_for_the_volumes_and_ready_for_the_relist() -> None:
    """startTime at the first sync; startedAt only once the volumes are mounted; Ready
    only after the next relist: three distinct instants, in that order."""
    async def body() -> None:
        lc = lifecycle()
        lc.profile = Profile(start=StartProfile(relist_period=0, status_delay=1.1,
                                                mount_time=0.1, mount_retry_period=1.1))
        seen_at = objects.now_seconds()
        lc.on_event("ADDED", _volume_pod())
        record = lc.pods["uid-web-1"]
        assert record.times.started == ""
        await until(lambda: record.times.started != "", "containers started", limit=3.0)
        assert record.phase == "Pending"  # started, but the status does not say so yet
        assert phases(lc, "uid-web-1") == ["Pending"]
        await until(lambda: record.phase == "Running", "Running", limit=3.0)
        status = record.status
        [cs] = status["containerStatuses"]
        ready = {c["type"]: c["lastTransitionTime"] for c in status["conditions"]}
        assert status["startTime"] < cs["state"]["running"]["startedAt"] < ready["Ready"]
        assert ready["Ready"] == ready["ContainersReady"] == record.times.ready_since
        assert seen_at <= status["startTime"]
        await lc.close()
    run(body)


def test_killed_after_start_before_running_keeps_startedat() -> None:
    async def body() -> None:
        lc = lifecycle()
        lc.profile = Profile(start=StartProfile(relist_period=0, status_delay=30.0,
                                                mount_time=0.0),
                             stop=PROFILE.stop)
        lc.on_event("ADDED", pod())
        record = lc.pods["uid-web-1"]
        await until(lambda: record.times.started != "", "containers started")
        lc.on_event("MODIFIED", pod(deleting=True))
        await until(lambda: record.phase == "Terminated", "Terminated")
        [term] = [s["state"]["terminated"] for s in record.status["containerStatuses"]]
        assert term["startedAt"] == record.times.started
        assert record.times.ready_since == ""
        await lc.close()
    run(body)


def test_admitted_pod_keeps_the_schedulers_podscheduled_time() -> None:
    async def body() -> None:
        lc = lifecycle()
        lc.on_event("ADDED", pod(status={"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "True",
             "lastTransitionTime": "2026-11-22T09:59:58Z"}]}))
        status = lc.pods["uid-web-1"].status
        cond = {c["type"]: c["lastTransitionTime"] for c in status["conditions"]}
        assert cond["PodScheduled"] == "2026-11-22T09:59:58Z"
        assert cond["Initialized"] == status["startTime"] != "2026-11-22T09:59:58Z"
        await lc.close()
    run(body)


def test_ready_set_false_by_the_node_controller_is_written_again() -> None:
    async def body() -> None:
        lc = lifecycle()
        lc.on_event("ADDED", pod())
        record = lc.pods["uid-web-1"]
        await until(lambda: record.phase == "Running")
        lc.synced_versions[record.uid] = record.version  # as if the status manager wrote it
        written = record.status
        lc.on_event("MODIFIED", pod(status=written))  # the watch shows our own write
        assert not lc.needs_update(record.uid, record.version)
        # what MarkPodsNotReady leaves: Ready False, ContainersReady untouched
        marked = {**written, "conditions": [
            {**c, "status": "False"} if c["type"] == "Ready" else c
            for c in written["conditions"]]}
        lc.on_event("MODIFIED", pod(status=marked))
        assert lc.needs_update(record.uid, record.version)
        assert record.status == written  # the kubelet's own status, to be written again
        await lc.close()
    run(body)


def adopted_status(ready: str) -> dict[str, Any]:
    since = "2026-11-22T09:00:01Z"
    return {"phase": "Running", "podIP": "10.64.0.4", "startTime": "2026-11-22T09:00:00Z",
            "conditions": [{"type": t, "status": s, "lastTransitionTime": since}
                           for t, s in (("Initialized", "True"), ("Ready", ready),
                                        ("ContainersReady", "True"),
                                        ("PodScheduled", "True"))]}


def test_adopted_pod_marked_not_ready_while_the_kubelet_was_down_gets_ready_again() -> None:
    async def body() -> None:
        lc = lifecycle()
        lc.on_list([pod(status=adopted_status("False"))])
        record = lc.pods["uid-web-1"]
        assert lc.needs_update(record.uid, record.version)
        ready = next(c for c in record.status["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
        assert [c["type"] for c in record.status["conditions"]] == [
            "Initialized", "Ready", "ContainersReady", "PodScheduled"]
        await lc.close()
    run(body)


def test_adopted_pod_marked_not_ready_later_is_reconciled() -> None:
    async def body() -> None:
        lc = lifecycle()
        lc.on_list([pod(status=adopted_status("True"))])
        record = lc.pods["uid-web-1"]
        assert not lc.needs_update(record.uid, record.version)
        lc.on_event("MODIFIED", pod(status=adopted_status("False")))
        assert lc.needs_update(record.uid, record.version)
        await lc.close()
    run(body)


def test_late_update_of_a_pod_this_kubelet_deleted_is_ignored() -> None:
    """Events queued before our DELETE (the graceful delete's, our last status) arrive
    after it: the pod is neither started again nor adopted as found Running."""
    async def body() -> None:
        lc = lifecycle()
        lc.on_event("ADDED", pod())
        record = lc.pods["uid-web-1"]
        await until(lambda: record.phase == "Running")
        late = pod(deleting=True, status={"phase": "Running", "podIP": record.ip})
        lc.deleted("uid-web-1")
        lc.on_event("MODIFIED", late)
        assert "uid-web-1" not in lc.pods and lc.adopted == 0
        assert len(lc.ipam) == 0
        lc.on_event("DELETED", late)
        assert not lc.gone
        # a DELETED that came before our DELETE's answer leaves no tombstone behind
        lc.on_event("ADDED", pod("web-2"))
        lc.on_event("DELETED", pod("web-2"))
        lc.deleted("uid-web-2")
        assert not lc.gone
        await lc.close()
    run(body)


def test_relist_drops_tombstones_of_pods_no_longer_listed() -> None:
    async def body() -> None:
        lc = lifecycle()
        lc.on_event("ADDED", pod())
        lc.deleted("uid-web-1")
        lc.on_list([pod()])                # still listed (terminating): still ignored
        assert "uid-web-1" not in lc.pods and lc.gone == {"uid-web-1"}
        lc.on_list([])
        assert not lc.gone
        await lc.close()
    run(body)


# -- the stage table ----------------------------------------------------------------------
def test_every_stage_has_its_method_and_a_delay() -> None:
    """Each stage names a method and a delay the lifecycle knows (a profile field is a
    number); the selectors use only known needs."""
    stages = [v for v in vars(pods).values() if isinstance(v, Stage)]
    assert len(stages) >= 18

    async def body() -> None:
        lc = lifecycle()
        lc.profile = Profile(start=StartProfile(sandbox_delay=0.3),
                             stop=StopProfile(generation_write=0.2))
        lc.on_event("ADDED", pod())
        record = lc.pods["uid-web-1"]
        for stage in stages:
            assert callable(getattr(lc, "_" + stage.name)), stage
            assert stage.needs in ("", "no status", "view", "running", "backoff"), stage
            if stage.after != "stop.resyncs":  # each of a list: scheduled one by one
                delay = lc._delay(stage, record)
                assert delay is None or isinstance(delay, float | int), stage
        await lc.close()
    run(body)
