"""Sockets made inside a network namespace, for a process that stays in its own.

A socket belongs to the network namespace it was made in, whatever the thread does
afterwards: so the thread enters the namespace (setns), makes its sockets, and returns.
The apiserver forwarder of real nodes and the hollow kubelets' API both listen this way.
Only the standard library: the forwarder imports this, and stays small.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def netns_path(name: str) -> str:
    """/run/netns/NAME for a name, a path as it is."""
    return name if "/" in name else f"{NETNS_DIR}/{name}"


@contextmanager
def inside(netns: str | None) -> Iterator[None]:
    """The calling thread in network namespace ``netns`` (a name or a /run/netns path)
    for the block, back in its own after it; None: stay where it is."""
    if netns is None:
        yield
        return
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(netns_path(netns), os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(target)
    finally:
        os.close(home)
