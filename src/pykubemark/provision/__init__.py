"""Make the control-plane binaries available: find a usable copy, or build one.

The order is the user's first: ``--bin-dir``, then ``$PYKUBEMARK_BIN_DIR``, then
``PATH``, then our own build in the cache; only when none of them has every binary is
Kubernetes built from Debian's source package.
"""

from __future__ import annotations

from pathlib import Path

from pykubemark.provision.binaries import (
    CONTROL_PLANE,
    Binaries,
    cached_bin_dir,
    find_binaries,
)
from pykubemark.provision.build import build_kubernetes

__all__ = ["CONTROL_PLANE", "Binaries", "cached_bin_dir", "ensure_binaries"]


def ensure_binaries(bin_dir: Path | None = None, *, allow_build: bool = True) -> Binaries:
    """Return verified binaries, building Kubernetes once per machine if needed."""
    found = find_binaries(bin_dir)
    if found is not None:
        return found
    if not allow_build:
        from pykubemark.errors import UserError

        raise UserError(
            "no Kubernetes binaries found (run `pykubemark provision`, or pass --bin-dir)"
        )
    build_kubernetes()
    found = find_binaries(None)
    assert found is not None, "build finished but its binaries do not verify"
    return found
