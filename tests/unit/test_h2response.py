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
