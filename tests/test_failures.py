"""Failing pods on hollow nodes, judged from the apiserver's side: a crash loop's restart
count, back-off and status fields, an image that cannot be pulled, a flapping readiness
probe seen by the real endpoints controller, and a bad failures rule refused."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import CLI, Cluster, Fleet, run_cli, wait_for
from test_cluster import one_line_error

NS = "failures"
PREFIX = "fail"
FLEET_LABEL = "pykubemark.io/fleet=failures"


def _pod(name: str, node: str, annotations: dict[str, str], labels: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "annotations": annotations,
                     "labels": labels},
        "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
                 "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.2"}]},
    }


@pytest.fixture(scope="module")
def fleet(cluster: Cluster, tmp_path_factory) -> Iterator[Fleet]:
    profile = tmp_path_factory.mktemp("failures") / "profile.yaml"
    profile.write_text(f"extra_labels: {{{FLEET_LABEL.replace('=', ': ')}}}\n")
    fleet = Fleet(cluster, 2, PREFIX, "--events", "--delete-nodes-on-exit", "--profile",
                  str(profile))
    try:
        fleet.wait_ready()
        cluster.create_namespace(NS)
        yield fleet
    finally:
        cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)
        code = fleet.stop()
    assert code == 0, fleet.log.read_text()[-2000:]


def _time(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def observed(cluster: Cluster, fleet: Fleet) -> dict[str, Any]:
    """Three failing pods and a Service, polled from the apiserver until the crash loop
    has restarted three times and the image pull has backed off: every distinct status
    and Endpoints seen (the crash loop's only up to its third restart)."""
    pods = [
        _pod("crasher", f"{PREFIX}-0", {"pykubemark.io/failure": "crashloop",
                                         "pykubemark.io/exit-code": "3",
                                         "pykubemark.io/run-seconds": "1"}, {"app": "crasher"}),
        _pod("badimage", f"{PREFIX}-1", {"pykubemark.io/failure": "imagepull"},
             {"app": "badimage"}),
        _pod("flappy", f"{PREFIX}-1", {"pykubemark.io/failure": "unready",
                                        "pykubemark.io/ready-flap-seconds": "4"},
             {"app": "flappy"}),
    ]
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "flappy", "namespace": NS},
               "spec": {"selector": {"app": "flappy"}, "ports": [{"port": 80}]}}
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [*pods, service]}))
    seen: dict[str, list[dict]] = {"crasher": [], "badimage": [], "flappy": [], "endpoints": []}

    def restarted(pod: dict) -> bool:
        statuses = pod["status"].get("containerStatuses") or [{}]
        return statuses[0].get("restartCount", 0) >= 3 and "running" in statuses[0]["state"]

    def backed_off(pod: dict) -> bool:
        statuses = pod["status"].get("containerStatuses") or [{}]
        return statuses[0].get("state", {}).get("waiting", {}).get("reason") == \
            "ImagePullBackOff"

    def poll() -> bool:
        items = cluster.get_json("pods", "-n", NS)["items"]
        for pod in items:
            history = seen[pod["metadata"]["name"]]
            if history and pod["metadata"]["name"] == "crasher" and restarted(history[-1]):
                continue
            if not history or history[-1]["status"] != pod["status"]:
                history.append(pod)
        endpoints = cluster.get_json("endpoints", "flappy", "-n", NS)
        subsets = endpoints.get("subsets") or []
        if not seen["endpoints"] or seen["endpoints"][-1] != subsets:
            seen["endpoints"].append(subsets)
        return (any(restarted(p) for p in seen["crasher"])
                and any(backed_off(p) for p in seen["badimage"]))

    wait_for("the crash-looping pod restarted three times and the image pull backed off",
             poll, timeout=300, interval=1)
    return seen


def _container(pod: dict) -> dict:
    return pod["status"]["containerStatuses"][0]


def test_crash_loop_restarts_on_the_kubelets_backoff(observed: dict[str, Any]) -> None:
    history = observed["crasher"]
    counts = [_container(p)["restartCount"] for p in history if p["status"].get(
        "containerStatuses")]
    assert counts == sorted(counts) and counts[-1] == 3
    # each restart's startedAt against the previous instance's finishedAt (lastState)
    gaps: dict[int, float] = {}
    for pod in history:
        if not pod["status"].get("containerStatuses"):
            continue  # scheduled, before the kubelet's first status
        c = _container(pod)
        if "running" in c["state"] and c["restartCount"] > 0:
            finished = c["lastState"]["terminated"]["finishedAt"]
            gaps[c["restartCount"]] = (_time(c["state"]["running"]["startedAt"])
                                       - _time(finished)).total_seconds()
    assert set(gaps) == {1, 2, 3}
    # no back-off before the first restart; then 10 s, then 20 s (second precision: -1)
    assert gaps[2] >= 10 - 1
    assert gaps[3] >= 20 - 1
    assert gaps[3] > gaps[1]


def test_crash_loop_status_fields_are_the_kubelets(observed: dict[str, Any]) -> None:
    history = observed["crasher"]
    uid = history[-1]["metadata"]["uid"]
    waiting = [p for p in history if p["status"].get("containerStatuses")
               and _container(p)["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff"]
    assert waiting, [_container(p)["state"] for p in history]
    messages = {_container(p)["state"]["waiting"]["message"] for p in waiting}
    expected = {f"back-off {d} restarting failed container=c pod=crasher_{NS}({uid})"
                for d in ("10s", "20s")}
    assert messages <= expected and len(messages) >= 1
    for pod in waiting:
        c = _container(pod)
        assert pod["status"]["phase"] == "Running"
        assert (c["ready"], c["started"]) == (False, False)
        term = c["lastState"]["terminated"]
        assert set(term) == {"exitCode", "reason", "startedAt", "finishedAt", "containerID"}
        assert (term["exitCode"], term["reason"]) == (3, "Error")
        assert term["containerID"] == c["containerID"]
        assert _time(term["startedAt"]) <= _time(term["finishedAt"])
        ready = {x["type"]: x for x in pod["status"]["conditions"]}["Ready"]
        assert (ready["status"], ready["reason"]) == ("False", "ContainersNotReady")
    running = [_container(p) for p in history if p["status"].get("containerStatuses")
               and "running" in _container(p)["state"]]
    ids = {c["restartCount"]: c["containerID"] for c in running}
    assert len(set(ids.values())) == len(ids) == 4  # a new container per restart


def test_crash_loop_events_are_posted_as_the_kubelet_posts_them(cluster: Cluster,
                                                                observed: dict[str, Any]) -> None:
    events = cluster.get_json("events", "-n", NS, "--field-selector",
                              "involvedObject.name=crasher")["items"]
    backoff = [e for e in events if e["reason"] == "BackOff"]
    assert backoff, [e["reason"] for e in events]
    for event in backoff:
        assert (event["type"], event["message"]) == ("Warning",
                                                     "Back-off restarting failed container")
        assert event["source"] == {"component": "kubelet", "host": f"{PREFIX}-0"}
        assert event["involvedObject"]["fieldPath"] == "spec.containers{c}"
    assert sum(e["reason"] == "Started" for e in events) >= 4


def test_image_pull_failure_backs_off_pending(observed: dict[str, Any]) -> None:
    history = [p for p in observed["badimage"] if p["status"].get("containerStatuses")]
    reasons = [_container(p)["state"]["waiting"]["reason"] for p in history]
    assert "ErrImagePull" in reasons and "ImagePullBackOff" in reasons
    assert {p["status"]["phase"] for p in history} == {"Pending"}
    backoff = next(_container(p) for p in history
                   if _container(p)["state"]["waiting"]["reason"] == "ImagePullBackOff")
    assert backoff["state"]["waiting"]["message"] == \
        'Back-off pulling image "registry.k8s.io/pause:3.2"'
    assert (backoff["imageID"], backoff["restartCount"]) == ("", 0)


def test_flapping_readiness_churns_the_endpoints(observed: dict[str, Any]) -> None:
    ip = next(p["status"]["podIP"] for p in observed["flappy"] if p["status"].get("podIP"))
    ready_seen = [any(a["ip"] == ip for s in subsets for a in s.get("addresses", []))
                  for subsets in observed["endpoints"] if subsets]
    not_ready_seen = [any(a["ip"] == ip for s in subsets for a in s.get("notReadyAddresses", []))
                      for subsets in observed["endpoints"] if subsets]
    assert any(ready_seen) and any(not_ready_seen)
    changes = sum(a != b for a, b in itertools.pairwise(ready_seen))
    assert changes >= 2
    # the scheduler's PodScheduled alone until the kubelet's first status
    conditions = [ready for p in observed["flappy"]
                  if (ready := {c["type"]: c["status"]
                                for c in p["status"].get("conditions", [])}.get("Ready"))]
    assert "True" in conditions and conditions.count("False") >= 2


def test_bad_failures_rule_is_one_line(cluster: Cluster, tmp_path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text("failures:\n  rules:\n  - failure: explode\n    weight: 0.5\n")
    line = one_line_error(run_cli("hollow", "--kubeconfig", cluster.kubeconfig, "--nodes", "1",
                                  "--profile", str(profile), check=False))
    assert "failures" in line and "explode" in line


def test_failures_scenario_makes_its_pods_fail(cluster: Cluster, fleet: Fleet, tmp_path) -> None:
    """The built-in scenario's failures reach the hollow nodes as annotations only."""
    out = tmp_path / "run"
    settings = {"pods_per_node": 2, "crash_fraction": 0.5, "flap_fraction": 0.5,
                "failing_size": 2, "crash_run_seconds": 1, "flap_period": 3,
                "hold_seconds": 40}
    proc = subprocess.Popen(
        [*CLI, "run", "failures", "--cluster", cluster.name, "--out", str(out), "--quiet",
         "--node-selector", FLEET_LABEL,
         *(arg for k, v in settings.items() for arg in ("--set", f"{k}={v}"))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[str, set] = {"restarts": set(), "ready": set()}

    def failing() -> bool:
        crashing = cluster.get_json("pods", "-A", "-l", "pykubemark.io/group=crashing")["items"]
        for pod in crashing:
            for c in pod["status"].get("containerStatuses") or []:
                seen["restarts"].add(c["restartCount"])
        flapping = cluster.get_json("pods", "-A", "-l", "pykubemark.io/group=flapping")["items"]
        for pod in flapping:
            for c in pod["status"].get("conditions") or []:
                if c["type"] == "Ready":
                    seen["ready"].add(c["status"])
        return max(seen["restarts"], default=0) >= 2 and seen["ready"] == {"True", "False"}

    try:
        wait_for("crash loops and flapping readiness", failing, timeout=240, interval=1)
        _, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.send_signal(2)
            proc.communicate(timeout=120)
    assert proc.returncode in (0, 1), stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [p["name"] for p in summary["phases"]] == ["saturation", "failing", "cleanup"]
    assert not cluster.kubectl("get", "namespaces", "-l",
                               f"pykubemark.io/run={summary['run_id']}", "-o", "name").split()
