"""Ctrl-C and SIGTERM at any phase of `up`, and SIGTERM to `hollow`: nothing is orphaned.

`up` is interrupted while etcd starts and while the hollow nodes start: it stops what it
started, says so in one line, exits 130, and its state says stopped. A second Ctrl-C
during that cleanup exits at once and names what is left behind. `hollow` stops on
SIGTERM as on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import psutil
import pytest
from helpers import CLI, Cluster, Fleet, run_cli, wait_for

from pykubemark.cluster.state import ClusterState, cluster_dir, load

#: Tests that start clusters of their own: `pytest -m "not slow"` leaves them out.
pytestmark = pytest.mark.slow


def start_up(name: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, "up", "--name", name, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def wait_for_component(name: str, component: str, up: subprocess.Popen[str],
                       seen: set[psutil.Process]) -> ClusterState:
    """Poll the state file until ``component`` is recorded and alive; collect every
    descendant of `up` seen meanwhile."""
    def recorded() -> ClusterState | None:
        with contextlib.suppress(psutil.Error):
            seen.update(psutil.Process(up.pid).children(recursive=True))
        assert up.poll() is None, up.communicate()
        if not (cluster_dir(name) / "state.json").is_file():
            return None
        state = load(name)
        proc = state.proc(component)
        return state if proc is not None and proc.alive() else None

    return wait_for(f"{component} of {name} to run", recorded, 180, 0.05)


def in_sessions(pids: set[int]) -> list[psutil.Process]:
    """Live processes in a session led by one of ``pids``: every child `up` starts leads
    its own session, and what it forks (etcd's helpers, hollow shards) stays in it."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getsid(proc.pid) in pids and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def assert_nothing_left(name: str, seen: set[psutil.Process]) -> None:
    state = load(name)
    assert state.options.get("stopped") is True
    assert not state.running(), state.running()
    pids = {p.pid for p in state.processes}
    assert not in_sessions(pids)
    alive = [p for p in seen if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, alive


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("pykubemark: "), stderr
    return lines[0]


def test_ctrl_c_while_etcd_starts_stops_everything(binaries) -> None:
    seen: set[psutil.Process] = set()
    up = start_up("intr-etcd", "--nodes", "5")
    try:
        wait_for_component("intr-etcd", "etcd", up, seen)
        up.send_signal(signal.SIGINT)
        _out, err = up.communicate(timeout=120)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 130, err
    line = one_line(err)
    assert "interrupted" in line and "stopped" in line and "left running: nothing" in line
    assert_nothing_left("intr-etcd", seen)


def test_sigterm_while_hollow_nodes_start_stops_everything(binaries) -> None:
    seen: set[psutil.Process] = set()
    up = start_up("intr-hollow", "--nodes", "5", "--prefix", "ih")
    try:
        wait_for_component("intr-hollow", "hollow", up, seen)
        up.send_signal(signal.SIGTERM)
        _out, err = up.communicate(timeout=120)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 130, err
    assert "left running: nothing" in one_line(err)
    assert_nothing_left("intr-hollow", seen)


def test_second_ctrl_c_exits_at_once_and_says_what_is_left(binaries) -> None:
    seen: set[psutil.Process] = set()
    up = start_up("intr-twice", "--nodes", "5", "--prefix", "it")
    try:
        wait_for_component("intr-twice", "hollow", up, seen)
        up.send_signal(signal.SIGINT)
        time.sleep(0.3)  # let the first one start the cleanup
        up.send_signal(signal.SIGINT)
        _out, err = up.communicate(timeout=60)
        assert up.returncode == 130, err
        line = one_line(err)
        assert "interrupted again" in line and "left behind:" in line, line
        assert "pykubemark down --name intr-twice" in line or line.endswith("nothing"), line
    finally:
        if up.poll() is None:
            up.kill()
        run_cli("down", "--name", "intr-twice", check=False)
    assert_nothing_left("intr-twice", seen)


def test_hollow_stops_on_sigterm_as_on_ctrl_c(cluster: Cluster) -> None:
    fleet = Fleet(cluster, 4, "term", "--processes", "2", "--delete-nodes-on-exit")
    fleet.wait_ready()
    workers = psutil.Process(fleet.proc.pid).children(recursive=True)
    fleet.proc.send_signal(signal.SIGTERM)
    assert fleet.proc.wait(60) == 0, fleet.log.read_text()[-2000:]
    _gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not [w for w in alive if w.status() != psutil.STATUS_ZOMBIE]
    names = {n["metadata"]["name"] for n in cluster.get_json("nodes")["items"]}
    assert not set(fleet.names) & names  # it cleaned up as after Ctrl-C
