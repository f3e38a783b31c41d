"""Node failures as data: when a node is down, which nodes a fraction picks, the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pykubemark.contract import NodeFailure
from pykubemark.errors import UserError
from pykubemark.hollow import chaos
from pykubemark.hollow.chaos import ChaosPlan, ChaosWatcher, schedule
from pykubemark.hollow.profile import load_profile


def test_stop_is_down_for_its_duration_only() -> None:
    plan = ChaosPlan([schedule(NodeFailure("stop", nodes=["n-1"], after=5, duration=10),
                               100.0, "a")])
    assert plan.state("n-1", 104.9) == (False, 0.0)
    assert plan.state("n-1", 105.0) == (True, 0.0)
    assert plan.state("n-1", 114.9) == (True, 0.0)
    assert plan.state("n-1", 115.0) == (False, 0.0)
    assert plan.state("n-2", 110.0) == (False, 0.0)


def test_stop_without_duration_lasts_until_cleared() -> None:
    plan = ChaosPlan([schedule(NodeFailure("stop", nodes=["n"]), 0.0, "a")])
    assert plan.state("n", 1e9)[0]


def test_flap_alternates_down_and_up_each_period() -> None:
    plan = ChaosPlan([schedule(NodeFailure("flap", nodes=["n"], period=20, duration=80),
                               0.0, "a")])
    down = [plan.state("n", t)[0] for t in range(0, 90, 10)]
    assert down == [True, True, False, False, True, True, False, False, False]


def test_slow_delays_heartbeats_without_stopping_them() -> None:
    plan = ChaosPlan([schedule(NodeFailure("slow", nodes=["n"], delay=30, duration=60),
                               0.0, "a")])
    assert plan.state("n", 10.0) == (False, 30.0)
    assert plan.state("n", 61.0) == (False, 0.0)


def test_fraction_picks_the_same_nodes_every_time() -> None:
    action = schedule(NodeFailure("stop", fraction=0.1), 0.0, "x")
    names = [f"hollow-{i}" for i in range(3000)]
    picked = [n for n in names if action.applies(n)]
    assert 0.08 < len(picked) / len(names) < 0.12
    assert picked == [n for n in names if action.applies(n)]
    other = schedule(NodeFailure("stop", fraction=0.1), 0.0, "y")
    assert picked != [n for n in names if other.applies(n)]


@pytest.mark.parametrize(("kwargs", "word"), [
    ({"action": "melt", "nodes": ["n"]}, "action"),
    ({"action": "stop"}, "fraction"),
    ({"action": "stop", "fraction": 1.5}, "fraction"),
    ({"action": "flap", "nodes": ["n"]}, "period"),
    ({"action": "slow", "nodes": ["n"]}, "delay"),
    ({"action": "stop", "nodes": ["n"], "duration": -1}, "duration"),
])
def test_bad_node_failures_are_refused(kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        NodeFailure(**kwargs)


def test_file_appends_drops_expired_and_clears(tmp_path: Path) -> None:
    path = tmp_path / "chaos.json"
    chaos.add(path, NodeFailure("stop", nodes=["a"], duration=10), now=100.0)
    chaos.add(path, NodeFailure("flap", nodes=["b"], period=5), now=105.0)
    plan = chaos.read_plan(path)
    assert [a.failure.nodes for a in plan.actions] == [["a"], ["b"]]
    assert len({a.id for a in plan.actions}) == 2
    chaos.add(path, NodeFailure("stop", nodes=["c"]), now=200.0)  # a's has ended
    assert [a.failure.nodes for a in chaos.read_plan(path).actions] == [["b"], ["c"]]
    chaos.clear(path)
    assert chaos.read_plan(path).actions == []


def test_bad_file_is_refused_and_the_watcher_keeps_its_plan(tmp_path: Path) -> None:
    path = tmp_path / "chaos.json"
    watcher = ChaosWatcher(path, [NodeFailure("stop", nodes=["p"], after=60)], 1000.0)
    assert not watcher.refresh()  # no file yet: the profile's failures only
    chaos.add(path, NodeFailure("stop", nodes=["a"]))
    assert watcher.refresh()
    assert [a.failure.nodes for a in watcher.plan.actions] == [["p"], ["a"]]
    assert watcher.plan.actions[0].start == 1060.0
    path.write_text('{"actions": [{"id": 1}]}')
    with pytest.raises(UserError, match="invalid chaos file"):
        chaos.read_plan(path)
    assert not watcher.refresh()
    assert len(watcher.plan.actions) == 2


def test_profile_node_failures(tmp_path: Path) -> None:
    path = tmp_path / "profile.yaml"
    path.write_text("node_failures:\n- action: flap\n  fraction: 0.01\n  period: 30\n")
    assert load_profile(path).node_failures == [NodeFailure("flap", fraction=0.01, period=30)]
    path.write_text("node_failures:\n- action: flap\n  fraction: 0.01\n")
    with pytest.raises(UserError, match="period"):
        load_profile(path)


def test_restart_happens_once_when_its_down_time_ends() -> None:
    plan = ChaosPlan([schedule(NodeFailure("restart", nodes=["n"], after=10, duration=5),
                               0.0, "r"),
                      schedule(NodeFailure("restart", nodes=["m"], after=10), 0.0, "s")])
    assert plan.state("n", 12.0) == (True, 0.0)  # down before it comes back
    assert plan.restarts("n", 0.0, 14.9) == []
    assert plan.restarts("n", 14.9, 15.0) == ["r"]
    assert plan.restarts("n", 15.0, 30.0) == []  # once
    assert plan.state("n", 15.0) == (False, 0.0)
    assert plan.restarts("m", 9.5, 10.0) == ["s"]  # no down time: at once
    assert plan.restarts("other", 0.0, 30.0) == []
