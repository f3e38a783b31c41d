"""One multiplexed HTTP/2 connection to the apiserver, as client-go's transport keeps.

client-go sends every request and watch of a component over one TLS connection (ALPN
``h2``); the apiserver then holds one connection per component instead of one per watch.
This is the ``h2`` state machine (sans-I/O, pure Python) driven by an asyncio protocol
over the loop's SSL transport: no thread, no extra buffering layer. Chosen over httpx and
curl_cffi by benchmarks/transport.py (results/transport.json).

Health, as client-go 1.20's ``http2.Transport``: TCP keepalive every 30 s, and when no
frame has arrived for ``read_idle`` seconds a PING that must be answered within
``ping_timeout`` or the connection is closed and every stream on it fails (the next
request dials again). Flow control windows are client-go's (4 MiB per stream, 1 GiB per
connection), and received data is acknowledged as it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

STREAM_WINDOW = 4 << 20
CONNECTION_WINDOW = 1 << 30
READ_IDLE = 30.0
PING_TIMEOUT = 15.0
KEEPALIVE = 30


class ConnectionClosed(ConnectionError):
    """The HTTP/2 connection died (reset, GOAWAY, failed health check) under a stream."""


class Response:
    """One stream's answer: status and headers first, then the body as it arrives."""

    __slots__ = ("_chunks", "_conn", "_done", "_error", "_headers_ready", "_wake", "headers",
                 "status", "stream_id")

    def __init__(self, conn: H2Connection, stream_id: int) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self.status = 0
        self.headers: dict[str, str] = {}
        self._headers_ready = conn.loop.create_future()
        self._chunks: deque[bytes] = deque()
        self._done = False
        self._error: BaseException | None = None
        self._wake: asyncio.Future[None] | None = None

    # -- fed by the protocol ---------------------------------------------------------
    def _on_headers(self, headers: list[tuple[bytes, bytes]]) -> None:
        for name, value in headers:
            if name == b":status":
                self.status = int(value)
            else:
                self.headers[name.decode()] = value.decode()
        if not self._headers_ready.done():
            self._headers_ready.set_result(None)

    def _on_data(self, data: bytes) -> None:
        self._chunks.append(data)
        self._notify()

    def _on_end(self, error: BaseException | None = None) -> None:
        self._done = True
        self._error = error
        if not self._headers_ready.done():
            if error is None:
                self._headers_ready.set_result(None)
            else:
                self._headers_ready.set_exception(error)
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
        return b"".join([chunk async for chunk in self.chunks()])

    def close(self) -> None:
        """Reset the stream if the server has not finished it (a watch we stop)."""
        if not self._done:
            self._done = True
            self._conn._reset(self.stream_id)


class _Machine(h2.connection.H2Connection):
    """h2's state machine, remembering only the last 32 closed streams. h2 keeps 65 536
    per connection (to recognise late frames of a stream it closed), ~100 bytes each: a
    connection that lives for days grows by ~100 bytes per request — 6 MiB a minute for
    2000 hollow nodes in the soak. Late frames come within a round trip; a few streams
    close meanwhile, not dozens."""

    MAX_CLOSED_STREAMS = 32


class H2Connection(asyncio.Protocol):
    """The protocol side: h2 events in, frames out, one Response per stream."""

    def __init__(self, *, read_idle: float = READ_IDLE,
                 ping_timeout: float = PING_TIMEOUT) -> None:
        self._h2 = _Machine(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_inbound_headers=False,
            normalize_inbound_headers=False, validate_outbound_headers=False,
            normalize_outbound_headers=False))
        self._transport: asyncio.Transport | None = None
        self._streams: dict[int, Response] = {}
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
        self._h2.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 10 << 20,
        })
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self._flush()
        if self._read_idle > 0:
            self._health = self.loop.create_task(self._health_loop())

    def data_received(self, data: bytes) -> None:
        self._last_read = time.monotonic()
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._fail(ConnectionClosed(f"HTTP/2 protocol error: {exc}"))
            return
        for event in events:
            self._handle(event)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionClosed(f"connection lost: {exc or 'closed'}"))

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            response = self._streams.get(event.stream_id)
            if event.flow_controlled_length:
                self._h2.acknowledge_received_data(event.flow_controlled_length,
                                                   event.stream_id)
            if response is not None:
                response._on_data(event.data)
        elif isinstance(event, h2.events.ResponseReceived):
            if (response := self._streams.get(event.stream_id)) is not None:
                response._on_headers(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            self._end(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self._end(event.stream_id, ConnectionClosed(f"stream reset ({event.error_code!r})"))
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self._wake_all(self._window_waiters)
            self._wake_slots()
        elif isinstance(event, h2.events.PingAckReceived):
            if self._ping_ack is not None and not self._ping_ack.done():
                self._ping_ack.set_result(None)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._fail(ConnectionClosed(f"GOAWAY ({event.error_code!r})"))

    # -- streams ---------------------------------------------------------------------
    @property
    def usable(self) -> bool:
        return not self.closed.done() and self._transport is not None

    @property
    def streams_remembered(self) -> int:
        """Streams the state machine still holds, open or closed: what a connection's
        memory grows with."""
        return len(self._h2.streams) + len(self._h2._closed_streams)

    async def request(self, method: str, authority: str, path: str,
                      headers: Mapping[str, str], body: bytes | None = None) -> Response:
        """Open a stream, send the request, and return once the response headers are in."""
        while len(self._streams) >= self._h2.remote_settings.max_concurrent_streams:
            waiter = self.loop.create_future()
            self._slot_waiters.append(waiter)
            await waiter
        self._check()
        stream_id = self._h2.get_next_available_stream_id()
        response = Response(self, stream_id)
        self._streams[stream_id] = response
        pseudo = [(b":method", method.encode()), (b":authority", authority.encode()),
                  (b":scheme", b"https"), (b":path", path.encode())]
        self._h2.send_headers(stream_id, pseudo + [(k.lower().encode(), v.encode())
                                                   for k, v in headers.items()],
                              end_stream=not body)
        self._flush()
        if body:
            await self._send_body(stream_id, body)
        return await response.started()

    async def _send_body(self, stream_id: int, body: bytes) -> None:
        view = memoryview(body)
        while view:
            self._check()
            window = min(self._h2.local_flow_control_window(stream_id),
                         self._h2.max_outbound_frame_size)
            if window <= 0:
                waiter = self.loop.create_future()
                self._window_waiters.append(waiter)
                await waiter
                continue
            chunk, view = view[:window], view[window:]
            self._h2.send_data(stream_id, bytes(chunk), end_stream=not view)
            self._flush()

    def _end(self, stream_id: int, error: BaseException | None = None) -> None:
        response = self._streams.pop(stream_id, None)
        if response is not None:
            response._on_end(error)
        self._wake_slots()

    def _reset(self, stream_id: int) -> None:
        if self._streams.pop(stream_id, None) is None or not self.usable:
            return
        with contextlib.suppress(h2.exceptions.H2Error):
            self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            self._flush()
        self._wake_slots()

    # -- health ----------------------------------------------------------------------
    async def _health_loop(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while self.usable:
                idle = time.monotonic() - self._last_read
                if idle < self._read_idle:
                    await asyncio.sleep(self._read_idle - idle)
                    continue
                self._ping_ack = self.loop.create_future()
                self._h2.ping(b"pykubemk")
                self._flush()
                try:
                    await asyncio.wait_for(self._ping_ack, self._ping_timeout)
                except TimeoutError:
                    self.close(ConnectionClosed("no PING answer: connection is dead"))
                    return

    # -- plumbing --------------------------------------------------------------------
    def _check(self) -> None:
        if not self.usable:
            raise ConnectionClosed("connection closed")

    def _flush(self) -> None:
        """Write pending frames once per loop iteration: the streams started in one
        iteration leave in one TLS record and one send(), which is most of the CPU saved
        over a connection per request."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_scheduled = False
        data = self._h2.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
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
            self._end(stream_id, error)
        self._wake_all(self._window_waiters)
        self._wake_slots()
        if self._health is not None:
            self._health.cancel()

    def close(self, error: BaseException | None = None) -> None:
        if self._transport is not None and not self._transport.is_closing():
            with contextlib.suppress(h2.exceptions.H2Error):
                self._h2.close_connection()
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
                      body: bytes | None = None) -> Response:
        conn = await self.connection()
        return await conn.request(method, self.authority, path, headers, body)

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

