"""Locate the etcd and Kubernetes binaries of a release and prove they run.

A binary counts only if it answers ``--version``: a truncated copy from an interrupted
build, or one for another architecture, is refused before a cluster depends on it. The
release of a set is read from its kube-apiserver, so a user's own ``_output/bin`` says
what it is without being told.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pykubemark.errors import UserError
from pykubemark.paths import cache_home
from pykubemark.provision.releases import Release, default_release

CONTROL_PLANE = ("kube-apiserver", "kube-scheduler", "kube-controller-manager")
#: Built alongside the control plane; optional when the user brings binaries.
EXTRAS = ("kubelet", "kube-proxy", "kubemark", "kubectl")
BIN_DIR_ENV = "PYKUBEMARK_BIN_DIR"


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_scheduler: Path
    kube_controller_manager: Path
    kubelet: Path | None = None
    kube_proxy: Path | None = None
    kubemark: Path | None = None
    kubectl: Path | None = None
    source: str = ""
    versions: dict[str, str] = field(default_factory=dict, compare=False)

    def path(self, name: str) -> Path | None:
        return getattr(self, name.replace("-", "_"))

    @property
    def release(self) -> Release:
        """What the kube-apiserver says it is (``Kubernetes v1.37.2``)."""
        try:
            return Release.parse(self.versions.get("kube-apiserver", ""))
        except ValueError:
            raise UserError(f"{self.kube_apiserver} does not say which Kubernetes it is "
                            f"(--version: '{self.versions.get('kube-apiserver', '')}')") \
                from None

    @property
    def pause_source(self) -> Path | None:
        """build/pause/linux/pause.c of the release, kept beside a cached build."""
        candidate = self.kube_apiserver.parent.parent / "src" / "pause.c"
        return candidate if candidate.is_file() else None


def release_dir(release: Release) -> Path:
    return cache_home() / "kubernetes" / release.tag


def cached_bin_dir(release: Release | None = None) -> Path:
    return release_dir(release or default_release()) / "bin"


def cached_releases() -> list[Release]:
    """Releases whose build finished in the cache, oldest first."""
    found = []
    for path in (cache_home() / "kubernetes").glob("v*/release.json"):
        try:
            found.append(Release.parse(path.parent.name))
        except ValueError:
            continue
    return sorted(found)


def version_of(binary: Path) -> str | None:
    """First line of ``binary --version``, or None if it does not run."""
    # kubectl alone has no --version flag.
    args = ["version", "--client"] if binary.name == "kubectl" else ["--version"]
    try:
        out = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    if out.returncode != 0 or not text:
        return None
    return text.splitlines()[0]


def _which(name: str, directory: Path | None) -> Path | None:
    if directory is not None:
        candidate = directory / name
        return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None
    found = shutil.which(name)
    return Path(found) if found else None


def _etcd_beside(directory: Path) -> Path | None:
    """etcd for a directory without one: PATH, else the newest cached build's."""
    found = _which("etcd", directory) or _which("etcd", None)
    if found is not None:
        return found
    for release in reversed(cached_releases()):
        if cached := _which("etcd", cached_bin_dir(release)):
            return cached
    return None


def _collect(directory: Path, source: str) -> Binaries | None:
    """Binaries from one directory; etcd may come from elsewhere (`_etcd_beside`)."""
    paths: dict[str, Path | None] = {n: _which(n, directory) for n in CONTROL_PLANE + EXTRAS}
    paths["etcd"] = _etcd_beside(directory)
    if any(paths[n] is None for n in ("etcd", *CONTROL_PLANE)):
        return None
    versions: dict[str, str] = {}
    for name, path in paths.items():
        if path is None:
            continue
        version = version_of(path)
        if version is None:
            if name in EXTRAS:
                paths[name] = None
                continue
            return None
        versions[name] = version
    return Binaries(
        etcd=paths["etcd"],  # type: ignore[arg-type]
        kube_apiserver=paths["kube-apiserver"],  # type: ignore[arg-type]
        kube_scheduler=paths["kube-scheduler"],  # type: ignore[arg-type]
        kube_controller_manager=paths["kube-controller-manager"],  # type: ignore[arg-type]
        kubelet=paths["kubelet"],
        kube_proxy=paths["kube-proxy"],
        kubemark=paths["kubemark"],
        kubectl=paths["kubectl"],
        source=source,
        versions=versions,
    )


def explicit_bin_dir(bin_dir: Path | None) -> tuple[Path, str] | None:
    """The directory the user named (flag, then environment), with how they named it."""
    if bin_dir is not None:
        return bin_dir, "--bin-dir"
    if os.environ.get(BIN_DIR_ENV):
        return Path(os.environ[BIN_DIR_ENV]), f"${BIN_DIR_ENV}"
    return None


def find_binaries(bin_dir: Path | None, release: Release | None = None) -> Binaries | None:
    """The user's directory (flag, then environment), else the cached build of the
    release (default: `default_release`); None when that is not built yet.

    An explicit directory that lacks a binary is an error rather than a reason to look
    elsewhere: the user asked for those binaries.
    """
    explicit = explicit_bin_dir(bin_dir)
    if explicit is not None:
        directory, origin = explicit
        if not directory.is_dir():
            raise UserError(f"{origin} {directory} is not a directory")
        missing = [n for n in CONTROL_PLANE if _which(n, directory) is None]
        if _etcd_beside(directory) is None:
            missing.append("etcd (nor on PATH, nor in the cache)")
        if missing:
            raise UserError(f"{origin} {directory} lacks {', '.join(missing)}")
        found = _collect(directory, origin)
        if found is None:
            raise UserError(f"{origin} {directory}: a binary there does not run `--version`")
        return found
    directory = cached_bin_dir(release)
    if not (directory.parent / "release.json").is_file():
        return None
    return _collect(directory, f"cache ({directory})")


def _client_dirs() -> list[Path]:
    explicit = explicit_bin_dir(None)
    dirs = [explicit[0]] if explicit else []
    dirs.append(cached_bin_dir())
    dirs += [cached_bin_dir(r) for r in reversed(cached_releases())]
    return dirs


def find_kubectl() -> Path | None:
    """kubectl alone, matching the control plane where we can: ``$PYKUBEMARK_BIN_DIR``,
    the default release's build, any cached build, then PATH. Only a client, so the rest
    of the set is not checked."""
    for directory in _client_dirs():
        if found := _which("kubectl", directory):
            return found
    return _which("kubectl", None)


def find_kubemark(bin_dir: Path | None = None) -> Path | None:
    """The Go kubemark alone, for the kubemark engine: ``bin_dir`` or
    ``$PYKUBEMARK_BIN_DIR`` when given (and then only there: the user chose it), else the
    cached builds. Only a binary that answers ``--version`` counts."""
    explicit = explicit_bin_dir(bin_dir)
    candidates = [explicit[0]] if explicit is not None else _client_dirs()
    for directory in candidates:
        found = _which("kubemark", directory)
        if found is not None and version_of(found) is not None:
            return found
    return None
