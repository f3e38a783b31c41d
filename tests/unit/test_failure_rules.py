"""Failures as data: the kubelet's back-off, rule selection, and failing pods' statuses.

The state machine runs on real asyncio timers with a profile whose periods are scaled
down (as in test_pods.py); nothing here talks to an apiserver.
"""

from __future__ import annotations

import asyncio
import random
import statistics
from pathlib import Path
from typing import Any

import msgspec
import pytest
from test_pods import HOST_IP, NODE, pod, run, until

from pykubemark.errors import UserError
from pykubemark.hollow import failures
from pykubemark.hollow.failures import Backoff, go_duration, plan_for, sample
from pykubemark.hollow.ipam import Ipam
from pykubemark.hollow.pods import PodLifecycle
from pykubemark.hollow.profile import (
    Distribution,
    FailureProfile,
    FailureRule,
    Profile,
    StartProfile,
    StopProfile,
    load_profile,
)
from pykubemark.kube.client import Client
from pykubemark.kube.config import KubeConfig

FAST = Profile(
    start=StartProfile(relist_period=0, status_delay=0.005, job_run_seconds=0.01),
    stop=StopProfile(kill_delay=0.01, resyncs=[0.02], delete_after=0.05),
    failures=FailureProfile(backoff_initial=0.05, backoff_max=0.2, retry_period=0.02,
                            retry_jitter=0.0, pull_seconds=0.005, run_seconds=0.01),
)
UID = "uid-web-1"


def lifecycle(profile: Profile = FAST) -> tuple[PodLifecycle, list[tuple[str, str, str]]]:
    client = Client(KubeConfig(server="https://127.0.0.1:1", ssl_context=None))
    lc = PodLifecycle(NODE, HOST_IP, Ipam("10.64.0.0/24"), client, profile)
    events: list[tuple[str, str, str]] = []

    def record(_record: Any, reason: str, message: str, _container: str,
               kind: str = "Normal") -> None:
        events.append((kind, reason, message))

    lc._event = record  # type: ignore[method-assign]
    return lc, events


def statuses(lc: PodLifecycle) -> list[dict[str, Any]]:
    return [s for u, _, s in lc.channel if u == UID and s]


def container(status: dict[str, Any]) -> dict[str, Any]:
    return status["containerStatuses"][0]


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


# -- client-go's flowcontrol.Backoff, as the kubelet uses it --------------------------------
def test_backoff_doubles_to_the_cap_from_the_second_exit() -> None:
    b = Backoff(10, 300)
    assert not b.in_backoff_since(0.0, 0.5)  # first exit: restarted at once
    b.next(0.0, 1.0)
    assert b.delay == 10
    exits = [20.0]
    delays = []
    now = 20.0
    for _ in range(7):
        exit_at = now
        assert b.in_backoff_since(exit_at, exit_at + b.delay - 0.1)
        assert not b.in_backoff_since(exit_at, exit_at + b.delay)
        now = exit_at + b.delay
        b.next(exit_at, now)
        delays.append(b.delay)
        now += 5  # runs 5 s, exits again
        exits.append(now)
    assert delays == [20, 40, 80, 160, 300, 300, 300]


def test_backoff_starts_over_after_running_twice_the_maximum() -> None:
    b = Backoff(10, 300)
    b.next(0.0, 0.0)
    b.next(5.0, 15.0)
    assert b.delay == 20
    exit_at = 15.0 + 601  # ran more than 10 minutes since the last restart
    assert not b.in_backoff_since(exit_at, exit_at)
    b.next(exit_at, exit_at)
    assert b.delay == 10


def test_image_backoff_counts_from_the_last_failed_pull() -> None:
    b = Backoff(10, 300)
    assert not b.in_backoff_since_update(0.0)
    b.next(1.0, 1.0)
    assert b.in_backoff_since_update(10.9)
    assert not b.in_backoff_since_update(11.0)


@pytest.mark.parametrize(("seconds", "text"), [
    (10, "10s"), (20, "20s"), (80, "1m20s"), (160, "2m40s"), (300, "5m0s"),
    (0.05, "50ms"), (2.5, "2.5s"), (3600, "1h0m0s"),
])
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


# -- distributions and rules ------------------------------------------------------------
def test_distributions() -> None:
    rng = random.Random(7)
    assert sample(Distribution(fixed=2.0), rng) == 2.0
    draws = [sample(Distribution(uniform=[1.0, 3.0]), rng) for _ in range(500)]
    assert min(draws) >= 1.0 and max(draws) <= 3.0
    draws = sorted(sample(Distribution(lognormal={"p50": 1.0, "p99": 10.0}), rng)
                   for _ in range(20000))
    assert statistics.median(draws) == pytest.approx(1.0, rel=0.05)
    assert draws[int(0.99 * len(draws))] == pytest.approx(10.0, rel=0.15)


def _rules(*rules: FailureRule) -> FailureProfile:
    return FailureProfile(rules=list(rules))


def test_rules_match_namespace_and_labels_first_match_wins() -> None:
    rng = random.Random(1)
    profile = _rules(
        FailureRule(failure="imagepull", namespaces=["other"]),
        FailureRule(failure="crashloop", labels={"app": "web"}, exit_code=2),
        FailureRule(failure="unready"),
    )
    web = msgspec.structs.replace(pod(), metadata=msgspec.structs.replace(
        pod().metadata, labels={"app": "web"}))
    plan = plan_for(web, profile, rng)
    assert (plan.failure, plan.code()) == ("crashloop", 2)
    assert plan_for(pod(), profile, rng).failure == "unready"


def test_weight_chooses_a_stable_share_of_pods() -> None:
    rng = random.Random(1)
    profile = _rules(FailureRule(failure="crashloop", weight=0.25))
    pods = [pod(f"p{i}") for i in range(2000)]
    chosen = [plan_for(p, profile, rng).failure == "crashloop" for p in pods]
    assert 0.2 < sum(chosen) / len(chosen) < 0.3
    assert chosen == [plan_for(p, profile, rng).failure == "crashloop" for p in pods]
    assert plan_for(pod(), _rules(FailureRule(failure="crashloop", weight=0)), rng).failure \
        == "none"


def test_annotations_override_rules_and_bad_ones_are_ignored() -> None:
    rng = random.Random(1)
    profile = _rules(FailureRule(failure="crashloop",
                                 run_seconds=Distribution(fixed=5.0),
                                 start_delay=Distribution(fixed=2.0)))
    plan = plan_for(pod(annotations={"pykubemark.io/failure": "oomkilled",
                                     "pykubemark.io/run-seconds": "1.5",
                                     "pykubemark.io/start-delay": "soon"}), profile, rng)
    assert (plan.failure, plan.run_seconds, plan.start_delay) == ("oomkilled", 1.5, 2.0)
    assert (plan.code(), plan.exit_reason(plan.code())) == (137, "OOMKilled")
    plan = plan_for(pod(annotations={"pykubemark.io/failure": "explode"}), profile, rng)
    assert plan.failure == "crashloop"


@pytest.mark.parametrize(("yaml", "word"), [
    ("failures:\n  rules:\n  - failure: explode\n", "explode"),
    ("failures:\n  rules:\n  - failure: crashloop\n    weight: 2\n", "weight"),
    ("failures:\n  rules:\n  - failure: crashloop\n    colour: red\n", "colour"),
    ("failures:\n  rules:\n  - start_delay: {lognormal: {p50: 5, p99: 1}}\n", "p50"),
    ("failures:\n  rules:\n  - start_delay: {fixed: 1, uniform: [1, 2]}\n", "exactly one"),
    ("failures:\n  backoff_initial: 0\n", "backoff_initial"),
])
def test_bad_failures_are_refused_in_one_line(tmp_path: Path, yaml: str, word: str) -> None:
    path = tmp_path / "profile.yaml"
    path.write_text(yaml)
    with pytest.raises(UserError) as info:
        load_profile(path)
    assert word in str(info.value)
    assert "\n" not in str(info.value)


# -- failing pods through the state machine ------------------------------------------------
def test_crash_loop_restarts_with_the_kubelets_backoff() -> None:
    async def body() -> None:
        lc, events = lifecycle()
        p = pod(annotations={"pykubemark.io/failure": "crashloop",
                             "pykubemark.io/exit-code": "3"})
        lc.on_event("ADDED", p)
        record = lc.pods[UID]
        await until(lambda: record.view is not None and record.view.restart_count >= 4,
                    "four restarts")
        seen = statuses(lc)
        assert {s["phase"] for s in seen} <= {"Pending", "Running"}
        waiting = [container(s) for s in seen if "waiting" in container(s)["state"]
                   and container(s)["state"]["waiting"]["reason"] == "CrashLoopBackOff"]
        messages = [w["state"]["waiting"]["message"] for w in waiting]
        desc = f"pod=web-1_default({UID})"
        # no back-off before the first restart; then 50 ms doubling to the 200 ms cap
        assert [m.split()[1] for m in dict.fromkeys(messages)] == ["50ms", "100ms", "200ms"]
        assert all(m.endswith(f"restarting failed container=c {desc}") for m in messages)
        for w in waiting:
            assert w["ready"] is False and w["started"] is False
            term = w["lastState"]["terminated"]
            assert (term["exitCode"], term["reason"]) == (3, "Error")
            assert term["containerID"] == w["containerID"]
            assert term["startedAt"] <= term["finishedAt"]
        waiting_pods = [s for s in seen if "waiting" in container(s)["state"]
                        and container(s)["restartCount"] > 0]
        assert all(condition(s, "Ready")["status"] == "False" for s in waiting_pods)
        assert all(condition(s, "Ready")["reason"] == "ContainersNotReady"
                   for s in waiting_pods)
        counts = [container(s)["restartCount"] for s in seen]
        assert counts == sorted(counts) and counts[-1] >= 3
        running = [container(s) for s in seen if "running" in container(s)["state"]]
        restarted = [c for c in running if c["restartCount"] > 0]
        assert restarted and all(c["ready"] and c["lastState"]["terminated"] for c in restarted)
        ids = {c["containerID"] for c in running}
        assert len(ids) == len({c["restartCount"] for c in running})  # one id per instance
        reasons = [r for _, r, _ in events]
        assert ("Warning", "BackOff", "Back-off restarting failed container") in events
        assert reasons.count("Started") >= 4
        await lc.close()
    run(body)


def test_crash_loop_pod_deleted_while_backing_off() -> None:
    async def body() -> None:
        lc, _ = lifecycle(msgspec.structs.replace(FAST, failures=msgspec.structs.replace(
            FAST.failures, backoff_initial=30.0, backoff_max=60.0)))
        lc.on_event("ADDED", pod(annotations={"pykubemark.io/failure": "crashloop"}))
        record = lc.pods[UID]
        await until(lambda: record.reason is not None, "backing off")
        lc.on_event("MODIFIED", pod(deleting=True))
        await until(lambda: record.deletable, "deletable")
        last = container(record.status)
        assert set(last["state"]) == {"terminated"}
        assert last["restartCount"] == 1
        assert record.status["phase"] == "Running"
        assert len(lc.ipam) == 0
        await lc.close()
    run(body)


@pytest.mark.parametrize(("restart", "failure", "code", "phase", "reason"), [
    ("Never", "oomkilled", None, "Failed", "OOMKilled"),
    ("Never", "crashloop", "4", "Failed", "Error"),
    ("OnFailure", "none", "0", "Succeeded", "Completed"),
])
def test_jobs_end_as_their_restart_policy_says(restart: str, failure: str, code: str | None,
                                              phase: str, reason: str) -> None:
    async def body() -> None:
        lc, _ = lifecycle()
        annotations = {"pykubemark.io/failure": failure}
        if code is not None:
            annotations["pykubemark.io/exit-code"] = code
        lc.on_event("ADDED", pod(restart=restart, annotations=annotations))
        record = lc.pods[UID]
        await until(lambda: record.phase == phase, phase)
        term = container(record.status)["state"]["terminated"]
        assert term["reason"] == reason
        assert term["exitCode"] == (int(code) if code is not None else 137)
        assert container(record.status)["restartCount"] == 0
        await lc.close()
    run(body)


def test_on_failure_restarts_a_failed_container() -> None:
    async def body() -> None:
        lc, _ = lifecycle()
        lc.on_event("ADDED", pod(restart="OnFailure", annotations={
            "pykubemark.io/exit-code": "1"}))
        record = lc.pods[UID]
        await until(lambda: record.view is not None and record.view.restart_count >= 2,
                    "restarted")
        assert record.phase == "Running"
        assert record.status["phase"] == "Running"
        await lc.close()
    run(body)


def test_image_pull_failure_backs_off_and_stays_pending() -> None:
    async def body() -> None:
        lc, events = lifecycle()
        lc.on_event("ADDED", pod(annotations={"pykubemark.io/failure": "imagepull"}))
        record = lc.pods[UID]
        await until(lambda: any("waiting" in container(s)["state"] and container(s)["state"]
                                ["waiting"]["reason"] == "ImagePullBackOff"
                                for s in statuses(lc)), "ImagePullBackOff")
        seen = statuses(lc)
        reasons = list(dict.fromkeys(container(s)["state"]["waiting"]["reason"] for s in seen))
        assert reasons == ["ContainerCreating", "ErrImagePull", "ImagePullBackOff"]
        assert {s["phase"] for s in seen} == {"Pending"}
        for s in seen:
            c = container(s)
            assert (c["imageID"], c["ready"], c["restartCount"]) == ("", False, 0)
            assert "containerID" not in c
        pulled = [s for s in seen if container(s)["state"]["waiting"]["reason"] == "ErrImagePull"]
        assert "pull access denied for registry.k8s.io/pause" in \
            container(pulled[0])["state"]["waiting"]["message"]
        kinds = {(k, r) for k, r, _ in events}
        assert {("Normal", "Pulling"), ("Warning", "Failed"), ("Normal", "BackOff")} <= kinds
        assert ("Warning", "Failed", "Error: ImagePullBackOff") in events
        assert record.view is not None and record.view.running_since == ""
        await lc.close()
    run(body)


def test_unready_pod_runs_but_is_never_ready() -> None:
    async def body() -> None:
        lc, _ = lifecycle()
        lc.on_event("ADDED", pod(annotations={"pykubemark.io/failure": "unready"}))
        record = lc.pods[UID]
        await until(lambda: record.phase == "Running", "Running")
        await asyncio.sleep(0.05)
        status = record.status
        assert status["phase"] == "Running"
        assert condition(status, "Ready")["status"] == "False"
        assert condition(status, "ContainersReady")["status"] == "False"
        c = container(status)
        assert c["state"]["running"]["startedAt"] and c["started"] is True
        assert c["ready"] is False
        await lc.close()
    run(body)


def test_flapping_readiness_changes_ready_each_period() -> None:
    async def body() -> None:
        lc, events = lifecycle()
        lc.on_event("ADDED", pod(annotations={"pykubemark.io/failure": "unready",
                                              "pykubemark.io/ready-flap-seconds": "0.02"}))
        await until(lambda: len(statuses(lc)) >= 6, "flaps")
        ready = [condition(s, "Ready")["status"] for s in statuses(lc)
                 if s["phase"] == "Running"]
        assert ready[:4] == ["False", "True", "False", "True"]
        assert ("Warning", "Unhealthy",
                "Readiness probe failed: HTTP probe failed with statuscode: 503") in events
        await lc.close()
    run(body)


def test_start_delay_postpones_the_containers() -> None:
    async def body() -> None:
        lc, _ = lifecycle()
        lc.on_event("ADDED", pod("slow", annotations={"pykubemark.io/start-delay": "30"}))
        lc.on_event("ADDED", pod("quick"))
        await until(lambda: lc.pods["uid-quick"].phase == "Running", "quick Running")
        assert lc.pods["uid-slow"].times.started == ""
        assert lc.pods["uid-slow"].phase == "Pending"
        await lc.close()
    run(body)


def test_start_delay_from_a_profile_rule() -> None:
    rng = random.Random(3)
    profile = _rules(FailureRule(start_delay=Distribution(uniform=[2.0, 4.0])))
    delays = [plan_for(pod(f"p{i}"), profile, rng).start_delay for i in range(50)]
    assert all(2.0 <= d <= 4.0 for d in delays) and len(set(delays)) > 1
    assert failures.plan_for(pod(), FailureProfile(), rng).start_delay == 0.0


def test_failure_weight_annotation_chooses_a_share_of_one_templates_pods() -> None:
    rng = random.Random(1)
    annotations = {"pykubemark.io/failure": "crashloop", "pykubemark.io/failure-weight": "0.1",
                   "pykubemark.io/exit-code": "2", "pykubemark.io/run-seconds": "7"}
    plans = [plan_for(pod(f"p{i}", annotations=annotations), FailureProfile(), rng)
             for i in range(2000)]
    failing = [p for p in plans if p.failure == "crashloop"]
    assert 0.07 < len(failing) / len(plans) < 0.13
    assert all(p.code() == 2 for p in failing)
    # the others ignore the failure and its exit code, but keep the run time
    healthy = [p for p in plans if p.failure == "none"]
    assert all(p.code() == 0 and p.run_seconds == 7 for p in healthy)
