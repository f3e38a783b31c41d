"""The shared runtime's processor sharing: its arithmetic on a clock of our own, and the
asyncio wrapper's order of completion and cancellation; the queued runtime's order."""

from __future__ import annotations

import asyncio

import pytest

from pykubemark.hollow.runtime import ProcessorSharing, QueuedRuntime, SharedRuntime


def test_one_slot_shares_its_time_among_the_jobs_in_it() -> None:
    ps: ProcessorSharing[str] = ProcessorSharing(1)
    ps.add("a", 1.0, 0.0)
    assert ps.next_finish() == pytest.approx(1.0)  # alone: full speed
    ps.add("b", 1.0, 0.5)  # a has 0.5 left, now at half speed
    assert ps.next_finish() == pytest.approx(1.5)
    assert ps.finished(1.49) == []
    assert ps.finished(1.5) == ["a"]
    assert ps.next_finish() == pytest.approx(2.0)  # b: 0.5 left, alone again
    assert ps.finished(2.0) == ["b"] and ps.next_finish() is None


def test_ten_at_once_each_take_ten_times_as_long_as_one_alone() -> None:
    ps: ProcessorSharing[int] = ProcessorSharing(1)
    for job in range(10):
        ps.add(job, 0.3, 0.0)
    assert ps.next_finish() == pytest.approx(3.0)
    assert sorted(ps.finished(3.0)) == list(range(10))


def test_slots_run_that_many_at_full_speed() -> None:
    ps: ProcessorSharing[str] = ProcessorSharing(2)
    ps.add("a", 1.0, 0.0)
    ps.add("b", 2.0, 0.0)
    assert ps.next_finish() == pytest.approx(1.0)
    ps.add("c", 1.0, 0.5)  # three in two slots: each at two thirds
    assert ps.rate() == pytest.approx(2 / 3)
    assert ps.next_finish() == pytest.approx(0.5 + 0.5 / (2 / 3))


def test_a_job_that_leaves_gives_its_share_back() -> None:
    ps: ProcessorSharing[str] = ProcessorSharing(1)
    ps.add("a", 1.0, 0.0)
    ps.add("b", 1.0, 0.0)
    ps.remove("b", 1.0)  # a had 0.5 done
    assert ps.next_finish() == pytest.approx(1.5)


def test_a_runtime_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="slot"):
        ProcessorSharing(0)


def test_the_shared_runtime_calls_back_in_order_of_work_and_not_once_cancelled() -> None:
    async def body() -> list[str]:
        runtime = SharedRuntime(1)
        done: list[str] = []
        finished = asyncio.Event()
        runtime.submit(0.06, lambda: done.append("long"))
        cancelled = runtime.submit(0.01, lambda: done.append("cancelled"))
        runtime.submit(0.02, lambda: (done.append("short"), finished.set()))
        assert len(runtime) == 3
        cancelled.cancel()
        cancelled.cancel()  # twice: nothing more
        assert len(runtime) == 2
        await finished.wait()
        while len(runtime):
            await asyncio.sleep(0.01)
        return done

    assert asyncio.run(body()) == ["short", "long"]


def test_the_queued_runtime_serves_in_the_order_of_arrival_one_slot_at_a_time() -> None:
    """The long job that came first is done first, whatever the work of those behind it;
    one cancelled while waiting never runs, one cancelled while served frees its slot."""
    async def body() -> tuple[list[str], list[int]]:
        runtime = QueuedRuntime(1)
        done: list[str] = []
        sizes: list[int] = []
        finished = asyncio.Event()
        served = runtime.submit(10.0, lambda: done.append("cancelled while served"))
        runtime.submit(0.03, lambda: (done.append("first"), sizes.append(len(runtime))))
        waiting = runtime.submit(0.01, lambda: done.append("cancelled while waiting"))
        runtime.submit(0.01, lambda: (done.append("last"), finished.set()))
        sizes.append(len(runtime))
        waiting.cancel()
        served.cancel()
        sizes.append(len(runtime))
        await finished.wait()
        return done, sizes

    done, sizes = asyncio.run(body())
    assert done == ["first", "last"]
    assert sizes == [4, 2, 1]  # at the first's end, the last is still there


def test_a_queued_runtime_with_two_slots_serves_two_at_once() -> None:
    async def body() -> list[str]:
        runtime = QueuedRuntime(2)
        done: list[str] = []
        finished = asyncio.Event()
        runtime.submit(0.05, lambda: done.append("a"))
        runtime.submit(0.02, lambda: done.append("b"))  # beside a, not behind it
        runtime.submit(0.01, lambda: (done.append("c"), finished.set()))  # after b
        await finished.wait()
        await asyncio.sleep(0.06)
        return done

    assert asyncio.run(body()) == ["b", "c", "a"]


def test_a_queued_runtime_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="slot"):
        QueuedRuntime(0)
