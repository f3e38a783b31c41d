"""Kubernetes releases: which one a user means, which ones the Go module proxy serves.

A release is named as users write it (``1.37.2``, ``v1.37.2``) and read back from a
binary's ``--version`` (``Kubernetes v1.37.2``), so one parser serves both: the cache
directory, the hollow nodes' profile and the report all key on the same value.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

from pykubemark.errors import UserError

#: The newest release the Go module proxy served when this version of pykubemark was
#: made (`pykubemark provision --list` shows what it serves now). Pinned, so that two runs
#: of the same pykubemark measure the same Kubernetes unless told otherwise.
DEFAULT_RELEASE = "1.37.2"
#: Environment variable that changes the default (for CI runs against another release).
RELEASE_ENV = "PYKUBEMARK_KUBERNETES_VERSION"
MODULE = "k8s.io/kubernetes"

_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?")


@dataclass(frozen=True, order=True)
class Release:
    major: int
    minor: int
    patch: int
    #: A pre-release or build suffix (``beta.0``, ``dirty``), empty for a release.
    pre: str = ""

    @classmethod
    def parse(cls, text: str) -> Release:
        """``1.37.2``, ``v1.37.2``, ``Kubernetes v1.37.2``, ``v1.38.0-alpha.1.123+abc``."""
        match = _VERSION.search(text.strip())
        if match is None:
            raise ValueError(f"'{text}' is not a Kubernetes version (like 1.37.2)")
        major, minor, patch, pre = match.groups()
        return cls(int(major), int(minor), int(patch), pre or "")

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}" + (f"-{self.pre}" if self.pre else "")

    @property
    def tag(self) -> str:
        """The module version and gitVersion: ``v1.37.2``."""
        return f"v{self}"

    @property
    def minor_version(self) -> tuple[int, int]:
        return (self.major, self.minor)

    @property
    def staging_version(self) -> str:
        """The version of the staging modules (k8s.io/api …) released with it: v0.37.2."""
        return f"v0.{self.minor}.{self.patch}" + (f"-{self.pre}" if self.pre else "")


def default_release() -> Release:
    """``$PYKUBEMARK_KUBERNETES_VERSION`` or the pinned default."""
    text = os.environ.get(RELEASE_ENV) or DEFAULT_RELEASE
    return parse_release(text, what=f"${RELEASE_ENV}" if os.environ.get(RELEASE_ENV) else "")


def parse_release(text: str, *, what: str = "--kubernetes-version") -> Release:
    """A release the user asked for, or a `UserError` naming the option."""
    try:
        release = Release.parse(text)
    except ValueError as exc:
        raise UserError(f"{what}: {exc}" if what else str(exc)) from None
    if release.pre or not _VERSION.fullmatch(text.strip()):
        raise UserError(f"{what}: '{text}' is not a release version (like {DEFAULT_RELEASE})")
    return release


def served_releases(timeout: float = 60.0) -> list[Release]:
    """Releases of k8s.io/kubernetes the module proxy lists, oldest first (pre-releases
    left out). The list may name versions whose download is refused: a build is the test."""
    try:
        out = subprocess.run(["go", "list", "-m", "-versions", MODULE], capture_output=True,
                             text=True, timeout=timeout, cwd="/", env={**os.environ,
                                                                        "GO111MODULE": "on"})
    except FileNotFoundError:
        raise UserError("listing releases needs Go (`go` is not on PATH)") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"`go list -m -versions {MODULE}` took over {timeout:.0f}s") from None
    if out.returncode != 0:
        line = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"`go list -m -versions {MODULE}` failed: {line}")
    releases = []
    for word in out.stdout.split()[1:]:
        try:
            release = Release.parse(word)
        except ValueError:
            continue
        if not release.pre:
            releases.append(release)
    return sorted(releases)
