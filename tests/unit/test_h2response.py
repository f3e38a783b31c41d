"""A stream's answer as the client reads it: whole bodies, errors, and abandoned reads."""

from __future__ import annotations

import asyncio
import gc

import pytest

from pykubemark.kube.http2 import ConnectionClosed, Response


class Conn:
    """What a Response needs of its connection: the loop, and a way to reset its stream."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.reset: list[int] = []

    def _reset(self, stream_id: int) -> None:
        self.reset.append(stream_id)


def test_a_body_in_several_frames_is_read_whole() -> None:
    async def run() -> tuple[int, bytes, list[int]]:
        conn = Conn(asyncio.get_running_loop())
        response = Response(conn, 1)  # type: ignore[arg-type]
        reading = asyncio.create_task(response.read())
        await asyncio.sleep(0)
        response._on_headers([(b":status", b"201"), (b"content-type", b"x")])
        for part in (b"ab", b"cd", b"e"):
            response._on_data(part)
            await asyncio.sleep(0)
        assert not reading.done()  # nothing until the stream ends
        response._on_end()
        return response.status, await reading, conn.reset

    status, body, reset = asyncio.run(run())
    assert (status, body, reset) == (201, b"abcde", [])


def test_a_stream_failed_before_its_headers_raises_once() -> None:
    """Raised to the reader, and not reported again as a future nobody retrieved."""
    unretrieved: list[str] = []

    async def run() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: unretrieved.append(
            context["message"]))
        response = Response(Conn(loop), 3)  # type: ignore[arg-type]
        reading = asyncio.create_task(response.read())
        await asyncio.sleep(0)
        response._on_end(ConnectionClosed("gone"))
        with pytest.raises(ConnectionClosed):
            await reading

    asyncio.run(run())
    gc.collect()
    assert unretrieved == []


def test_an_abandoned_read_resets_its_stream() -> None:
    async def run() -> list[int]:
        conn = Conn(asyncio.get_running_loop())
        response = Response(conn, 5)  # type: ignore[arg-type]
        response._on_headers([(b":status", b"200")])
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await response.read()
        return conn.reset

    assert asyncio.run(run()) == [5]


def test_a_read_past_its_deadline_times_out_and_resets_its_stream() -> None:
    async def run() -> tuple[list[int], bool]:
        loop = asyncio.get_running_loop()
        conn = Conn(loop)
        late = Response(conn, 7, deadline=loop.time() + 0.01)  # type: ignore[arg-type]
        late._on_headers([(b":status", b"200")])
        with pytest.raises(TimeoutError):
            await late.read()
        # an answer that ends before its deadline is read, and its timer does not fire
        timely = Response(conn, 9, deadline=loop.time() + 0.05)  # type: ignore[arg-type]
        reading = asyncio.create_task(timely.read())
        await asyncio.sleep(0)
        timely._on_data(b"ok")
        timely._on_end()
        body = await reading
        await asyncio.sleep(0.1)
        return conn.reset, body == b"ok"

    assert asyncio.run(run()) == ([7], True)


def test_headers_are_read_case_insensitively_without_pseudo_headers() -> None:
    async def run() -> Response:
        response = Response(Conn(asyncio.get_running_loop()), 1)  # type: ignore[arg-type]
        response._on_headers([(b":status", b"429"), (b"retry-after", b"1")])
        return response

    response = asyncio.run(run())
    assert response.status == 429
    assert response.headers.get("Retry-After") == "1"
    assert ":status" not in response.headers


class Pool:
    """An HTTP/2 pool whose answers arrive a loop iteration after the request is sent."""

    def __init__(self, fields: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.fields, self.body = fields, body

    async def request(self, method: str, path: str, headers: object, body: object = None, *,
                      started: bool = True, timeout: float | None = None) -> Response:
        loop = asyncio.get_running_loop()
        response = Response(Conn(loop), 1)  # type: ignore[arg-type]

        def answer() -> None:
            response._on_headers(self.fields)
            response._on_data(self.body)
            response._on_end()

        loop.call_soon(answer)
        return response


@pytest.mark.parametrize(("status", "raised"), [(b"200", None), (b"404", 404), (b"409", 409)])
def test_the_client_judges_an_answer_by_its_status_once_it_is_in(
        status: bytes, raised: int | None) -> None:
    from pykubemark.kube.client import ApiError, Client
    from pykubemark.kube.config import server_config

    async def run() -> int | None:
        pool = Pool([(b":status", status)], b'{"kind": "Status", "reason": "x"}')
        client = Client(server_config("https://127.0.0.1:1"), pool=pool)  # type: ignore[arg-type]
        try:
            await client.get("/api/v1/nodes/n")
        except ApiError as exc:
            return exc.status
        return None

    assert asyncio.run(run()) == raised


class Throttled(Pool):
    """Every answer a 429 with Retry-After: 0, each a little while after its request."""

    def __init__(self) -> None:
        super().__init__([(b":status", b"429"), (b"retry-after", b"0")], b"{}")
        self.attempts = 0

    async def request(self, *args: object, **kwargs: object) -> Response:
        self.attempts += 1
        await asyncio.sleep(0.05)
        return await super().request(*args, **kwargs)  # type: ignore[arg-type]


def test_retries_after_429_stop_at_the_request_deadline_as_client_go() -> None:
    """client-go's request timeout covers its Retry-After retries (rest/request.go), so a
    heartbeat under throttling gives up after its 10 s and its own loop decides again."""
    from pykubemark.kube.client import ApiError, Client
    from pykubemark.kube.config import server_config

    async def run(timeout: float) -> tuple[str, int]:
        pool = Throttled()
        client = Client(server_config("https://127.0.0.1:1"), pool=pool,  # type: ignore[arg-type]
                        timeout=timeout)
        try:
            await client.get("/api/v1/nodes/n")
        except (ApiError, TimeoutError) as exc:
            return type(exc).__name__, pool.attempts
        return "answered", pool.attempts

    kind, attempts = asyncio.run(run(0.2))
    assert kind == "TimeoutError" and 1 < attempts < 11
    assert asyncio.run(run(60.0)) == ("ApiError", 11)  # 10 retries, then the 429 itself
