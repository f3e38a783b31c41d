"""Start and stop the cluster's child processes.

Each child gets its own session (process group) and log file, so it outlives the `up`
command, and `down` can signal the whole group — nothing the child forked is left.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil

from pykubemark.cluster.state import Proc


def start(name: str, argv: list[str], log: Path, *, port: int | None = None,
          health_url: str | None = None, env: dict[str, str] | None = None,
          die_with_parent: bool = False) -> Proc:
    """``die_with_parent``: the child gets SIGTERM when this process dies, for children
    that nothing else records (a foreground command's), so a SIGKILL orphans nothing."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, **(env or {})},
            preexec_fn=_parent_death_signal if die_with_parent else None,
        )
    create_time = psutil.Process(popen.pid).create_time()
    return Proc(name=name, pid=popen.pid, create_time=create_time, argv=argv, log=str(log),
                port=port, health_url=health_url)


def _parent_death_signal() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG; kept across exec of a normal binary


def last_lines(log: str, count: int = 1) -> str:
    try:
        lines = [line for line in Path(log).read_text(errors="replace").splitlines() if line]
    except OSError:
        return ""
    return " | ".join(lines[-count:])[-300:]


def stop(procs: list[Proc], timeout: float = 15.0) -> list[int]:
    """SIGTERM each group, wait, SIGKILL what remains; return pids that needed a kill."""
    targets: list[tuple[Proc, psutil.Process]] = []
    for proc in procs:
        live = proc.process()
        if live is not None:
            targets.append((proc, live))
            _signal_group(proc.pid, signal.SIGTERM)
    killed = []
    deadline = time.monotonic() + timeout
    for proc, live in targets:
        try:
            live.wait(max(0.1, deadline - time.monotonic()))
        except psutil.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            killed.append(proc.pid)
            with contextlib.suppress(psutil.Error):
                live.wait(5)
        except psutil.Error:
            pass
        # Whatever the child forked into its group goes too.
        _signal_group(proc.pid, signal.SIGKILL)
    return killed


# Stopped last, in this order. Signalled together with their clients, the apiserver
# outlived etcd and waited out the whole timeout (a 5-node cluster's down took 17 s;
# clients first, then each server, about 7 s).
SERVERS = ("kube-apiserver", "etcd")


def shutdown_waves(procs: list[Proc]) -> list[list[Proc]]:
    """The apiserver's clients (nodes, scheduler, controllers, addons), then the
    apiserver, then etcd: each shuts down while what it talks to still answers."""
    waves = [[p for p in procs if p.name not in SERVERS]]
    waves += [[p for p in procs if p.name == server] for server in SERVERS]
    return [wave for wave in waves if wave]


def stop_in_waves(procs: list[Proc], timeout: float = 15.0) -> list[int]:
    """`stop` each of `shutdown_waves` in turn; the pids that needed a kill."""
    return [pid for wave in shutdown_waves(procs) for pid in stop(wave, timeout)]


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
