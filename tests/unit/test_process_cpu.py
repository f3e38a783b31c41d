"""The process-tree CPU reading shared by ResourceUsage and the benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil

from pykubemark.measure.resources import cpu_seconds, process_tree


def test_tree_holds_descendants_and_is_empty_once_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pids = [p.pid for p in process_tree(os.getpid())]
        assert pids[0] == os.getpid() and child.pid in pids
        gone = psutil.Process(child.pid)
    finally:
        child.kill()
        child.wait()
    assert process_tree(child.pid) == []
    assert child.pid not in [p.pid for p in process_tree(psutil.Process())]
    # A process that exited counts nothing; the living ones still count.
    assert cpu_seconds([gone]) == 0.0
    assert cpu_seconds([gone, psutil.Process()]) > 0.0
