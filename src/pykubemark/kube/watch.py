"""LIST then WATCH, or a streaming list, the way client-go's reflector does it.

With ``stream_list`` (client-go's WatchListClient, on by default since 1.35) the initial
state comes from a WATCH with ``sendInitialEvents=true`` and
``resourceVersionMatch=NotOlderThan``: the objects arrive as ADDED events until a
bookmark annotated ``k8s.io/initial-events-end``, and the same stream then goes on as a
plain watch. A streaming list that fails for any reason other than an expired
resourceVersion falls back to a LIST, as client-go's does. Otherwise (1.34 and older,
``stream_list=False``):

- the first LIST asks for ``resourceVersion=0`` (served from the apiserver's cache);
- each WATCH asks for bookmarks and ends after a random 5–10 minutes, then resumes
  from the last resourceVersion seen (objects or bookmarks);
- a WATCH that cannot start because the connection is refused is reopened from the
  last resourceVersion after its own exponential backoff, without a LIST;
- any other failure — a watch that ends in an error (410 Expired included), a cut
  connection, a watch that ends at once with no event ("very short watch") — waits
  an exponential backoff (0.8 s doubling to 30 s, reset after 2 calm minutes) and
  relists at the last synced resourceVersion (``relistResourceVersion``): served from
  the watch cache, no read from etcd;
- only when that LIST itself fails with 410 Expired or "too large resource version"
  (``isLastSyncResourceVersionUnavailable``) does it relist with ``resourceVersion=""``,
  a consistent read paged by 500;
- anything unexpected (a decoding or handler bug) is logged at error level and treated
  like any other failure, as client-go's ``HandleError``: the watch never ends unseen.

Over a protobuf client (``Client(content_type="protobuf")``) lists and watches of the
typed views kube/protobuf.py knows (Pod, Node, MetaOnly) are protobuf on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

import aiohttp
import msgspec

from pykubemark import telemetry
from pykubemark.kube import protobuf as pb
from pykubemark.kube.client import ApiError, Client
from pykubemark.kube.types import Bookmark, ObjectList, Status, WatchEvent

log = logging.getLogger(__name__)
MIN_WATCH_TIMEOUT = 300.0
T = TypeVar("T")
ERROR_PREFIX = b'{"type":"ERROR"'
BOOKMARK_PREFIX = b'{"type":"BOOKMARK"'
#: A watch shorter than this without a single event is an error (client-go's check).
SHORT_WATCH = 1.0
PAGE = "500"


class ShortWatch(Exception):
    """The watch ended at once without an event: back off, do not reopen at once."""


def _refused(exc: aiohttp.ClientConnectorError) -> bool:
    return exc.os_error is not None and exc.os_error.errno == errno.ECONNREFUSED


def _rv_unavailable(exc: ApiError) -> bool:
    """client-go's isExpiredError or isTooLargeResourceVersionError."""
    return exc.gone or (exc.status == 504 and "too large resource version" in
                        exc.message.lower())


class _HasMeta(Protocol):
    metadata: Any


class Handler(Protocol[T]):  # type: ignore[misc]
    def on_list(self, items: list[T]) -> None: ...
    def on_event(self, kind: str, obj: T) -> None: ...


class Backoff:
    """client-go's exponential backoff: 0.8 s doubling to 30 s, reset after 2 calm minutes."""

    def __init__(self, initial: float = 0.8, cap: float = 30.0, reset_after: float = 120.0):
        self.initial, self.cap, self.reset_after = initial, cap, reset_after
        self._delay = 0.0
        self._last = 0.0

    def next(self) -> float:
        now = time.monotonic()
        if now - self._last > self.reset_after:
            self._delay = 0.0
        self._last = now
        self._delay = self.initial if self._delay == 0 else min(self.cap, self._delay * 2)
        return self._delay * (1 + random.random())


class Reflector(Generic[T]):
    """Keeps a handler in sync with one LIST+WATCH of ``path`` until cancelled."""

    def __init__(self, client: Client, path: str, item_type: type[T], handler: Handler[T], *,
                 params: Mapping[str, str] | None = None, name: str = "",
                 timeout: Callable[[], float] | None = None,
                 min_timeout: float = MIN_WATCH_TIMEOUT, stream_list: bool = False) -> None:
        self.client = client
        self.stream_list = stream_list
        self.path = path
        self.params = dict(params or {})
        self.handler = handler
        self.name = name or path
        #: The resource, as the fleet's /metrics names it (telemetry.classify).
        self.resource = telemetry.classify("GET", path)[1]
        self.resource_version = ""
        self.synced = asyncio.Event()
        self.lists = 0
        self.watches = 0
        #: Failures the loop did not expect (bugs): logged, then relisted.
        self.errors = 0
        self._errors_seen: set[str] = set()
        #: The last LIST at resource_version failed with 410: list from etcd ("").
        self.rv_unavailable = False
        self.sleep = asyncio.sleep  # replaceable, for tests of the retry paths
        self._timeout = timeout or (lambda: min_timeout * (1 + random.random()))
        self._list_type = ObjectList[item_type]  # type: ignore[valid-type]
        self._event_decoder = msgspec.json.Decoder(WatchEvent[item_type])  # type: ignore[valid-type]
        self._error_decoder = msgspec.json.Decoder(WatchEvent[Status])
        # Bookmarks carry only a resourceVersion (and nulls where lists would be), and
        # the annotation that ends a streaming list's initial events.
        self._bookmark_decoder = msgspec.json.Decoder(WatchEvent[Bookmark])
        self._list_decoder = msgspec.json.Decoder(self._list_type)
        self._pb_item: pb.Codec | None = (
            pb.DECODERS.get(item_type) if client.protobuf else None)

    async def run(self) -> None:
        backoff = Backoff()
        connect_backoff = Backoff()
        while True:
            try:
                await self._list_and_watch(connect_backoff)
            except asyncio.CancelledError:
                raise
            except (ApiError, ShortWatch) as exc:
                log.debug("%s: %s", self.name, exc)
            except (TimeoutError, aiohttp.ClientError, OSError, msgspec.DecodeError,
                    pb.CodecError) as exc:
                log.debug("%s: %r", self.name, exc)
            except Exception as exc:  # a bug must not end the watch unseen
                self._unexpected(exc)
            await self.sleep(backoff.next())

    def _unexpected(self, exc: Exception) -> None:
        """As client-go's HandleError: said at error level, then relisted after the
        backoff. The first of each kind with its traceback; repeats in one line."""
        self.errors += 1
        kind = type(exc).__name__
        first = kind not in self._errors_seen
        self._errors_seen.add(kind)
        log.error("%s: unexpected %s (relisting after backoff, %d so far): %s",
                  self.name, kind, self.errors, exc, exc_info=exc if first else None)

    def relist_resource_version(self) -> str:
        if self.rv_unavailable:
            return ""
        return self.resource_version or "0"

    async def _list_and_watch(self, connect_backoff: Backoff) -> None:
        if self.stream_list:
            try:
                await self._watch_list()
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                if _rv_unavailable(exc):
                    # An expired resourceVersion: stream a consistent snapshot next time.
                    self.rv_unavailable = True
                    raise
                log.debug("%s: streaming list failed, listing: %s", self.name, exc)
            except (TimeoutError, aiohttp.ClientError, OSError, ShortWatch) as exc:
                log.debug("%s: streaming list failed, listing: %r", self.name, exc)
            else:
                await self._watch_loop(connect_backoff)
                return
        try:
            await self._list(self.relist_resource_version())
        except ApiError as exc:
            if not _rv_unavailable(exc):
                raise
            self.rv_unavailable = True
            await self._list(self.relist_resource_version())
        self.rv_unavailable = False
        await self._watch_loop(connect_backoff)

    async def _watch_list(self) -> None:
        """One streaming list: the initial events, then the same stream as a watch until
        it ends. Raises if the stream ends before the initial events did."""
        params = {**self.params, "allowWatchBookmarks": "true", "sendInitialEvents": "true",
                  "resourceVersionMatch": "NotOlderThan",
                  "timeoutSeconds": str(int(self._timeout())), "watch": "true"}
        if not self.rv_unavailable and self.resource_version:
            params["resourceVersion"] = self.resource_version
        if self.watches:
            telemetry.WATCH_RESTARTS[self.resource] += 1
        self.watches += 1
        protobuf = self._pb_item is not None
        decode = self._decode_frame if protobuf else self._decode_line
        initial: dict[Any, T] | None = {}
        async for unit in self.client.stream(self.path, params, protobuf=protobuf):
            kind, obj = decode(unit)
            if initial is None:
                self._deliver(kind, obj)
                continue
            if kind == "BOOKMARK":
                assert isinstance(obj, Bookmark)
                self.resource_version = obj.metadata.resourceVersion or self.resource_version
                if obj.initial_events_end:
                    if self.lists:
                        telemetry.RELISTS[self.resource] += 1
                    self.lists += 1
                    self.rv_unavailable = False
                    self.handler.on_list(list(initial.values()))
                    self.synced.set()
                    initial = None
                continue
            key = _key(obj) or len(initial)
            if kind == "DELETED":
                initial.pop(key, None)
            else:
                initial[key] = obj  # type: ignore[assignment]
        if initial is not None:
            raise ShortWatch(f"streaming list of {self.path} ended before its initial events")

    async def _list(self, resource_version: str) -> None:
        """Paged by 500 like client-go's pager, except at a given resourceVersion, where
        paging is off so that the watch cache serves it."""
        items: list[T] = []
        params = {**self.params, "resourceVersion": resource_version}
        if resource_version in ("", "0"):
            params["limit"] = PAGE
        while True:
            if self._pb_item is not None:
                data = await self.client.get(self.path, params, accept=pb.PROTOBUF)
                page_items, list_rv, cont = self._pb_item.decode_list(data)
            else:
                page = self._list_decoder.decode(await self.client.get(self.path, params))
                page_items = page.items
                list_rv = str(page.metadata.get("resourceVersion", ""))
                cont = str(page.metadata.get("continue") or "")
            items.extend(page_items)
            if not cont or resource_version == "0":
                break
            params = {**self.params, "limit": PAGE, "continue": cont}
        if self.lists:
            telemetry.RELISTS[self.resource] += 1
        self.lists += 1
        self.resource_version = list_rv
        self.handler.on_list(items)
        self.synced.set()

    async def _watch_loop(self, connect_backoff: Backoff) -> None:
        """Watch until an error; a watch that simply times out is reopened."""
        while True:
            params = {
                **self.params, "watch": "true", "resourceVersion": self.resource_version,
                "timeoutSeconds": str(int(self._timeout())), "allowWatchBookmarks": "true",
            }
            if self.watches:
                telemetry.WATCH_RESTARTS[self.resource] += 1
            self.watches += 1
            started = time.monotonic()
            events = 0
            protobuf = self._pb_item is not None
            dispatch = self._dispatch_frame if protobuf else self._dispatch
            try:
                async for unit in self.client.stream(self.path, params, protobuf=protobuf):
                    events += 1
                    dispatch(unit)
            except ConnectionRefusedError:
                await self.sleep(connect_backoff.next())
                continue
            except aiohttp.ClientConnectorError as exc:
                if not _refused(exc):
                    raise
                await self.sleep(connect_backoff.next())
                continue
            if events == 0 and time.monotonic() - started < SHORT_WATCH:
                raise ShortWatch(f"very short watch of {self.path}: no events")

    def _decode_frame(self, frame: bytes) -> tuple[str, Any]:
        """One protobuf watch frame: its type and object (a `Bookmark` for bookmarks);
        an ERROR frame is raised."""
        kind, body = pb.watch_body(frame)
        if kind == "ERROR":
            status = pb.DECODERS[Status].decode(body)
            raise ApiError(status.code or 500, msgspec.json.encode(status), "WATCH", self.path)
        if kind == "BOOKMARK":
            return kind, pb.DECODERS[Bookmark].decode(body)
        assert self._pb_item is not None
        return kind, self._pb_item.decode(body)

    def _decode_line(self, line: bytes) -> tuple[str, Any]:
        if line.startswith(ERROR_PREFIX):
            status = self._error_decoder.decode(line).object
            raise ApiError(status.code or 500, msgspec.json.encode(status), "WATCH", self.path)
        if line.startswith(BOOKMARK_PREFIX):
            return "BOOKMARK", self._bookmark_decoder.decode(line).object
        event = self._event_decoder.decode(line)
        return event.type, event.object

    def _deliver(self, kind: str, obj: Any) -> None:
        if kind == "BOOKMARK":
            self.resource_version = obj.metadata.resourceVersion or self.resource_version
            return
        if rv := obj.metadata.resourceVersion:
            self.resource_version = rv
        self.handler.on_event(kind, obj)

    def _dispatch_frame(self, frame: bytes) -> None:
        self._deliver(*self._decode_frame(frame))

    def _dispatch(self, line: bytes) -> None:
        self._deliver(*self._decode_line(line))


def _key(obj: Any) -> tuple[str, str] | None:
    """namespace/name of an object that has them (MetaOnly views do not)."""
    meta = obj.metadata
    name = getattr(meta, "name", "")
    return (getattr(meta, "namespace", ""), name) if name else None


async def cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
