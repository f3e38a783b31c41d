"""clusterloader2's chaos monkey as a node failure: rounds every interval stretched by
the jitter, a fraction of the nodes killed per round, each back as a restarted kubelet
after the downtime — the same answer in every shard."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from pykubemark.contract import NodeFailure
from pykubemark.hollow import chaos
from pykubemark.hollow.chaos import ChaosPlan, schedule

NAMES = [f"hollow-{i}" for i in range(2000)]


def monkey(**kwargs) -> NodeFailure:
    base = {"fraction": 0.05, "interval": 60.0, "downtime": 20.0}
    return NodeFailure("chaosmonkey", **{**base, **kwargs})


def test_rounds_follow_the_interval_without_jitter() -> None:
    action = schedule(monkey(duration=300), 1000.0, "m")
    assert action.rounds(1299.0) == [1000.0, 1060.0, 1120.0, 1180.0, 1240.0]
    # none begins at or after the end
    assert action.rounds(5000.0) == [1000.0, 1060.0, 1120.0, 1180.0, 1240.0]


def test_jitter_stretches_each_interval_within_its_bound() -> None:
    action = schedule(monkey(jitter=0.5), 0.0, "j")
    times = action.rounds(6000.0)
    steps = [b - a for a, b in itertools.pairwise(times)]
    assert all(60.0 <= s <= 90.0 for s in steps)
    assert len(set(steps)) > 1
    # another shard computing afresh gets the same rounds
    chaos._ROUNDS.clear()
    assert schedule(monkey(jitter=0.5), 0.0, "j").rounds(6000.0) == times


def test_each_round_kills_about_the_fraction_and_a_new_set() -> None:
    action = schedule(monkey(), 0.0, "k")
    first = {n for n in NAMES if action.killed(n, 0)}
    second = {n for n in NAMES if action.killed(n, 1)}
    assert 0.03 < len(first) / len(NAMES) < 0.07
    assert 0.03 < len(second) / len(NAMES) < 0.07
    assert first != second


def test_a_killed_node_is_down_for_the_downtime_then_restarts() -> None:
    action = schedule(monkey(), 0.0, "d")
    plan = ChaosPlan([action])
    node = next(n for n in NAMES if action.killed(n, 1) and not action.killed(n, 0))
    assert plan.state(node, 59.9) == (False, 0.0)
    assert plan.state(node, 60.0) == (True, 0.0)
    assert plan.state(node, 79.9) == (True, 0.0)
    assert plan.state(node, 80.0) == (False, 0.0)
    assert plan.restarts(node, 70.0, 79.9) == []
    assert plan.restarts(node, 79.9, 80.5) == ["d"]
    assert plan.restarts(node, 80.5, 81.0) == []
    spared = next(n for n in NAMES if not action.killed(n, 0) and not action.killed(n, 1))
    assert plan.state(spared, 70.0) == (False, 0.0)
    assert plan.restarts(spared, 0.0, 119.0) == []


def test_the_end_cuts_the_last_downtime_short_with_a_restart() -> None:
    action = schedule(monkey(duration=70), 0.0, "e")
    plan = ChaosPlan([action])
    node = next(n for n in NAMES if action.killed(n, 1))
    assert plan.state(node, 69.0)[0]
    assert not plan.state(node, 70.0)[0]
    assert plan.restarts(node, 69.5, 70.0) == ["e"]


def test_named_nodes_bound_the_choice() -> None:
    action = schedule(monkey(fraction=1.0, nodes=["a", "b"]), 0.0, "n")
    assert ChaosPlan([action]).state("a", 1.0)[0] and ChaosPlan([action]).state("b", 1.0)[0]
    assert not ChaosPlan([action]).state("c", 1.0)[0]


@pytest.mark.parametrize(("kwargs", "word"), [
    ({"fraction": 0.0}, "fraction"),
    ({"interval": 0.0}, "interval"),
    ({"downtime": 0.0}, "downtime"),
    ({"jitter": -0.1}, "jitter"),
])
def test_bad_chaosmonkey_is_refused(kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        monkey(**kwargs)


def test_remove_drops_only_the_given_actions(tmp_path: Path) -> None:
    path = tmp_path / "chaos.json"
    mine = chaos.add(path, monkey(), now=100.0)
    other = chaos.add(path, NodeFailure("stop", nodes=["x"]), now=100.0)
    chaos.remove(path, [mine.id])
    assert [a.id for a in chaos.read_plan(path).actions] == [other.id]


def test_downtimes_longer_than_the_interval_overlap() -> None:
    action = schedule(monkey(interval=10.0, downtime=25.0), 0.0, "o")
    plan = ChaosPlan([action])
    node = next(n for n in NAMES if action.killed(n, 0)
                and not any(action.killed(n, k) for k in (1, 2, 3)))
    assert [plan.state(node, t)[0] for t in (0.0, 12.0, 24.9, 25.0, 31.0)] == \
        [True, True, True, False, False]
    assert plan.restarts(node, 24.0, 26.0) == ["o"]


def test_the_profile_takes_a_chaosmonkey(tmp_path: Path) -> None:
    from pykubemark.errors import UserError
    from pykubemark.hollow.profile import load_profile

    path = tmp_path / "profile.yaml"
    path.write_text("node_failures:\n- {action: chaosmonkey, fraction: 0.01, interval: 60,"
                    " jitter: 0.1, downtime: 30}\n")
    assert load_profile(path).node_failures == [monkey(fraction=0.01, jitter=0.1,
                                                       downtime=30.0)]
    path.write_text("node_failures:\n- {action: chaosmonkey, fraction: 0.01, interval: 60}\n")
    with pytest.raises(UserError, match="downtime"):
        load_profile(path)
