"""NodeReadiness's bookkeeping, fed the events a nodes watch delivers."""

from __future__ import annotations

import json

from pykubemark.kube import Client, KubeConfig
from pykubemark.measure import Context, NodeReadiness
from pykubemark.measure.nodes import SLO_NAME, Condition, Meta, Node, Status
from pykubemark.report.output import Output


def node(name: str, ready: str | None = "True") -> Node:
    conditions = [Condition("MemoryPressure", "False")]
    if ready is not None:
        conditions.append(Condition("Ready", ready))
    return Node(Meta(name), Status(conditions))


def measurement(tmp_path, *, judged: bool = True) -> NodeReadiness:
    client = Client(KubeConfig(server="http://127.0.0.1:9", ssl_context=None))
    return NodeReadiness(Context(client, Output(tmp_path, "t")), judged=judged)


def test_nodes_not_ready_at_start_are_not_counted_as_turned(tmp_path) -> None:
    m = measurement(tmp_path)
    m.on_list([node("a"), node("b", "Unknown"), node("c", None)])
    assert m.figures()["notReadyAtStart"] == 2
    assert m.figures()["turnedNotReady"] == 0
    [slo] = m.slos()
    assert (slo.name, slo.value, slo.verdict) == (SLO_NAME, 0.0, "pass")


def test_each_turn_to_not_ready_counts_and_a_node_once_in_the_verdict(tmp_path) -> None:
    m = measurement(tmp_path)
    m.on_list([node("a"), node("b")])
    for status in ("Unknown", "Unknown", "True", "False"):
        m.on_event("MODIFIED", node("a", status))
    m.on_event("MODIFIED", node("b", "Unknown"))
    m.on_event("MODIFIED", node("a", "True"))
    figures = m.figures()
    assert figures["transitionsToNotReady"] == 3    # a twice (Unknown, False), b once
    assert figures["turnedNotReady"] == 2
    assert figures["maxNotReady"] == 2
    assert figures["notReadyAtEnd"] == 1
    [slo] = m.slos()
    assert (slo.value, slo.verdict) == (2.0, "fail")


def test_a_relist_forgets_deleted_nodes_and_counts_what_turned_meanwhile(tmp_path) -> None:
    m = measurement(tmp_path)
    m.on_list([node("a"), node("b", "False")])
    m.on_list([node("a", "Unknown")])                 # b deleted while the watch was down
    assert m.not_ready == {"a"}
    assert m.figures()["turnedNotReady"] == 1
    m.on_event("DELETED", node("a", "Unknown"))
    assert m.figures()["notReadyAtEnd"] == 0


def test_not_judged_where_the_scenario_fails_nodes_but_still_written(tmp_path) -> None:
    m = measurement(tmp_path, judged=False)
    m.write()
    assert not list(tmp_path.glob("NodeReadiness_*.json"))  # never listed: no claim
    m.on_list([node("a")])
    m.on_event("MODIFIED", node("a", "Unknown"))
    assert m.slos() == []
    m.write()
    [path] = tmp_path.glob("NodeReadiness_*.json")
    [item] = json.loads(path.read_text())["dataItems"]
    assert item["data"]["turnedNotReady"] == 1


def test_a_node_registering_during_the_run_has_not_turned_until_it_was_ready(tmp_path) -> None:
    m = measurement(tmp_path)
    m.on_list([node("a")])
    m.on_event("ADDED", node("b", None))           # registered, no Ready condition yet
    m.on_event("MODIFIED", node("b", "False"))
    assert m.figures()["turnedNotReady"] == 0
    m.on_event("MODIFIED", node("b", "True"))
    m.on_event("DELETED", node("b"))
    m.on_event("ADDED", node("b", None))           # deleted and registered again
    assert m.figures()["turnedNotReady"] == 0
    assert m.figures()["maxNotReady"] == 1
