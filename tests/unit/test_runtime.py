"""The shared runtime's processor sharing: its arithmetic on a clock of our own, and the
asyncio wrapper's order of completion and cancellation."""

from __future__ import annotations

import asyncio

import pytest

from pykubemark.hollow.runtime import ProcessorSharing, SharedRuntime


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
