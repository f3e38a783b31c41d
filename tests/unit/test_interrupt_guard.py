"""The interrupt guard: a signal inside a critical section waits for its end; the
first interrupt raises, the second leaves at once with one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from pykubemark import interrupts
from pykubemark.files import write_atomic
from pykubemark.hollow.supervisor import BACKOFF_CAP, Shard, describe_exit


def test_signal_in_critical_section_is_held_until_its_end() -> None:
    done = []
    with interrupts.Guard(lambda: "nothing"), pytest.raises(KeyboardInterrupt):
        with interrupts.critical():
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("recorded")  # not cut short by the signal
        done.append("after")  # never reached: the held signal raises here
    assert done == ["recorded"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_second_interrupt_exits_at_once_with_one_line() -> None:
    code = (
        "import os, signal, time\n"
        "from pykubemark import interrupts\n"
        "with interrupts.Guard(lambda: 'etcd (pid 1)'):\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGINT); time.sleep(5)\n"
        "    except KeyboardInterrupt:\n"
        "        os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)\n"
        "print('cleanup finished')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == interrupts.EXIT_INTERRUPTED
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "pykubemark: interrupted again, exiting now; left behind: etcd (pid 1)"]


def test_write_atomic_replaces_whole_file_with_its_mode(tmp_path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    write_atomic(target, "new", mode=0o600)
    assert target.read_text() == "new" and (target.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_restart_backoff_doubles_up_to_its_cap() -> None:
    delays = []
    shard = Shard(0)
    for failures in range(1, 10):
        shard.failures = failures
        delays.append(shard.backoff())
    assert delays == sorted(delays) and delays[1] == 2 * delays[0]
    assert max(delays) == BACKOFF_CAP


def test_exit_is_described_by_signal_name() -> None:
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(1) == "exited with 1"
