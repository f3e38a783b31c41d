"""Reflector backoff and watch-event dispatch, without a network."""

from __future__ import annotations

import asyncio
import errno
import types
from typing import Any

import aiohttp
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


# -- retry paths of the reflector, against a scripted HTTP layer ----------------------------
class Exhausted(BaseException):
    """The script has no more answers: ends the reflector's loop in a test (not an
    Exception, which the reflector survives)."""


class ScriptedClient(Client):
    """Only the HTTP layer is faked: each GET (LIST) and each watch stream takes the next
    scripted answer — bytes or lines, or an exception to raise."""

    def __init__(self, lists: list[Any], watches: list[Any]) -> None:
        super().__init__(KubeConfig(server="https://127.0.0.1:1", ssl_context=None))
        self.lists, self.watches = lists, watches
        self.calls: list[tuple[str, dict[str, str]]] = []

    async def get(self, path: str, params: Any = None, accept: str | None = None) -> bytes:
        self.calls.append(("list", dict(params or {})))
        if not self.lists:
            raise Exhausted
        answer = self.lists.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def stream(self, path: str, params: Any,  # type: ignore[override]
                     protobuf: bool = False):
        self.calls.append(("watch", dict(params)))
        if not self.watches:
            raise Exhausted
        answer = self.watches.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        for line in answer:
            yield line


def pod_list(rv: str) -> bytes:
    return orjson.dumps({"kind": "PodList", "apiVersion": "v1",
                         "metadata": {"resourceVersion": rv}, "items": []})


GONE_LINE = (b'{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},'
             b'"status":"Failure","message":"too old resource version: 100 (2000)",'
             b'"reason":"Expired","code":410}}')
GONE = ApiError(410, b'{"kind":"Status","reason":"Expired","code":410,'
                     b'"message":"too old resource version"}', "GET", "/api/v1/pods")


def refused() -> aiohttp.ClientConnectorError:
    key = types.SimpleNamespace(host="127.0.0.1", port=1, ssl=None)
    return aiohttp.ClientConnectorError(
        key, ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))  # type: ignore[arg-type]


def scripted(lists: list[Any], watches: list[Any]) -> tuple[Reflector, ScriptedClient, list]:
    fake = ScriptedClient(lists, watches)
    r = Reflector(fake, "/api/v1/pods", Pod, Recorder())
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    r.sleep = sleep  # type: ignore[method-assign]
    return r, fake, slept


def calls(fake: ScriptedClient) -> list[tuple[str, str | None, str | None]]:
    return [(verb, p.get("resourceVersion"), p.get("limit")) for verb, p in fake.calls]


def test_watch_410_relists_at_the_last_resource_version() -> None:
    r, fake, slept = scripted([pod_list("100"), pod_list("130")],
                              [[pod_line("ADDED", "a", "120"), GONE_LINE]])
    with pytest.raises(Exhausted):
        asyncio.run(r.run())
    # from the watch cache: the last synced RV, no limit (paging would go to etcd)
    assert calls(fake) == [("list", "0", "500"), ("watch", "100", None),
                           ("list", "120", None), ("watch", "130", None)]
    assert len(slept) == 1 and slept[0] >= 0.8  # after a backoff


def test_list_410_at_the_last_resource_version_falls_back_to_etcd() -> None:
    r, fake, _ = scripted([pod_list("100"), GONE, pod_list("200")], [[GONE_LINE]])
    with pytest.raises(Exhausted):
        asyncio.run(r.run())
    assert calls(fake) == [("list", "0", "500"), ("watch", "100", None),
                           ("list", "100", None), ("list", "", "500"), ("watch", "200", None)]
    assert not r.rv_unavailable  # that LIST succeeded: the next relist uses the cache again


def test_refused_watch_reopens_from_the_last_rv_without_listing() -> None:
    r, fake, slept = scripted([pod_list("100")], [refused(), refused()])
    with pytest.raises(Exhausted):
        asyncio.run(r.run())
    assert calls(fake) == [("list", "0", "500"), ("watch", "100", None),
                           ("watch", "100", None), ("watch", "100", None)]
    assert len(slept) == 2 and slept[0] >= 0.8 and slept[0] < slept[1]  # backing off


def test_short_watch_is_not_reopened_in_a_tight_loop() -> None:
    r, fake, slept = scripted([pod_list("100"), pod_list("100")], [[]])
    with pytest.raises(Exhausted):
        asyncio.run(r.run())
    assert calls(fake) == [("list", "0", "500"), ("watch", "100", None),
                           ("list", "100", None), ("watch", "100", None)]
    assert len(slept) == 1 and slept[0] >= 0.8


def test_watch_that_ends_after_events_is_reopened_at_once() -> None:
    bookmark = (b'{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1",'
                b'"metadata":{"resourceVersion":"150"}}}')
    r, fake, slept = scripted([pod_list("100")], [[bookmark]])
    with pytest.raises(Exhausted):
        asyncio.run(r.run())
    assert calls(fake) == [("list", "0", "500"), ("watch", "100", None),
                           ("watch", "150", None)]
    assert slept == []


class Exploding(Recorder):
    def on_list(self, items: list[Any]) -> None:
        if not self.lists:
            self.lists.append(items)
            raise AttributeError("a bug in the handler")
        super().on_list(items)


def test_an_unexpected_error_is_logged_and_relisted_not_the_end(
        caplog: pytest.LogCaptureFixture) -> None:
    r, fake, slept = scripted([pod_list("100"), pod_list("100")], [])
    r.handler = Exploding()
    with caplog.at_level("ERROR", logger=watch.log.name), pytest.raises(Exhausted):
        asyncio.run(r.run())
    # the loop went on: backed off, listed again, watched
    assert calls(fake) == [("list", "0", "500"), ("list", "100", None), ("watch", "100", None)]
    assert len(slept) == 1 and r.errors == 1
    [record] = caplog.records
    assert "AttributeError" in record.getMessage() and record.exc_info is not None
