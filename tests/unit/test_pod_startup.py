"""Pod startup phases from the pod's own stamps and the watch receive time, by hand.

Pod "a": created 05:00:00, scheduled 05:00:01, containers started 05:00:02 and 05:00:03,
seen Running with both containers at 05:00:03.25:
create_to_schedule 1000 ms, schedule_to_run 2000 ms (to the later container),
run_to_watch 250 ms, schedule_to_watch 2250 ms, pod_startup 3250 ms.
"""

from __future__ import annotations

import datetime as dt
import json
import types

import msgspec
import pytest

from pykubemark.kube import Client, KubeConfig
from pykubemark.measure import Context, PodStartupLatency, pod_startup
from pykubemark.measure.pods import Pod
from pykubemark.report.output import Output

T0 = dt.datetime(2026, 11, 23, 5, 0, 0, tzinfo=dt.UTC).timestamp()


def stamp(seconds: int) -> str:
    return f"2026-11-23T05:00:{seconds:02d}Z"


def pod(name: str, *, uid: str, running: dict[str, int] | None = None,
        scheduled: int | None = 1, created: int = 0) -> Pod:
    running = running or {}
    status: dict = {"phase": "Running" if running else "Pending", "conditions": [],
                    "containerStatuses": [
                        {"name": c, "state": {"running": {"startedAt": stamp(s)}}}
                        for c, s in running.items()]}
    if scheduled is not None:
        status["conditions"].append({"type": "PodScheduled", "status": "True",
                                     "lastTransitionTime": stamp(scheduled)})
    raw = {"metadata": {"name": name, "namespace": "ns", "uid": uid,
                        "creationTimestamp": stamp(created)},
           "spec": {"nodeName": "n1" if scheduled is not None else "",
                    "containers": [{"name": "c1"}, {"name": "c2"}]},
           "status": status}
    return msgspec.json.decode(json.dumps(raw), type=Pod)


@pytest.fixture
def measurement(tmp_path, monkeypatch):
    clock = types.SimpleNamespace(now=T0)
    monkeypatch.setattr(pod_startup, "time", types.SimpleNamespace(time=lambda: clock.now))
    ctx = Context(Client(KubeConfig(server="http://127.0.0.1:9", ssl_context=None)),
                  Output(tmp_path, "t"))
    m = PodStartupLatency(ctx, selector="a=b", identifier="X", threshold=5.0)
    m.clock = clock
    return m


def test_phases_from_stamps_and_watch_time(measurement, tmp_path):
    m = measurement
    m.on_list([pod("old", uid="u0", running={"c1": 0, "c2": 0})])
    m.on_event("ADDED", pod("a", uid="u1", scheduled=None))
    m.on_event("MODIFIED", pod("a", uid="u1"))
    m.clock.now = T0 + 3.0
    # Running, but c2 has not started: not yet the watch instant.
    m.on_event("MODIFIED", pod("a", uid="u1", running={"c1": 2}))
    m.clock.now = T0 + 3.25
    m.on_event("MODIFIED", pod("a", uid="u1", running={"c1": 2, "c2": 3}))
    m.clock.now = T0 + 9.0
    m.on_event("MODIFIED", pod("a", uid="u1", running={"c1": 2, "c2": 3}))  # seen again
    m.on_event("MODIFIED", pod("old", uid="u0", running={"c1": 0, "c2": 0}))  # before start
    m.write()
    raw = json.loads((tmp_path / "raw/PodStartupLatency_X.json").read_text())
    assert raw["pods"] == {"ns/a": pytest.approx({
        "create_to_schedule": 1000.0, "schedule_to_run": 2000.0, "run_to_watch": 250.0,
        "schedule_to_watch": 2250.0, "pod_startup": 3250.0})}
    assert m.progress() == {"seen": 1, "scheduled": 1, "running": 1}


def test_slo_is_the_p99_of_pod_startup(measurement):
    m = measurement
    m.on_list([])
    m.clock.now = T0 + 3.25
    m.on_event("ADDED", pod("a", uid="u1", running={"c1": 2, "c2": 3}))
    [slo] = m.slos()
    assert (slo.value, slo.verdict) == (pytest.approx(3250.0), "pass")
    m.clock.now = T0 + 6.0
    m.on_event("ADDED", pod("b", uid="u2", running={"c1": 2, "c2": 3}))
    [slo] = m.slos()  # nearest rank of two values: p99 is the larger, 6000 ms > 5000 ms
    assert (slo.value, slo.verdict) == (pytest.approx(6000.0), "fail")


def test_a_pod_never_running_has_only_its_scheduling_phase(measurement, tmp_path):
    m = measurement
    m.on_list([])
    m.on_event("ADDED", pod("p", uid="u3", scheduled=4, created=2))
    m.on_event("DELETED", pod("p", uid="u3", scheduled=4, created=2))
    m.write()
    raw = json.loads((tmp_path / "raw/PodStartupLatency_X.json").read_text())
    assert raw["pods"] == {"ns/p": {"create_to_schedule": 2000.0}}
    assert m.progress() == {"seen": 1, "scheduled": 1, "running": 0}
    assert [s.verdict for s in m.slos()] == ["no data"]
