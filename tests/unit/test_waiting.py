"""The helpers written once: a Node's readiness (JSON or typed) and a wait for N ready."""

from __future__ import annotations

from pykubemark import waiting
from pykubemark.kube.nodes import count_ready, is_ready
from pykubemark.measure.nodes import Condition, Meta, Node, Status
from pykubemark.waiting import ReadyCount


def _node(name: str, status: str | None) -> dict:
    conditions = [] if status is None else [{"type": "MemoryPressure", "status": "True"},
                                            {"type": "Ready", "status": status}]
    return {"metadata": {"name": name}, "status": {"conditions": conditions}}


def test_ready_on_json_and_on_typed_views() -> None:
    assert [is_ready(_node("n", s)) for s in ("True", "False", "Unknown", None)] == \
        [True, False, False, False]
    assert is_ready({"metadata": {"name": "n"}}) is False
    assert is_ready(Node(Meta("n"), Status([Condition("Ready", "True")])))
    assert not is_ready(Node(Meta("n"), Status([Condition("Ready", "Unknown")])))
    nodes = [_node("hollow-0", "True"), _node("hollow-1", "False"), _node("hollowx-2", "True"),
             _node("real-0", "True")]
    assert (count_ready(nodes), count_ready(nodes, "hollow")) == (3, 1)


def test_a_wait_gives_up_after_its_timeout_or_a_stall(monkeypatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(waiting.time, "monotonic", lambda: clock[0])
    lines: list[str] = []
    count = ReadyCount("nodes Ready", timeout=60, stall=20, progress=lines.append)
    assert not count.done(1, 3) and count.overdue() is None
    clock[0] += 15
    assert not count.done(2, 3) and count.overdue() is None  # one more: the stall restarts
    clock[0] += 21
    assert not count.done(2, 3)
    assert count.overdue() == "only 2/3 nodes Ready after 36s, none more in the last 20s"
    assert lines == ["nodes Ready: 1/3", "nodes Ready: 2/3", "nodes Ready: 2/3"]
    clock[0] += 30
    assert count.overdue() == "only 2/3 nodes Ready after 60s"
    assert count.done(3, 3)


def test_a_poll_without_an_answer_keeps_the_last_count() -> None:
    """An overloaded apiserver's list timing out is not every node gone: at 5000 nodes
    `up` reported "only 0/5000 Ready" after thousands were."""
    lines: list[str] = []
    count = ReadyCount("nodes Ready", stall=20, progress=lines.append)
    assert not count.done(4000, 5000)
    assert not count.done(None, 5000)
    assert count.ready == 4000 and lines[-1] == "nodes Ready: 4000/5000"
    assert count.done(5000, 5000)
