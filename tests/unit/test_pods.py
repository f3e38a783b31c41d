"""Pod references and the hollow kubelet's pod state machine, without any network.

The status manager (which would make requests) is never started: the tests look at the
records and the status channel the state machine feeds.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import random
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest

from pykubemark.hollow import objects, pods
from pykubemark.hollow.ipam import Ipam
from pykubemark.hollow.pods import PodLifecycle, Stage, is_job_like, referenced_objects
from pykubemark.hollow.profile import Distribution, Profile, StartProfile, StopProfile
from pykubemark.kube.client import ApiError, Client
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


def lifecycle(refs: Refs | None = None, images: list[str] | None = None,
              profile: Profile = PROFILE) -> PodLifecycle:
    client = Client(KubeConfig(server="https://127.0.0.1:1", ssl_context=None))
    return PodLifecycle(NODE, HOST_IP, Ipam("10.64.0.0/24"), client, profile, on_refs=refs,
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


def test_references_are_watched_from_the_first_sync() -> None:
    """Not on the pod's first sight: the Node authorizer may not know the binding yet
    (a 403 on the watch), and a pod deleted before its first sync is never watched."""
    async def body() -> None:
        refs = Refs()
        start = msgspec.structs.replace(PROFILE.start, first_sync=Distribution(fixed=0.05))
        lc = lifecycle(refs, profile=msgspec.structs.replace(PROFILE, start=start))
        watched = pod(volumes=[{"name": "s", "secret": {"secretName": "tok"}}])
        lc.on_event("ADDED", watched)
        assert refs.calls == []
        await until(lambda: refs.calls, "the secret watched")
        assert refs.calls == [({("secrets", "default", "tok")}, set())]
        gone = pod("web-2", volumes=[{"name": "c", "configMap": {"name": "cfg"}}])
        lc.on_event("ADDED", gone)
        lc.on_event("DELETED", gone)
        await asyncio.sleep(0.1)
        assert len(refs.calls) == 1
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
        # a restarted kubelet (a lifecycle of its own) writes the same pod from scratch
        lc = lifecycle()
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


def test_containers_start_after_the_sandbox_and_its_delay() -> None:
    """With a sandbox status and a containers delay: the sandbox's status first, the
    containers' start (startedAt) later, Ready last; without the delay the containers
    start with the sandbox."""
    async def body(delay: Distribution | None) -> tuple[str, str, str]:
        lc = lifecycle()
        lc.profile = Profile(start=StartProfile(relist_period=0, status_delay=0.01,
                                                mount_time=0, sandbox_status=True,
                                                sandbox_delay=0.01,
                                                containers_delay=delay))
        lc.on_event("ADDED", pod())
        record = lc.pods["uid-web-1"]
        await until(lambda: record.phase == "Running", "Running", limit=5.0)
        times = record.times
        await lc.close()
        return times.sandbox, times.started, times.ready_since

    def apart(a: str, b: str) -> float:
        return (dt.datetime.fromisoformat(b) - dt.datetime.fromisoformat(a)).total_seconds()

    # the statuses carry whole seconds: 1.2 s apart is at least one second apart
    sandbox, started, ready = asyncio.run(body(Distribution(fixed=1.2)))
    assert apart(sandbox, started) >= 1 and apart(started, ready) >= 0
    sandbox, started, _ = asyncio.run(body(None))
    assert apart(sandbox, started) <= 1


def test_without_a_sandbox_status_the_runtimes_delays_add_up() -> None:
    """A release that writes no sandbox status (1.35) with a runtime's delays: two
    status writes (Pending, Running), the containers started after both delays."""
    async def body() -> None:
        lc = lifecycle()
        lc.profile = Profile(start=StartProfile(relist_period=0, status_delay=0.01,
                                                mount_time=0,
                                                sandbox_delay=Distribution(fixed=0.6),
                                                containers_delay=Distribution(fixed=0.6)))
        lc.on_event("ADDED", pod())
        record = lc.pods["uid-web-1"]
        assert lc._delay(pods.STARTED, record) == pytest.approx(1.2)
        await until(lambda: record.phase == "Running", "Running", limit=5.0)
        assert phases(lc, "uid-web-1") == ["Pending", "Running"]
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
        # an update after the DELETED event (out of order) is ignored as well
        lc.on_event("MODIFIED", late)
        assert "uid-web-1" not in lc.pods and lc.adopted == 0
        # a DELETED that came before our DELETE's answer: one tombstone, which expires
        lc.on_event("ADDED", pod("web-2"))
        lc.on_event("DELETED", pod("web-2"))
        lc.deleted("uid-web-2")
        assert list(lc.gone) == ["uid-web-1", "uid-web-2"]
        lc._expire_tombstones(lc.gone["uid-web-1"])
        assert list(lc.gone) == ["uid-web-2"]
        lc._expire_tombstones(lc.gone["uid-web-2"] + 1)
        assert not lc.gone
        await lc.close()
    run(body)


def test_relist_drops_tombstones_of_pods_no_longer_listed() -> None:
    async def body() -> None:
        lc = lifecycle()
        lc.on_event("ADDED", pod())
        lc.deleted("uid-web-1")
        lc.on_list([pod()])                # still listed (terminating): still ignored
        assert "uid-web-1" not in lc.pods and list(lc.gone) == ["uid-web-1"]
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


# -- deletions racing the status manager's requests ----------------------------------------
def racing_pod(i: int) -> dict[str, Any]:
    """Names reused (a StatefulSet's): a GET may find another pod of the same name."""
    return {
        "metadata": {"name": f"p{i % 37}", "namespace": "default", "uid": f"uid-{i}"},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "img"}],
                 "volumes": [{"name": "s", "secret": {"secretName": f"s{i}"}},
                             {"name": "t", "projected": {"sources": [
                                 {"serviceAccountToken": {"path": "t",
                                                          "expirationSeconds": 3600}}]}}]},
        "status": {"phase": "Pending"},
    }


class RacingApi:
    """An apiserver of pods, for the status manager: every answer comes after a random
    delay and an answer may be lost after its request took effect; the watch delivers
    its events in order but late (a DELETED before our DELETE's answer), and — with
    `stale` — sometimes an older update of a pod after its DELETED; `relists` break the
    watch and list again."""

    def __init__(self, rng: random.Random, *, stale: bool, answer: float, lag: float) -> None:
        self.rng, self.stale, self.answer, self.lag = rng, stale, answer, lag
        self.store: dict[str, dict[str, Any]] = {}
        self.last: dict[str, dict[str, Any]] = {}
        self.queue: asyncio.Queue[tuple[str, Any, float]] = asyncio.Queue()
        self.due = 0.0

    def _enqueue(self, kind: str, obj: Any) -> None:
        self.due = max(self.due, asyncio.get_running_loop().time() + self.rng.random() * self.lag)
        self.queue.put_nowait((kind, obj, self.due))

    def emit(self, kind: str, pod: dict[str, Any]) -> None:
        pod = copy.deepcopy(pod)
        uid = pod["metadata"]["uid"]
        self._enqueue(kind, pod)
        if kind != "DELETED":
            self.last[uid] = pod
        elif self.stale and self.rng.random() < 0.3:
            self._enqueue("MODIFIED", self.last[uid])

    def relist(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()
            self.queue.task_done()
        self._enqueue("LIST", copy.deepcopy(list(self.store.values())))

    async def deliver(self, lc: PodLifecycle) -> None:
        while True:
            kind, obj, due = await self.queue.get()
            await asyncio.sleep(max(0.0, due - asyncio.get_running_loop().time()))
            if kind == "LIST":
                lc.on_list([msgspec.convert(o, Pod) for o in obj])
            else:
                lc.on_event(kind, msgspec.convert(obj, Pod))
            self.queue.task_done()

    async def _pod(self, method: str, path: str, uid: str | None = None) -> dict[str, Any]:
        await asyncio.sleep(self.rng.random() * self.answer)
        pod = self.store.get(path.removesuffix("/status"))
        if pod is None:
            raise ApiError(404, b'{"reason": "NotFound"}', method, path)
        if uid is not None and pod["metadata"]["uid"] != uid:
            raise ApiError(409, b'{"reason": "Conflict"}', method, path)
        return pod

    def _lost(self) -> None:
        if self.rng.random() < 0.1:
            raise ConnectionResetError("the answer was lost, the request took effect")

    async def object(self, method: str, path: str, *, fields: Any = None,
                     body: Any = None) -> dict[str, Any]:
        if method == "POST":  # a TokenRequest, refused half of the time
            await asyncio.sleep(self.rng.random() * self.answer)
            if self.rng.random() < 0.5:
                raise ApiError(403, b'{"reason": "Forbidden"}', method, path)
            return {"status": {}}
        pod = await self._pod(method, path)
        return {"metadata": {"uid": pod["metadata"]["uid"]}, "status": pod["status"]}

    async def get(self, path: str, *args: Any, **kwargs: Any) -> bytes:
        await self._pod("GET", path)
        return b"{}"

    async def patch(self, path: str, body: Any, *args: Any, **kwargs: Any) -> bytes:
        pod = await self._pod("PATCH", path, body["metadata"]["uid"])
        pod["status"].update(body["status"])
        self.emit("MODIFIED", pod)
        self._lost()
        return b"{}"

    async def delete(self, path: str, body: Any, *args: Any, **kwargs: Any) -> bytes:
        pod = await self._pod("DELETE", path, body["preconditions"]["uid"])
        del self.store[path]
        self.emit("DELETED", pod)
        self._lost()
        return b"{}"


async def race(seed: int, pods: int, *, stale: bool, relists: bool) -> dict[str, int]:
    """Pods created, then deleted gracefully (the kubelet's DELETE ends them) or forcibly
    (by someone else) at random moments; heartbeats down for a while now and then.
    Returns what each per-pod structure of the lifecycle still holds at the end."""
    rng = random.Random(seed)
    api = RacingApi(rng, stale=stale, answer=rng.choice((0.001, 0.01)),
                    lag=rng.choice((0.001, 0.02)))
    watched: dict[Any, int] = {}
    admitted: set[Any] = set()  # each pod references a secret of its own
    twice = 0

    def on_refs(added: set[Any], removed: set[Any]) -> None:
        nonlocal twice
        twice += bool(added & admitted)
        admitted.update(added)
        for key in added:
            watched[key] = watched.get(key, 0) + 1
        for key in removed:
            watched[key] -= 1
            if not watched[key]:
                del watched[key]

    stop = StopProfile(kill_delay=0.002, resyncs=[0.0, 0.003], delete_after=0.006,
                       confirm_after=0.001)
    profile = Profile(start=StartProfile(relist_period=0, status_delay=0.001), stop=stop)
    lc = PodLifecycle(NODE, HOST_IP, Ipam("10.64.0.0/16"), api, profile,  # type: ignore[arg-type]
                      on_refs=on_refs)
    loops = [asyncio.create_task(api.deliver(lc)), asyncio.create_task(lc.run_status_manager())]

    async def disturb() -> None:
        while True:
            await asyncio.sleep(rng.random() * 0.2)
            if relists and rng.random() < 0.5:
                api.relist()
            else:
                lc.up.clear()
                await asyncio.sleep(rng.random() * 0.05)
                lc.up.set()

    async def one(i: int) -> None:
        await asyncio.sleep(rng.random() * 0.3)
        p = racing_pod(i)
        path = f"/api/v1/namespaces/default/pods/{p['metadata']['name']}"
        while path in api.store:
            await asyncio.sleep(0.005)
        api.store[path] = p
        api.emit("ADDED", p)
        await asyncio.sleep(rng.random() * 0.03)
        graceful = rng.random() < 0.6
        if graceful:
            p["metadata"]["deletionTimestamp"] = "2026-11-22T10:10:00Z"
            api.emit("MODIFIED", p)
            await asyncio.sleep(rng.random() * 0.02)
        if api.store.get(path) is p and (not graceful or rng.random() < 0.3):
            del api.store[path]
            api.emit("DELETED", p)

    disturbing = asyncio.create_task(disturb())
    await asyncio.gather(*(one(i) for i in range(pods)))
    disturbing.cancel()
    lc.up.set()
    await api.queue.join()
    await until(lambda: not lc.pods and not lc._background, "every pod forgotten", 10)
    await asyncio.sleep(GONE_TTL_IN_TEST + 3 * BATCH_IN_TEST)  # tombstones expire
    for task in loops:
        task.cancel()
    left = {"pods": len(lc.pods), "refs": len(lc.refs), "synced_versions": len(lc.synced_versions),
            "gone": len(lc.gone), "ips": len(lc.ipam), "background": len(lc._background),
            "watched": len(watched), "admitted twice": twice}
    await lc.close()
    return left


# A tombstone must outlive the latest event on its way; 0.05 s did not when a loaded CI
# machine held the event loop for tens of milliseconds (a list re-admitted a pod).
GONE_TTL_IN_TEST, BATCH_IN_TEST = 0.4, 0.02


@pytest.mark.parametrize(("stale", "relists"), [(False, True), (True, False), (True, True)])
def test_deletions_racing_requests_and_late_events_leave_nothing_behind(
        monkeypatch: pytest.MonkeyPatch, stale: bool, relists: bool) -> None:
    """Whatever the order of answers and events, once every pod is deleted (and a
    deleted pod's tombstone has expired) no per-pod structure holds anything, and no pod
    was admitted twice (an update after its DELETED event once re-admitted it, and the
    404 of its next status write left a tombstone for the life of the node)."""
    monkeypatch.setattr(pods, "BATCH_PERIOD", BATCH_IN_TEST)
    monkeypatch.setattr(pods, "TOKEN_RETRY_INITIAL", 0.005)
    monkeypatch.setattr(pods, "GONE_TTL", GONE_TTL_IN_TEST, raising=False)
    for seed in range(2):
        left = asyncio.run(race(seed, 120, stale=stale, relists=relists))
        assert left == dict.fromkeys(left, 0), seed


def test_pods_on_a_shared_runtime_wait_their_turn_and_a_deleted_one_leaves_it() -> None:
    """With ``runtime_slots``: every starting pod's work is in the node's one runtime at
    once; one deleted before it started leaves the runtime and never starts."""
    async def body() -> None:
        lc = lifecycle(profile=Profile(start=StartProfile(
            relist_period=0, status_delay=0.01, mount_time=0, sandbox_status=True,
            sandbox_delay=Distribution(fixed=0.2), containers_delay=Distribution(fixed=0.1),
            runtime_slots=1), stop=PROFILE.stop))
        for i in range(3):
            lc.on_event("ADDED", pod(f"web-{i}"))
        await until(lambda: lc.runtime is not None and len(lc.runtime) == 3,
                    "three sandboxes in the runtime")
        lc.on_event("MODIFIED", pod("web-0", deleting=True))
        assert lc.runtime is not None and len(lc.runtime) == 2
        await until(lambda: all(lc.pods[f"uid-web-{i}"].phase == "Running" for i in (1, 2)),
                    "the others Running")
        assert lc.pods["uid-web-0"].times.started == ""
        assert len(lc.runtime) == 0
        await lc.close()
    run(body)


def test_a_queued_runtime_makes_sandboxes_in_turn_and_starts_containers_beside_them() -> None:
    """``runtime_order: queue``: the sandboxes one after another in the order the pods came;
    the first pod's containers start while the last one's sandbox still waits its turn."""
    async def body() -> None:
        lc = lifecycle(profile=Profile(start=StartProfile(
            relist_period=0, status_delay=0.01, mount_time=0, sandbox_status=True,
            sandbox_delay=Distribution(fixed=0.15), containers_delay=Distribution(fixed=0.05),
            runtime_slots=1, runtime_order="queue"), stop=PROFILE.stop))
        for i in range(3):
            lc.on_event("ADDED", pod(f"web-{i}"))
        await until(lambda: lc.runtime is not None and len(lc.runtime) == 3,
                    "three sandboxes in the queue")
        await until(lambda: lc.pods["uid-web-0"].phase == "Running", "the first Running")
        assert lc.runtime is not None and len(lc.runtime) >= 1  # the last one's sandbox
        assert lc.pods["uid-web-2"].phase == "Pending"
        await until(lambda: all(r.phase == "Running" for r in lc.pods.values()), "all Running")
        assert len(lc.runtime) == 0
        await lc.close()
    run(body)


def test_a_runtime_order_that_does_not_exist_is_refused() -> None:
    with pytest.raises(ValueError, match="runtime_order"):
        StartProfile(runtime_order="lifo")


def test_the_shared_runtimes_work_is_the_profiles_delays() -> None:
    """Without a sandbox status (1.35) one job holds both delays' work."""
    async def body() -> None:
        lc = lifecycle(profile=Profile(start=StartProfile(
            relist_period=0, status_delay=0.01, mount_time=0,
            sandbox_delay=Distribution(fixed=0.6), containers_delay=Distribution(fixed=0.6),
            runtime_slots=2)))
        lc.on_event("ADDED", pod())
        await until(lambda: lc.runtime is not None and len(lc.runtime) == 1, "in the runtime")
        assert lc.runtime is not None
        assert lc.runtime._sharing.next_finish() == pytest.approx(
            lc.runtime._sharing.at + 1.2)
        await lc.close()
    run(body)


def test_a_sync_that_started_containers_relists_the_pod_at_once_in_later_kubelets() -> None:
    """PLEGOnDemandRelist: Running is written the status delay after the start; without
    it, after the next periodic relist (up to a period later)."""
    async def body() -> None:
        lc = lifecycle()
        lc.on_event("ADDED", pod())
        record = lc.pods["uid-web-1"]
        start = StartProfile(relist_period=1.0, status_delay=0.2)
        lc.profile = Profile(start=start)
        delays = {lc._delay(pods.RUNNING, record) for _ in range(20)}
        assert all(0.2 <= d <= 1.2 for d in delays) and len(delays) > 1
        lc.profile = Profile(start=msgspec.structs.replace(start, relist_on_sync=True))
        assert lc._delay(pods.RUNNING, record) == 0.2
        assert lc._delay(pods.RESTARTED, record) == 0.2
        assert lc._delay(pods.FINISHED, record) != 0.2  # an exit is seen by the periodic one
        await lc.close()
    run(body)


@pytest.mark.parametrize("relist_work", [0.3, None])
def test_the_relist_after_a_start_waits_for_a_shared_runtime_when_it_costs_time(
        relist_work: float | None) -> None:
    """``relist_work``: the relist that the start asked for is the runtime's work too, so
    Running waits for it beside the pods still starting; without it, only the status
    delay."""
    async def body() -> None:
        lc = lifecycle(profile=Profile(start=StartProfile(
            relist_period=5.0, relist_on_sync=True, status_delay=0.01, mount_time=0,
            sandbox_status=True, sandbox_delay=Distribution(fixed=0.02),
            containers_delay=Distribution(fixed=0.02), runtime_slots=1,
            relist_work=None if relist_work is None else Distribution(fixed=relist_work)),
            stop=PROFILE.stop))
        lc.on_event("ADDED", pod())
        record = lc.pods["uid-web-1"]
        await until(lambda: record.times.started != "", "the containers started")
        relisting = lambda: lc.runtime is not None and len(lc.runtime) == 1  # noqa: E731
        if relist_work is not None:
            await until(lambda: relisting() and record.phase == "Pending", "the relist's turn")
        await until(lambda: record.phase == "Running", "Running")
        assert lc.runtime is not None and len(lc.runtime) == 0
        await lc.close()
    run(body)


def test_the_relist_takes_no_runtime_time_where_the_sync_does_not_ask_for_it() -> None:
    """Before PLEGOnDemandRelist the periodic relist finds the start: no runtime work."""
    lc = lifecycle(profile=Profile(start=StartProfile(
        runtime_slots=1, relist_work=Distribution(fixed=0.1))))
    assert not lc._in_shared_runtime(pods.RUNNING)
    assert lc._in_shared_runtime(pods.STARTED)
    lc.profile = Profile(start=StartProfile(runtime_slots=1, relist_on_sync=True,
                                            relist_work=Distribution(fixed=0.1)))
    assert lc._in_shared_runtime(pods.RUNNING)
