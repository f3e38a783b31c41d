"""Reflector backoff and watch-event dispatch, without a network."""

from __future__ import annotations

import types
from typing import Any

import orjson
import pytest

from pykubemark.kube import watch
from pykubemark.kube.client import ApiError, Client
from pykubemark.kube.config import KubeConfig
from pykubemark.kube.types import MetaOnly, Node, Pod
from pykubemark.kube.watch import Backoff, Reflector


@pytest.fixture
def clock(fake_clock):
    return fake_clock(watch, 10_000.0)


def _jitter(monkeypatch: pytest.MonkeyPatch, value: float) -> None:
    monkeypatch.setattr(watch, "random", types.SimpleNamespace(random=lambda: value))


# -- backoff ------------------------------------------------------------------------------
def test_backoff_doubles_from_initial_to_cap(clock,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _jitter(monkeypatch, 0.0)
    backoff = Backoff()
    delays = []
    for _ in range(9):
        delays.append(backoff.next())
        clock.now += 1.0
    assert delays == pytest.approx([0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0, 30.0])


@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999])
def test_backoff_jitter_between_d_and_2d(clock, monkeypatch: pytest.MonkeyPatch,
                                         jitter: float) -> None:
    _jitter(monkeypatch, jitter)
    backoff = Backoff()
    base = [0.8, 1.6, 3.2]
    for d in base:
        got = backoff.next()
        assert got == pytest.approx(d * (1 + jitter))
        assert d <= got < 2 * d


def test_backoff_resets_after_calm_period(clock,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _jitter(monkeypatch, 0.0)
    backoff = Backoff()
    for _ in range(4):
        backoff.next()
    clock.now += 120.0  # not yet calm long enough: keeps growing
    assert backoff.next() == pytest.approx(12.8)
    clock.now += 120.5
    assert backoff.next() == pytest.approx(0.8)
    assert backoff.next() == pytest.approx(1.6)


def test_backoff_custom_parameters(clock, monkeypatch: pytest.MonkeyPatch) -> None:
    _jitter(monkeypatch, 0.0)
    backoff = Backoff(initial=1.0, cap=3.0, reset_after=5.0)
    assert [backoff.next() for _ in range(4)] == pytest.approx([1.0, 2.0, 3.0, 3.0])
    clock.now += 6.0
    assert backoff.next() == pytest.approx(1.0)


# -- dispatch -----------------------------------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.lists: list[list[Any]] = []

    def on_list(self, items: list[Any]) -> None:
        self.lists.append(items)

    def on_event(self, kind: str, obj: Any) -> None:
        self.events.append((kind, obj))


def client() -> Client:
    return Client(KubeConfig(server="https://127.0.0.1:1", ssl_context=None))


def reflector(item_type: type = Pod) -> tuple[Reflector, Recorder]:
    handler = Recorder()
    return Reflector(client(), "/api/v1/pods", item_type, handler), handler


def pod_line(kind: str, name: str, rv: str) -> bytes:
    return orjson.dumps({"type": kind, "object": {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                     "resourceVersion": rv, "creationTimestamp": "2026-11-22T10:00:00Z"},
        "spec": {"nodeName": "hollow-0", "containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Pending"},
    }})


def test_dispatch_events_update_resource_version() -> None:
    r, handler = reflector()
    r._dispatch(pod_line("ADDED", "a", "100"))
    assert r.resource_version == "100"
    r._dispatch(pod_line("MODIFIED", "a", "105"))
    assert r.resource_version == "105"
    r._dispatch(pod_line("DELETED", "a", "110"))
    assert r.resource_version == "110"
    assert [kind for kind, _ in handler.events] == ["ADDED", "MODIFIED", "DELETED"]
    _, pod = handler.events[0]
    assert isinstance(pod, Pod)
    assert pod.metadata.name == "a"
    assert pod.metadata.uid == "uid-a"
    assert pod.spec.nodeName == "hollow-0"
    assert pod.spec.containers[0].image == "i"


def test_dispatch_bookmark_updates_rv_but_not_handler() -> None:
    r, handler = reflector(MetaOnly)
    r._dispatch(b'{"type":"BOOKMARK","object":{"kind":"Service","apiVersion":"v1",'
                b'"metadata":{"resourceVersion":"4242","creationTimestamp":null}}}')
    assert r.resource_version == "4242"
    assert handler.events == []


def test_dispatch_bookmark_of_pod_is_not_an_event() -> None:
    r, handler = reflector(Pod)
    r._dispatch(b'{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1",'
                b'"metadata":{"resourceVersion":"999"}}}')
    assert r.resource_version == "999"
    assert handler.events == []


def test_dispatch_bookmark_of_node() -> None:
    r, handler = reflector(Node)
    r._dispatch(b'{"type":"BOOKMARK","object":{"kind":"Node","apiVersion":"v1","metadata":'
                b'{"resourceVersion":"77","creationTimestamp":null},"spec":{},"status":'
                b'{"daemonEndpoints":{"kubeletEndpoint":{"Port":0}},"nodeInfo":{}}}}')
    assert r.resource_version == "77"
    assert handler.events == []


def test_dispatch_event_without_rv_keeps_previous() -> None:
    r, handler = reflector()
    r.resource_version = "50"
    r._dispatch(b'{"type":"MODIFIED","object":{"metadata":{"name":"x"}}}')
    assert r.resource_version == "50"
    assert len(handler.events) == 1


def test_dispatch_error_410_raises_gone() -> None:
    r, handler = reflector()
    r.resource_version = "100"
    line = (b'{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},'
            b'"status":"Failure","message":"too old resource version: 100 (2000)",'
            b'"reason":"Expired","code":410}}')
    with pytest.raises(ApiError) as info:
        r._dispatch(line)
    error = info.value
    assert error.gone
    assert error.status == 410
    assert error.reason == "Expired"
    assert "too old resource version" in error.message
    assert r.resource_version == "100"
    assert handler.events == []


def test_dispatch_error_without_code_is_500() -> None:
    r, _ = reflector()
    with pytest.raises(ApiError) as info:
        r._dispatch(b'{"type":"ERROR","object":{"kind":"Status","message":"internal"}}')
    assert info.value.status == 500
    assert not info.value.gone


def test_dispatch_real_pod_bookmark() -> None:
    r, handler = reflector(Pod)
    r._dispatch(b'{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":'
                b'{"resourceVersion":"3845","creationTimestamp":null},'
                b'"spec":{"containers":null},"status":{}}}')
    assert r.resource_version == "3845"
    assert handler.events == []
