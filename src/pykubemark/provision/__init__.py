"""Make the control-plane binaries available: the user's, or a release built once.

The order is the user's first: ``--bin-dir``, then ``$PYKUBEMARK_BIN_DIR``, then our own
build of the release in the cache; only when that is missing is the release built from
Go modules (`build.build_release`).
"""

from __future__ import annotations

from pathlib import Path

from pykubemark.errors import UserError
from pykubemark.provision.binaries import (
    CONTROL_PLANE,
    Binaries,
    cached_bin_dir,
    cached_releases,
    find_binaries,
)
from pykubemark.provision.build import build_release
from pykubemark.provision.releases import (
    Release,
    default_release,
    parse_release,
    served_releases,
)

__all__ = ["CONTROL_PLANE", "Binaries", "Release", "cached_bin_dir", "ensure_binaries",
           "find_or_build", "listed_releases", "requested_release"]


def ensure_binaries(bin_dir: Path | None = None, *, release: Release | None = None,
                    allow_build: bool = True) -> Binaries:
    """Return verified binaries, building the release once per machine if needed."""
    release = release or default_release()
    found = find_binaries(bin_dir, release)
    if found is not None:
        return found
    if not allow_build:
        raise UserError(f"Kubernetes {release} is not built (run `pykubemark provision "
                        f"--kubernetes-version {release}`, or pass --bin-dir)")
    build_release(release)
    found = find_binaries(None, release)
    assert found is not None, "build finished but its binaries do not verify"
    return found


def requested_release(kubernetes_version: str | None, bin_dir: Path | None) -> Release | None:
    """The release asked for; none with a binaries directory, which says its own."""
    if kubernetes_version is None:
        return None
    if bin_dir is not None:
        raise UserError("--kubernetes-version and --bin-dir exclude each other: "
                        "the binaries in DIR say which release they are")
    return parse_release(kubernetes_version)


def find_or_build(bin_dir: Path | None, kubernetes_version: str | None, *,
                  allow_build: bool = True) -> Binaries:
    """`pykubemark provision`: the binaries of --bin-dir or of the release asked for."""
    return ensure_binaries(bin_dir, release=requested_release(kubernetes_version, bin_dir),
                           allow_build=allow_build)


def listed_releases() -> list[tuple[Release, list[str]]]:
    """Each release the Go module proxy serves, marked "built" (here) and "default"."""
    built = set(cached_releases())
    default = default_release()
    return [(release, [mark for mark, on in (("built", release in built),
                                             ("default", release == default)) if on])
            for release in served_releases()]
