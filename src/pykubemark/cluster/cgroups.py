"""A cgroup of its own for each real node, with the cgroupfs driver (cgroup v1 or v2).

A real node's kubelet gets ``cgroupRoot: /pkm-CLUSTER-I`` (its pods go under
``.../kubepods``), and its agents — containerd, whose shims inherit its cgroup, the kubelet
and kube-proxy — run in ``/pkm-CLUSTER-I/agents``. So every process of a node can be found,
measured (`status`) and killed (`down`) by its cgroup, even the containers of a
containerd that crashed, and nodes on one machine never share a QoS tree. The kubelet
refuses a ``cgroupRoot`` that is missing in any hierarchy: we make it in all of them.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def hierarchies() -> list[Path]:
    """Mount points of every cgroup (v1) and cgroup2 hierarchy under /sys/fs/cgroup."""
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            mount = Path(fields[4])
            if fstype in ("cgroup", "cgroup2") and (mount == ROOT or ROOT in mount.parents):
                found.append(mount)
    return found


def _dirs(path: str) -> list[Path]:
    rel = path.strip("/")
    return [h / rel for h in hierarchies()]


def create(path: str) -> None:
    """``path`` (e.g. /pkm-c-0/agents) and its parents in every hierarchy; a new cpuset
    (v1) gets its parent's CPUs and memory nodes, without which it takes no process."""
    for hierarchy in hierarchies():
        current = hierarchy
        for part in Path(path.strip("/")).parts:
            parent, current = current, current / part
            if current.is_dir():
                continue
            current.mkdir()
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (parent / name).is_file() and (current / name).is_file():
                    (current / name).write_text((parent / name).read_text())


def exists(path: str) -> bool:
    return any(d.is_dir() for d in _dirs(path))


def join_argv(path: str, argv: list[str]) -> list[str]:
    """argv that moves itself into cgroup ``path`` of every hierarchy, then execs
    ``argv`` (the same pid throughout, so it is recorded and stopped as usual)."""
    procs = " ".join(shlex.quote(str(d / "cgroup.procs")) for d in _dirs(path))
    script = f'for f in {procs}; do echo $$ > "$f" 2>/dev/null; done; exec "$@"'
    return ["/bin/sh", "-c", script, "pkm-cgroup", *argv]


def _tree(directory: Path) -> list[Path]:
    """``directory`` and its descendants, deepest first."""
    if not directory.is_dir():
        return []
    found = [Path(root) for root, _dirs, _files in os.walk(directory)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def pids(path: str) -> set[int]:
    """Processes in ``path`` and below (read from the first hierarchy that has it)."""
    for directory in _dirs(path):
        if directory.is_dir():
            found: set[int] = set()
            for sub in _tree(directory):
                with contextlib.suppress(OSError, ValueError):
                    found.update(int(p) for p in (sub / "cgroup.procs").read_text().split())
            return found
    return set()


def remove(path: str, timeout: float = 10.0) -> list[str]:
    """Kill every process left in ``path`` and remove it from every hierarchy; what could
    not be removed (empty when all is gone)."""
    deadline = time.monotonic() + timeout
    while (left := pids(path)) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    stuck = []
    for directory in _dirs(path):
        for sub in _tree(directory):
            for _ in range(50):
                try:
                    sub.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY while the last killed tasks exit
                    time.sleep(0.1)
            else:
                stuck.append(str(sub))
    return stuck


# -- a process throttled -----------------------------------------------------------------
#: The CFS period of a throttle: the quota is spent in slices of this (v1 and v2 alike).
PERIOD_US = 100_000


def _cpu_hierarchy() -> tuple[Path, str]:
    """Where the cpu controller is, and its version: a v1 hierarchy with the CFS quota,
    or the v2 root when it offers ``cpu``."""
    for hierarchy in hierarchies():
        if (hierarchy / "cpu.cfs_quota_us").is_file():
            return hierarchy, "v1"
        controllers = hierarchy / "cgroup.controllers"
        if controllers.is_file() and "cpu" in controllers.read_text().split():
            return hierarchy, "v2"
    raise OSError("no cgroup hierarchy with the cpu controller")


def _current(pid: int, hierarchy: Path, version: str) -> Path:
    """The cgroup ``pid`` is in, in ``hierarchy``."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _id, controllers, path = line.split(":", 2)
        wanted = controllers == "" if version == "v2" else "cpu" in controllers.split(",")
        if wanted:
            return hierarchy / path.strip("/")
    raise OSError(f"process {pid} is in no cpu cgroup")


@contextlib.contextmanager
def throttled(pid: int, cores: float, path: str) -> Iterator[Path]:
    """Process ``pid`` (every thread) held to ``cores`` of CPU by a CFS quota in a cgroup
    of its own, ``path``; on leaving it goes back where it was and the cgroup is removed.
    A real slow disk or a noisy neighbour, for a component that must not know it."""
    hierarchy, version = _cpu_hierarchy()
    home = _current(pid, hierarchy, version)
    group = hierarchy / path.strip("/")
    group.mkdir(parents=True, exist_ok=True)
    quota = max(1000, round(cores * PERIOD_US))
    try:
        if version == "v1":
            (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        else:  # a child offers cpu.max once its parent hands the controller down
            with contextlib.suppress(OSError):
                (group.parent / "cgroup.subtree_control").write_text("+cpu")
            (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        (group / "cgroup.procs").write_text(str(pid))
        yield group
    finally:
        with contextlib.suppress(ProcessLookupError, OSError):
            (home / "cgroup.procs").write_text(str(pid))
        for _ in range(50):
            try:
                group.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)
