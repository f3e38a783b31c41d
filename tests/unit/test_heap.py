import gc

from pykubemark.hollow import heap


def test_freeze_exempts_survivors_and_a_rebaseline_waits_to_be_asked() -> None:
    baseline = heap.Baseline()
    try:
        frozen = baseline.freeze()
        # a frozen object that dies later leaves the permanent generation: never more
        assert frozen > 0 and 0 < gc.get_freeze_count() <= frozen
        assert baseline.frozen_at is not None
        now = baseline.frozen_at + heap.REBASELINE_EVERY
        assert not baseline.due(now)  # nobody asked
        baseline.stale = True
        assert not baseline.due(baseline.frozen_at + 1)  # asked, but too soon
        assert baseline.due(now)
    finally:
        gc.unfreeze()


def test_configure_keeps_the_older_generations_thresholds() -> None:
    before = gc.get_threshold()
    try:
        heap.configure()
        young, middle, old = gc.get_threshold()
        assert young > before[0] and (middle, old) == before[1:]
    finally:
        gc.set_threshold(*before)
