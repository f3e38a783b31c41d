"""REST verbs against the apiserver over a shared aiohttp pool or one HTTP/2 connection.

By default thousands of hollow nodes share one aiohttp (HTTP/1.1) pool; each passes its
own rate limiter and user agent. With ``http2=True`` a Client and its `with_identity`
views multiplex everything over one HTTP/2 connection (kube/http2.py), as a client-go
component does; ``content_type="protobuf"`` makes lists and watches ask for the
apiserver's protobuf (kube/protobuf.py), decoded into the same typed views as JSON.
429 and 5xx answers with Retry-After are retried as client-go does
(up to 10 times, sleeping as told); other failures are raised for the caller, whose own
loop (lease, status, reflector) decides when to try again, like the kubelet's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncGenerator, AsyncIterator, Collection, Mapping
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp
import orjson
from yarl import URL

from pykubemark import telemetry
from pykubemark.kube import protojson
from pykubemark.kube.config import KubeConfig
from pykubemark.kube.http2 import H2Pool
from pykubemark.kube.protobuf import MAGIC, PROTOBUF, CodecError, frames
from pykubemark.kube.ratelimit import UNLIMITED, TokenBucket

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
MAX_RETRY_AFTER = 10
#: client-go's HTTP/1.1 transport keeps an idle connection 90 s (``IdleConnTimeout``);
#: aiohttp's 15 s default would redo a TLS handshake after every pause of a node's pod
#: traffic.
IDLE_CONNECTION_SECONDS = 90.0
CONTENT_TYPES = ("json", "protobuf")
#: What a protobuf client accepts, as client-go's AcceptContentTypes: protobuf where the
#: apiserver has it (built-in kinds), JSON otherwise (custom resources, discovery).
PROTOBUF_OR_JSON = f"{PROTOBUF}, {JSON}"
#: What a request raises when the connection, not the apiserver, failed; callers with a
#: loop of their own catch these to try again later.
NETWORK_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


class ApiError(Exception):
    """A non-2xx answer; ``reason`` is the Status reason (NotFound, Conflict, Expired...)."""

    def __init__(self, status: int, body: bytes, method: str = "", path: str = "") -> None:
        self.status = status
        self.body = body
        self.reason = ""
        self.message = body[:200].decode(errors="replace")
        with contextlib.suppress(ValueError, AttributeError):
            parsed = orjson.loads(body)
            self.reason = parsed.get("reason", "")
            self.message = parsed.get("message", self.message)
        super().__init__(f"{method} {path}: {status} {self.reason} {self.message}")

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def gone(self) -> bool:
        return self.status == 410


def _as_json(payload: bytes) -> bytes:
    try:
        return protojson.decode(payload)
    except (protojson.UnknownKind, CodecError, ValueError) as exc:
        raise CodecError(f"protobuf answer not convertible: {exc}") from None


def answer(payload: bytes, fields: Collection[str] | None = None) -> dict[str, Any]:
    """An answer's object as a dict, whichever encoding it came in."""
    if payload.startswith(MAGIC):
        try:
            return protojson.to_dict_answer(payload, fields)
        except (protojson.UnknownKind, CodecError, ValueError) as exc:
            raise CodecError(f"protobuf answer not convertible: {exc}") from None
    return orjson.loads(payload)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return 1.0


class _Answer(Protocol):
    """What a transport hands back besides status and body: headers, read only when the
    status asks for them (a 429's or 5xx's Retry-After)."""

    @property
    def headers(self) -> Mapping[str, str]: ...


@functools.lru_cache(maxsize=16)
def _client_timeout(total: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=total)


class Client:
    """One apiserver, one connection pool; cheap per-caller views via `with_identity`."""

    def __init__(self, config: KubeConfig, *, user_agent: str = "pykubemark",
                 limiter: TokenBucket = UNLIMITED, session: aiohttp.ClientSession | None = None,
                 headers: dict[str, str] | None = None, http2: bool = False,
                 content_type: str = "json", pool: H2Pool | None = None,
                 timeout: float = 60.0) -> None:
        if content_type not in CONTENT_TYPES:
            raise ValueError(f"content_type must be one of {CONTENT_TYPES}, not {content_type!r}")
        self.config = config
        self.user_agent = user_agent
        self.limiter = limiter
        self.http2 = http2 or pool is not None
        #: Lists and watches of built-in types ask for protobuf; other calls stay JSON.
        self.protobuf = content_type == "protobuf"
        #: Per-request deadline, as rest.Config.Timeout (the kubelet's heartbeat client
        #: gives up after min(10 s, lease duration)).
        self.timeout = timeout
        self._session = session
        self._owns_session = session is None
        self._pool = pool
        self._owns_pool = pool is None
        self._headers = {
            "Accept": JSON, "User-Agent": user_agent, **config.headers, **(headers or {})
        }

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0, ssl=self.config.ssl_context if self.config.ssl_context else False,
                enable_cleanup_closed=True, keepalive_timeout=IDLE_CONNECTION_SECONDS,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, json_serialize=lambda o: orjson.dumps(o).decode(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                # The apiserver sets no cookies: no jar to update and filter per request.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    @property
    def pool(self) -> H2Pool:
        if self._pool is None:
            self._pool = H2Pool(self.config.server, self.config.h2_ssl_context(),
                                self.config.tls_server_name)
        return self._pool

    def with_identity(self, *, user_agent: str | None = None, limiter: TokenBucket | None = None,
                      config: KubeConfig | None = None, timeout: float | None = None) -> Client:
        """A view sharing this pool (or HTTP/2 connection) with its own agent, limiter,
        timeout or token; another client certificate needs a connection of its own."""
        shared = config is None or config is self.config
        return Client(config or self.config, user_agent=user_agent or self.user_agent,
                      limiter=limiter or self.limiter,
                      session=self.session if shared and not self.http2 else None,
                      pool=self.pool if shared and self.http2 else None,
                      http2=self.http2,
                      content_type="protobuf" if self.protobuf else "json",
                      timeout=timeout or self.timeout)

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        if self._owns_pool and self._pool is not None:
            await self._pool.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- verbs ---------------------------------------------------------------------
    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      body: Any = None, content_type: str = JSON,
                      timeout: float | None = None, accept: str | None = None,
                      as_json: bool = True) -> bytes:
        """The answer's body. A protobuf client sends creates and updates of built-in
        kinds in protobuf, asks for protobuf (JSON accepted too) and hands back JSON
        bytes whatever came, so that callers keep one shape; with ``as_json=False`` a
        protobuf answer is handed back as received (a caller that ignores it, or that
        reads it with `answer`)."""
        data = body if isinstance(body, bytes | None) else None
        convert = False
        if self.protobuf and accept is None and protojson.generated_for(path):
            accept, convert = PROTOBUF_OR_JSON, True
            if (data is None and body is not None and content_type == JSON
                    and isinstance(body, dict) and "kind" in body):
                # A kind we have no message for, or a field the schema lacks: JSON.
                with contextlib.suppress(protojson.UnknownKind, ValueError):
                    data, content_type = protojson.encode(body), PROTOBUF
        if data is None and body is not None:
            data = orjson.dumps(body)
        headers = self._headers if data is None else {**self._headers, "Content-Type": content_type}
        if accept is not None:
            headers = {**headers, "Accept": accept}
        send = self._send_h2 if self.http2 else self._send_h1
        timeout = timeout or self.timeout
        deadline = 0.0
        for attempt in range(MAX_RETRY_AFTER + 1):
            await self.limiter.wait()
            if attempt == 0:
                # as client-go's request(): the deadline starts after the first wait for
                # the rate limiter and covers the retries (and their Retry-After sleeps)
                deadline = time.monotonic() + timeout
                left = timeout
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{method} {path}: {timeout:g} s passed, {attempt} "
                                       "answers asked to wait and try again")
            kind = telemetry.classify(method, path, params)
            try:
                status, answered, payload = await send(method, path, params, data, headers,
                                                       left)
            except Exception:
                telemetry.REQUESTS[(*kind, "error")] += 1
                raise
            telemetry.REQUESTS[(*kind, str(status))] += 1
            if convert and payload.startswith(MAGIC) and (as_json or status >= 300):
                payload = _as_json(payload)
            if status < 300:
                return payload
            wait = _retry_after(answered.headers)
            if wait is None or not (status == 429 or status >= 500):
                raise ApiError(status, payload, method, path)
            telemetry.RETRIES[kind] += 1
            await asyncio.sleep(wait)
        raise ApiError(429, payload, method, path)

    async def _send_h1(self, method: str, path: str, params: Mapping[str, str] | None,
                       data: bytes | None, headers: Mapping[str, str],
                       timeout: float) -> tuple[int, _Answer, bytes]:
        async with self.session.request(
            method, self._url(path, params), data=data, headers=headers,
            timeout=_client_timeout(timeout), server_hostname=self.config.tls_server_name,
        ) as response:
            return response.status, response, await response.read()

    def _url(self, path: str, params: Mapping[str, str] | None) -> URL:
        """The URL already encoded (paths and names of Kubernetes objects need no
        quoting; the query is urlencoded here): yarl neither parses nor re-quotes it."""
        target = self.config.server + path
        if params:
            target += "?" + urlencode(params)
        return URL(target, encoded=True)

    async def _send_h2(self, method: str, path: str, params: Mapping[str, str] | None,
                       data: bytes | None, headers: Mapping[str, str],
                       timeout: float) -> tuple[int, _Answer, bytes]:
        """The deadline covers the whole request; the answer's wait (nearly all of it)
        has it as one timer on the stream, cheaper than a timeout scope per request, and
        only a request that has to wait before it is sent (a dial, a stream slot, a flow
        control window) pays for a scope."""
        target = f"{path}?{urlencode(params)}" if params else path
        response = await self.pool.request(method, target, headers, data, started=False,
                                           timeout=timeout)
        body = await response.read()  # the status is known once the answer is in
        return response.status, response, body

    async def object(self, method: str, path: str, *,
                     params: Mapping[str, str] | None = None, body: Any = None,
                     fields: Collection[str] | None = None) -> dict[str, Any]:
        """The answer as a dict, without the JSON round trip a protobuf answer takes in
        `request`; with ``fields``, a protobuf answer converts only those fields, dotted for
        one field of a nested object (the kubelet's reads of its Node and pods need the
        uid and the status, not the spec, the images or the managed fields)."""
        return answer(await self.request(method, path, params=params, body=body,
                                         as_json=False), fields)

    async def get(self, path: str, params: Mapping[str, str] | None = None, *,
                  accept: str | None = None) -> bytes:
        return await self.request("GET", path, params=params, accept=accept)

    async def create(self, path: str, body: Any, *, as_json: bool = True) -> bytes:
        return await self.request("POST", path, body=body, as_json=as_json)

    async def replace(self, path: str, body: Any) -> bytes:
        return await self.request("PUT", path, body=body)

    async def patch(self, path: str, body: Any, content_type: str = STRATEGIC_MERGE_PATCH, *,
                    as_json: bool = True) -> bytes:
        return await self.request("PATCH", path, body=body, content_type=content_type,
                                  as_json=as_json)

    async def delete(self, path: str, body: Any = None, *, as_json: bool = True) -> bytes:
        return await self.request("DELETE", path, body=body, as_json=as_json)

    async def stream(self, path: str, params: Mapping[str, str], *,
                     protobuf: bool = False) -> AsyncIterator[bytes]:
        """Lines of a JSON watch (no size limit per line), or protobuf frames, as they arrive."""
        if self.http2 or protobuf:
            async for unit in self._stream_units(path, params, protobuf):
                yield unit
            return
        await self.limiter.wait()
        async with self.session.get(
            self.config.server + path, params=params, headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None),
            server_hostname=self.config.tls_server_name,
        ) as response:
            if response.status >= 300:
                raise ApiError(response.status, await response.read(), "WATCH", path)
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                if b"\n" not in chunk:
                    continue
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line:
                        yield line

    async def _stream_units(self, path: str, params: Mapping[str, str],
                            protobuf: bool) -> AsyncIterator[bytes]:
        await self.limiter.wait()
        headers = {**self._headers, "Accept": PROTOBUF} if protobuf else self._headers
        if self.http2:
            response = await self.pool.request("GET", f"{path}?{urlencode(params)}", headers)
            if response.status >= 300:
                raise ApiError(response.status, await response.read(), "WATCH", path)
            chunks: AsyncGenerator[bytes] = response.chunks()
        else:
            chunks = self._stream_h1(path, params, headers)
        buffer = bytearray()
        try:
            async for chunk in chunks:
                buffer += chunk
                if protobuf:
                    for frame in frames(buffer):
                        yield frame
                elif b"\n" in chunk:
                    *lines, rest = bytes(buffer).split(b"\n")
                    buffer[:] = rest
                    for line in lines:
                        if line:
                            yield line
        finally:
            await chunks.aclose()  # an HTTP/2 watch we stop reading is reset at once

    async def _stream_h1(self, path: str, params: Mapping[str, str],
                         headers: Mapping[str, str]) -> AsyncGenerator[bytes]:
        async with self.session.get(
            self.config.server + path, params=params, headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None),
            server_hostname=self.config.tls_server_name,
        ) as response:
            if response.status >= 300:
                raise ApiError(response.status, await response.read(), "WATCH", path)
            async for chunk in response.content.iter_any():
                yield chunk
