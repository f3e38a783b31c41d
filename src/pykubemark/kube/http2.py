"""One multiplexed HTTP/2 connection to the apiserver, as client-go's transport keeps.

client-go sends every request and watch of a component over one TLS connection (ALPN
``h2``); the apiserver then holds one connection per component instead of one per watch.
This is an asyncio protocol over the loop's SSL transport that reads and writes the
frames itself (kube/h2wire.py): no thread, no extra buffering layer, no event objects.
HTTP/2 was chosen over httpx and curl_cffi by benchmarks/transport.py
(results/transport.json); the ``h2`` state machine that first drove it cost a third of a
pod's CPU (README, "Where a pod's CPU goes").

Health, as client-go 1.20's ``http2.Transport``: TCP keepalive every 30 s, and when no
frame has arrived for ``read_idle`` seconds a PING that must be answered within
``ping_timeout`` or the connection is closed and every stream on it fails (the next
request dials again): 30 s and 15 s, or client-go's environment variables
``HTTP2_READ_IDLE_TIMEOUT_SECONDS`` and ``HTTP2_PING_TIMEOUT_SECONDS``. Flow control
windows are client-go's (4 MiB per stream, 1 GiB per connection) and are topped up as
client-go does; request headers are indexed as its HPACK encoder indexes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from urllib.parse import urlsplit

from multidict import CIMultiDict

from pykubemark import telemetry
from pykubemark.kube import h2wire as wire

log = logging.getLogger(__name__)

STREAM_WINDOW = 4 << 20
CONNECTION_WINDOW = 1 << 30


def _seconds(variable: str, default: float) -> float:
    """client-go's HTTP/2 health knobs (k8s.io/apimachinery/pkg/util/net): whole seconds
    from the environment, 0 turning the PING off; a bad value keeps the default, said."""
    text = os.environ.get(variable, "")
    if not text:
        return default
    try:
        return float(int(text))
    except ValueError:
        log.warning("illegal %s (%r): the default %g s is used", variable, text, default)
        return default


READ_IDLE = _seconds("HTTP2_READ_IDLE_TIMEOUT_SECONDS", 30.0)
PING_TIMEOUT = _seconds("HTTP2_PING_TIMEOUT_SECONDS", 15.0)
KEEPALIVE = 30
#: client-go tops a stream's window up once this much of it is used.
STREAM_REFRESH = 4 << 10
MAX_HEADER_LIST = 10 << 20


class ConnectionClosed(ConnectionError):
    """The HTTP/2 connection died (reset, GOAWAY, failed health check) under a stream."""


class Response:
    """One stream's answer: status and headers first, then the body as it arrives."""

    __slots__ = ("_chunks", "_conn", "_done", "_error", "_fields", "_headers",
                 "_headers_ready", "_wake", "_whole", "deadline", "status", "stream_id")

    def __init__(self, conn: H2Connection, stream_id: int,
                 deadline: float | None = None) -> None:
        self._conn = conn
        #: loop time by which `read` must have the whole answer (None: no limit)
        self.deadline = deadline
        self.stream_id = stream_id
        self.status = 0
        self._fields: list[tuple[bytes, bytes]] = []
        self._headers: CIMultiDict[str] | None = None
        self._headers_ready = conn.loop.create_future()
        self._chunks: deque[bytes] = deque()
        self._done = False
        self._error: BaseException | None = None
        self._wake: asyncio.Future[None] | None = None
        self._whole = False  # a reader of the whole body: woken at the end only

    # -- fed by the protocol ---------------------------------------------------------
    @property
    def headers(self) -> CIMultiDict[str]:
        """The answer's headers, case-insensitive as HTTP's; decoded on first use (most
        answers are read for their status and body only)."""
        if self._headers is None:
            self._headers = CIMultiDict((name.decode(), value.decode())
                                        for name, value in self._fields
                                        if not name.startswith(b":"))
        return self._headers

    def _on_headers(self, headers: list[tuple[bytes, bytes]]) -> None:
        self._fields = headers
        for name, value in headers:
            if name == b":status":
                self.status = int(value)
                break
        if not self._headers_ready.done():
            self._headers_ready.set_result(None)

    def _on_data(self, data: bytes) -> None:
        self._chunks.append(data)
        if not self._whole:
            self._notify()

    def _on_end(self, error: BaseException | None = None) -> None:
        self._done = True
        self._error = error
        if not self._headers_ready.done():
            if error is None:
                self._headers_ready.set_result(None)
            else:
                # raised to whoever awaits `started`; a reader of the whole body (who
                # never does) gets it from `read` instead, so it is not reported unread
                self._headers_ready.set_exception(error)
                self._headers_ready.exception()
        self._notify()

    def _notify(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    # -- read by the caller ----------------------------------------------------------
    async def started(self) -> Response:
        await self._headers_ready
        return self

    async def chunks(self) -> AsyncGenerator[bytes]:
        try:
            while True:
                while self._chunks:
                    yield self._chunks.popleft()
                if self._done:
                    if self._error is not None:
                        raise self._error
                    return
                self._wake = self._conn.loop.create_future()
                await self._wake
        finally:
            self.close()

    async def read(self) -> bytes:
        """The whole body; TimeoutError (and the stream reset) if it has not ended by the
        request's deadline. The caller's task wakes once, when the stream ends, not once
        for the headers and once per DATA frame: most of a hollow node's requests are
        small answers, and a wake-up is a good part of their cost."""
        if not self._done:
            self._whole = True
            loop = self._conn.loop
            wake = self._wake = loop.create_future()
            timer = None if self.deadline is None else loop.call_at(self.deadline, _expire,
                                                                     wake)
            try:
                await wake
            finally:
                if timer is not None:
                    timer.cancel()
                self.close()  # a no-op once the server has ended the stream
        if self._error is not None:
            raise self._error
        return b"".join(self._chunks)

    def close(self) -> None:
        """Reset the stream if the server has not finished it (a watch we stop)."""
        if not self._done:
            self._done = True
            self._conn._reset(self.stream_id)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no answer before the request's deadline"))


class _Stream:
    """What the connection keeps of an open stream: its response, windows, header state."""

    __slots__ = ("headers_seen", "response", "send_window", "unacked")

    def __init__(self, response: Response, send_window: int) -> None:
        self.response = response
        self.send_window = send_window
        self.unacked = 0
        self.headers_seen = False


class H2Connection(asyncio.Protocol):
    """The protocol side: frames in and out (kube/h2wire.py), one Response per stream.
    A closed stream is forgotten at once: a late frame of it is counted against the
    connection's window and otherwise dropped."""

    def __init__(self, *, read_idle: float = READ_IDLE,
                 ping_timeout: float = PING_TIMEOUT) -> None:
        self._transport: asyncio.Transport | None = None
        self._streams: dict[int, _Stream] = {}
        self._next_stream_id = 1
        self._encoder = wire.RequestEncoder()
        self._decoder = wire.ResponseDecoder(max_header_list=MAX_HEADER_LIST)
        self._inbox = bytearray()
        self._block: list[bytes] = []  # a header block awaiting its CONTINUATION
        self._block_stream, self._block_end = 0, False
        self._out: list[bytes] = []
        # the server's settings (RFC 7540 defaults until its SETTINGS frame)
        self._max_streams = 1 << 31
        self._initial_window = wire.DEFAULT_WINDOW
        self._max_frame = wire.DEFAULT_FRAME_SIZE
        self._send_window = wire.DEFAULT_WINDOW  # the connection's
        self._conn_unacked = 0
        self._goaway = False
        self._window_waiters: list[asyncio.Future[None]] = []
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._read_idle, self._ping_timeout = read_idle, ping_timeout
        self._last_read = time.monotonic()
        self._ping_ack: asyncio.Future[None] | None = None
        self._health: asyncio.Task[None] | None = None
        self._flush_scheduled = False
        #: Kept: asking asyncio for the running loop costs a getpid() system call
        #: (Python 3.11), and every stream needs it a few times.
        self.loop = asyncio.get_event_loop()
        self.closed = self.loop.create_future()

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE)
        self._send(wire.PREFACE + wire.settings({
            wire.SETTINGS_ENABLE_PUSH: 0,
            wire.SETTINGS_INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            wire.SETTINGS_MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
        }) + wire.window_update(0, CONNECTION_WINDOW - wire.DEFAULT_WINDOW))
        if self._read_idle > 0:
            self._health = self.loop.create_task(self._health_loop())

    def data_received(self, data: bytes) -> None:
        self._last_read = time.monotonic()
        inbox = self._inbox
        if inbox:  # the start of a frame came with the last read
            inbox += data
            data = bytes(inbox)
            inbox.clear()
        try:
            frames, used = wire.split_frames(data, wire.DEFAULT_FRAME_SIZE)
            if used < len(data):
                inbox += data[used:]
            for kind, flags, stream_id, payload in frames:
                self._frame(kind, flags, stream_id, payload)
        except wire.ProtocolError as exc:
            self._send(wire.goaway(0, wire.PROTOCOL_ERROR))
            self._flush_now()
            self.close(ConnectionClosed(f"HTTP/2 protocol error: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            telemetry.CONNECTIONS_CLOSED["lost"] += 1
        self._fail(ConnectionClosed(f"connection lost: {exc or 'closed'}"))

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._block and kind != wire.CONTINUATION:
            raise wire.ProtocolError("a header block interrupted by another frame")
        if kind == wire.DATA:
            self._data(flags, stream_id, payload)
        elif kind == wire.HEADERS:
            self._block_stream, self._block_end = stream_id, bool(flags & wire.END_STREAM)
            self._block = [wire.unpad(flags, payload, priority=True)]
            if flags & wire.END_HEADERS:
                self._headers()
        elif kind == wire.CONTINUATION:
            if not self._block or stream_id != self._block_stream:
                raise wire.ProtocolError("CONTINUATION without its HEADERS")
            self._block.append(payload)
            if flags & wire.END_HEADERS:
                self._headers()
        elif kind == wire.RST_STREAM:
            code = int.from_bytes(payload[:4]) if len(payload) == 4 else -1
            self._end(stream_id, ConnectionClosed(f"stream reset (error code {code})"))
        elif kind == wire.SETTINGS:
            if not flags & wire.ACK:
                self._settings(payload)
        elif kind == wire.PING:
            if flags & wire.ACK:
                if self._ping_ack is not None and not self._ping_ack.done():
                    self._ping_ack.set_result(None)
            else:
                self._send(wire.frame(wire.PING, wire.ACK, 0, payload))
        elif kind == wire.GOAWAY:
            self._go_away(payload)
        elif kind == wire.WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif kind == wire.PUSH_PROMISE:
            raise wire.ProtocolError("PUSH_PROMISE with push disabled")
        # PRIORITY and unknown frame types are ignored, as RFC 7540 asks

    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        # Flow control as client-go's transport: the connection's window is topped up
        # once half of it is used, a stream's once 4 KiB of it are and it goes on.
        size = len(payload)
        self._conn_unacked += size
        if self._conn_unacked >= CONNECTION_WINDOW // 2:
            self._send(wire.window_update(0, self._conn_unacked))
            self._conn_unacked = 0
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        body = wire.unpad(flags, payload)
        if flags & wire.END_STREAM:
            if body:
                stream.response._on_data(body)
            self._end(stream_id)
            return
        stream.unacked += size
        if stream.unacked >= STREAM_REFRESH:
            self._send(wire.window_update(stream_id, stream.unacked))
            stream.unacked = 0
        if body:
            stream.response._on_data(body)

    def _headers(self) -> None:
        block = self._block[0] if len(self._block) == 1 else b"".join(self._block)
        self._block = []
        # Decoded even for a stream we forgot: the server's table must stay in step.
        fields = self._decoder.decode(block)
        stream = self._streams.get(self._block_stream)
        if stream is None:
            return
        if not stream.headers_seen:
            # RFC 7540 8.1.2.1: pseudo-header fields come first
            status = fields[0][1] if fields and fields[0][0] == b":status" else b""
            if not status.startswith(b"1"):  # a 1xx answer is followed by the real one
                stream.headers_seen = True
                stream.response._on_headers(fields)
        if self._block_end:
            self._end(self._block_stream)

    def _settings(self, payload: bytes) -> None:
        for key, value in wire.parse_settings(payload):
            if key == wire.SETTINGS_MAX_CONCURRENT_STREAMS:
                self._max_streams = value
            elif key == wire.SETTINGS_INITIAL_WINDOW_SIZE:
                delta, self._initial_window = value - self._initial_window, value
                for stream in self._streams.values():
                    stream.send_window += delta
            elif key == wire.SETTINGS_MAX_FRAME_SIZE:
                self._max_frame = value
            elif key == wire.SETTINGS_HEADER_TABLE_SIZE:
                self._encoder.table_size(value)
        self._send(wire.frame(wire.SETTINGS, wire.ACK, 0))
        self._wake_all(self._window_waiters)
        self._wake_slots()

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise wire.ProtocolError("WINDOW_UPDATE of the wrong size")
        increment = int.from_bytes(payload) & wire.MAX_STREAM_ID
        if stream_id == 0:
            self._send_window += increment
        elif (stream := self._streams.get(stream_id)) is not None:
            stream.send_window += increment
        self._wake_all(self._window_waiters)

    def _go_away(self, payload: bytes) -> None:
        """No new streams on this connection; those the server will not answer fail now,
        the others may finish (the next request dials again)."""
        last = int.from_bytes(payload[:4]) & wire.MAX_STREAM_ID if len(payload) >= 8 else 0
        code = int.from_bytes(payload[4:8]) if len(payload) >= 8 else -1
        if not self._goaway:
            telemetry.CONNECTIONS_CLOSED["goaway"] += 1
        self._goaway = True
        error = ConnectionClosed(f"GOAWAY (error code {code})")
        for stream_id in [s for s in self._streams if s > last]:
            self._end(stream_id, error)
        if not self._streams:
            self.close(error)

    # -- streams ---------------------------------------------------------------------
    @property
    def usable(self) -> bool:
        return not self.closed.done() and self._transport is not None and not self._goaway

    @property
    def streams_remembered(self) -> int:
        """Streams the connection still holds: what its memory grows with."""
        return len(self._streams)

    @property
    def streams_opened(self) -> int:
        return self._next_stream_id // 2

    async def request(self, method: str, authority: str, path: str,
                      headers: Mapping[str, str], body: bytes | None = None, *,
                      started: bool = True, timeout: float | None = None) -> Response:
        """Open a stream, send the request, and return once the response headers are in
        (with ``started=False`` at once: the caller reads the whole answer). With a
        ``timeout``, waiting for a stream slot or a window counts against it, and the
        response's `read` gets the rest."""
        deadline = None if timeout is None else self.loop.time() + timeout
        if deadline is not None and (started or len(self._streams) >= self._max_streams or (
                body and len(body) > min(self._initial_window, self._send_window))):
            async with asyncio.timeout_at(deadline):
                return await self._request(method, authority, path, headers, body,
                                           started, deadline)
        return await self._request(method, authority, path, headers, body, started, deadline)

    async def _request(self, method: str, authority: str, path: str,
                       headers: Mapping[str, str], body: bytes | None, started: bool,
                       deadline: float | None) -> Response:
        while len(self._streams) >= self._max_streams:
            waiter = self.loop.create_future()
            self._slot_waiters.append(waiter)
            await waiter
        self._check()
        stream_id = self._next_stream_id
        if stream_id > wire.MAX_STREAM_ID:
            self._goaway = True  # stream ids are used up: the next request dials again
            raise ConnectionClosed("stream ids exhausted")
        self._next_stream_id += 2
        response = Response(self, stream_id, deadline)
        self._streams[stream_id] = _Stream(response, self._initial_window)
        fields = [(b":method", method.encode()), (b":authority", authority.encode()),
                  (b":scheme", b"https"), (b":path", path.encode())]
        fields += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        if body:
            fields.append((b"content-length", str(len(body)).encode()))
        self._send(wire.header_frames(stream_id, self._encoder.encode(fields),
                                      self._max_frame, end_stream=not body))
        if body:
            await self._send_body(stream_id, body)
        return await response.started() if started else response

    async def _send_body(self, stream_id: int, body: bytes) -> None:
        view = memoryview(body)
        while view:
            self._check()
            stream = self._streams.get(stream_id)
            if stream is None:
                return  # reset or answered while we waited for the window
            window = min(stream.send_window, self._send_window, self._max_frame)
            if window <= 0:
                waiter = self.loop.create_future()
                self._window_waiters.append(waiter)
                await waiter
                continue
            chunk, view = view[:window], view[window:]
            stream.send_window -= len(chunk)
            self._send_window -= len(chunk)
            self._send(wire.data_frames(stream_id, chunk, self._max_frame,
                                        end_stream=not view))

    def _end(self, stream_id: int, error: BaseException | None = None) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            stream.response._on_end(error)
        self._wake_slots()
        if self._goaway and not self._streams:
            self.close()

    def _reset(self, stream_id: int) -> None:
        if self._streams.pop(stream_id, None) is None or self.closed.done():
            return
        self._send(wire.rst_stream(stream_id))
        self._wake_slots()

    # -- health ----------------------------------------------------------------------
    async def _health_loop(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while not self.closed.done():
                idle = time.monotonic() - self._last_read
                if idle < self._read_idle:
                    await asyncio.sleep(self._read_idle - idle)
                    continue
                self._ping_ack = self.loop.create_future()
                self._send(wire.frame(wire.PING, 0, 0, b"pykubemk"))
                try:
                    await asyncio.wait_for(self._ping_ack, self._ping_timeout)
                except TimeoutError:
                    telemetry.CONNECTIONS_CLOSED["ping"] += 1
                    self.close(ConnectionClosed("no PING answer: connection is dead"))
                    return

    # -- plumbing --------------------------------------------------------------------
    def _check(self) -> None:
        if not self.usable:
            raise ConnectionClosed("connection closed")

    def _send(self, data: bytes) -> None:
        """Queue frames and write them once per loop iteration: the streams started in
        one iteration leave in one TLS record and one send(), which is most of the CPU
        saved over a connection per request."""
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_scheduled = False
        if not self._out:
            return
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _wake_slots(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    @staticmethod
    def _wake_all(waiters: list[asyncio.Future[None]]) -> None:
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        waiters.clear()

    def _fail(self, error: BaseException) -> None:
        if self.closed.done():
            return
        self.closed.set_result(None)
        for stream_id in list(self._streams):
            stream = self._streams.pop(stream_id)
            stream.response._on_end(error)
        self._wake_all(self._window_waiters)
        self._wake_slots()
        if self._health is not None:
            self._health.cancel()

    def close(self, error: BaseException | None = None) -> None:
        if self._transport is not None and not self._transport.is_closing():
            if not self.closed.done():
                self._send(wire.goaway(0))  # the server opened no streams of its own
                self._flush_now()
            self._transport.abort() if error else self._transport.close()
        self._fail(error or ConnectionClosed("closed by client"))


class H2Pool:
    """Exactly one live connection to one server, dialled on first use and after a death."""

    def __init__(self, server: str, ssl_context: ssl.SSLContext | None,
                 server_hostname: str | None = None, *, read_idle: float = READ_IDLE,
                 ping_timeout: float = PING_TIMEOUT, connect_timeout: float = 10.0) -> None:
        parts = urlsplit(server)
        if parts.scheme != "https" or ssl_context is None:
            raise ValueError("HTTP/2 to the apiserver needs an https:// server")
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 443
        self.authority = parts.netloc
        self.server_hostname = server_hostname or self.host
        self._ssl = ssl_context  # offering ALPN h2 (KubeConfig.h2_ssl_context)
        self._read_idle, self._ping_timeout = read_idle, ping_timeout
        self._connect_timeout = connect_timeout
        self._conn: H2Connection | None = None
        self._dialing: asyncio.Future[H2Connection] | None = None
        self.dials = 0

    async def connection(self) -> H2Connection:
        if self._conn is not None and self._conn.usable:
            return self._conn
        if self._dialing is None:
            self._dialing = asyncio.ensure_future(self._dial())
        try:
            return await asyncio.shield(self._dialing)
        finally:
            if self._dialing is not None and self._dialing.done():
                self._dialing = None

    async def _dial(self) -> H2Connection:
        loop = asyncio.get_running_loop()
        self.dials += 1
        _, proto = await asyncio.wait_for(loop.create_connection(
            lambda: H2Connection(read_idle=self._read_idle, ping_timeout=self._ping_timeout),
            self.host, self.port, ssl=self._ssl, server_hostname=self.server_hostname),
            self._connect_timeout)
        ssl_object = proto._transport.get_extra_info("ssl_object") if proto._transport else None
        if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
            proto.close()
            raise ConnectionClosed("server did not negotiate HTTP/2 (ALPN h2)")
        self._conn = proto
        return proto

    async def request(self, method: str, path: str, headers: Mapping[str, str],
                      body: bytes | None = None, *, started: bool = True,
                      timeout: float | None = None) -> Response:
        """A request on the live connection; with a ``timeout``, a dial it has to wait
        for counts against it."""
        conn = self._conn
        if conn is None or not conn.usable:
            started_at = time.monotonic()
            async with asyncio.timeout(timeout):
                conn = await self.connection()
            if timeout is not None:
                timeout = max(0.0, timeout - (time.monotonic() - started_at))
        return await conn.request(method, self.authority, path, headers, body,
                                  started=started, timeout=timeout)

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

