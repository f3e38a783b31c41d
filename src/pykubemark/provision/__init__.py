"""Make the control-plane binaries available: the user's, or a release built once.

The order is the user's first: ``--bin-dir``, then ``$PYKUBEMARK_BIN_DIR``, then our own
build of the release in the cache; only when that is missing is the release built from
Go modules (`build.build_release`).
"""

from __future__ import annotations

from pathlib import Path

from pykubemark.provision.binaries import (
    CONTROL_PLANE,
    Binaries,
    cached_bin_dir,
    find_binaries,
)
from pykubemark.provision.build import build_release
from pykubemark.provision.releases import Release, default_release

__all__ = ["CONTROL_PLANE", "Binaries", "Release", "cached_bin_dir", "ensure_binaries"]


def ensure_binaries(bin_dir: Path | None = None, *, release: Release | None = None,
                    allow_build: bool = True) -> Binaries:
    """Return verified binaries, building the release once per machine if needed."""
    release = release or default_release()
    found = find_binaries(bin_dir, release)
    if found is not None:
        return found
    if not allow_build:
        from pykubemark.errors import UserError

        raise UserError(f"Kubernetes {release} is not built (run `pykubemark provision "
                        f"--kubernetes-version {release}`, or pass --bin-dir)")
    build_release(release)
    found = find_binaries(None, release)
    assert found is not None, "build finished but its binaries do not verify"
    return found
