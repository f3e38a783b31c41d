"""LIST then WATCH, the way client-go's reflector does it in 1.20.

- the first LIST asks for ``resourceVersion=0`` (served from the apiserver's cache);
- each WATCH asks for bookmarks and ends after a random 5–10 minutes, then resumes
  from the last resourceVersion seen (objects or bookmarks);
- a WATCH that cannot start because the connection is refused is retried after 1 s;
- any other failure relists after an exponential backoff (0.8 s doubling to 30 s);
- 410 Gone relists with ``resourceVersion=""`` (a consistent read, paged by 500).

Over a protobuf client (``Client(content_type="protobuf")``) lists and watches of the
typed views kube/protobuf.py knows (Pod, Node, MetaOnly) are protobuf on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

import aiohttp
import msgspec

from pykubemark.kube import protobuf as pb
from pykubemark.kube.client import ApiError, Client
from pykubemark.kube.types import MetaOnly, ObjectList, Status, WatchEvent

log = logging.getLogger(__name__)
MIN_WATCH_TIMEOUT = 300.0
T = TypeVar("T")
ERROR_PREFIX = b'{"type":"ERROR"'
BOOKMARK_PREFIX = b'{"type":"BOOKMARK"'


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
                 timeout: Callable[[], float] | None = None) -> None:
        self.client = client
        self.path = path
        self.params = dict(params or {})
        self.handler = handler
        self.name = name or path
        self.resource_version = ""
        self.synced = asyncio.Event()
        self.lists = 0
        self.watches = 0
        self._timeout = timeout or (lambda: MIN_WATCH_TIMEOUT * (1 + random.random()))
        self._list_type = ObjectList[item_type]  # type: ignore[valid-type]
        self._event_decoder = msgspec.json.Decoder(WatchEvent[item_type])  # type: ignore[valid-type]
        self._error_decoder = msgspec.json.Decoder(WatchEvent[Status])
        # Bookmarks carry only a resourceVersion (and nulls where lists would be).
        self._bookmark_decoder = msgspec.json.Decoder(WatchEvent[MetaOnly])
        self._list_decoder = msgspec.json.Decoder(self._list_type)
        self._pb_item: Callable[[bytes], Any] | None = (
            pb.DECODERS.get(item_type) if client.protobuf else None)

    async def run(self) -> None:
        backoff = Backoff()
        relist_rv = "0"
        while True:
            try:
                await self._list(relist_rv)
                relist_rv = "0"
                await self._watch_loop()
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                if exc.gone:
                    relist_rv = ""
                    continue
                log.debug("%s: %s", self.name, exc)
            except (TimeoutError, aiohttp.ClientError, OSError, msgspec.DecodeError,
                    pb.CodecError) as exc:
                log.debug("%s: %r", self.name, exc)
            await asyncio.sleep(backoff.next())

    async def _list(self, resource_version: str) -> None:
        items: list[T] = []
        params = {**self.params, "resourceVersion": resource_version}
        if resource_version == "":
            params["limit"] = "500"
        while True:
            if self._pb_item is not None:
                data = await self.client.get(self.path, params, accept=pb.PROTOBUF)
                page_items, list_rv, cont = pb.list_items(data, self._pb_item)
            else:
                page = self._list_decoder.decode(await self.client.get(self.path, params))
                page_items = page.items
                list_rv = str(page.metadata.get("resourceVersion", ""))
                cont = str(page.metadata.get("continue") or "")
            items.extend(page_items)
            if not cont or resource_version == "0":
                break
            params = {**self.params, "limit": "500", "continue": cont}
        self.lists += 1
        self.resource_version = list_rv
        self.handler.on_list(items)
        self.synced.set()

    async def _watch_loop(self) -> None:
        """Watch until an error; a watch that simply times out is reopened."""
        while True:
            params = {
                **self.params, "watch": "true", "resourceVersion": self.resource_version,
                "timeoutSeconds": str(int(self._timeout())), "allowWatchBookmarks": "true",
            }
            self.watches += 1
            protobuf = self._pb_item is not None
            dispatch = self._dispatch_frame if protobuf else self._dispatch
            try:
                async for unit in self.client.stream(self.path, params, protobuf=protobuf):
                    dispatch(unit)
            except ConnectionRefusedError:
                await asyncio.sleep(1.0)
            except aiohttp.ClientConnectorError as exc:
                if "refused" not in str(exc).lower():
                    raise
                await asyncio.sleep(1.0)

    def _dispatch_frame(self, frame: bytes) -> None:
        kind, envelope = pb.watch_event(frame)
        if kind == "ERROR":
            status = pb.status(envelope.raw)
            raise ApiError(status.code or 500, msgspec.json.encode(status), "WATCH", self.path)
        if kind == "BOOKMARK":
            self.resource_version = (pb.meta_only(envelope.raw).metadata.resourceVersion
                                     or self.resource_version)
            return
        assert self._pb_item is not None
        obj = self._pb_item(envelope.raw)
        if rv := obj.metadata.resourceVersion:
            self.resource_version = rv
        self.handler.on_event(kind, obj)

    def _dispatch(self, line: bytes) -> None:
        if line.startswith(ERROR_PREFIX):
            status = self._error_decoder.decode(line).object
            raise ApiError(status.code or 500, msgspec.json.encode(status), "WATCH", self.path)
        if line.startswith(BOOKMARK_PREFIX):
            self.resource_version = (
                self._bookmark_decoder.decode(line).object.metadata.resourceVersion
                or self.resource_version)
            return
        event = self._event_decoder.decode(line)
        obj: _HasMeta = event.object  # type: ignore[assignment]
        rv = obj.metadata.resourceVersion
        if rv:
            self.resource_version = rv
        self.handler.on_event(event.type, event.object)


async def cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
