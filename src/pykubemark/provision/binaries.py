"""Locate the etcd and Kubernetes binaries and prove they run.

A binary counts only if it answers ``--version``: a truncated copy from an interrupted
build, or one for another architecture, is refused before a cluster depends on it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pykubemark.errors import UserError
from pykubemark.paths import cache_home

KUBERNETES_VERSION = "1.20.2"
CONTROL_PLANE = ("kube-apiserver", "kube-scheduler", "kube-controller-manager")
#: Built alongside the control plane; optional when the user brings binaries.
EXTRAS = ("kubemark", "kubectl")
BIN_DIR_ENV = "PYKUBEMARK_BIN_DIR"


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_scheduler: Path
    kube_controller_manager: Path
    kubemark: Path | None = None
    kubectl: Path | None = None
    source: str = ""
    versions: dict[str, str] = field(default_factory=dict, compare=False)

    def path(self, name: str) -> Path | None:
        return getattr(self, name.replace("-", "_"))


def cached_bin_dir(version: str = KUBERNETES_VERSION) -> Path:
    return cache_home() / "kubernetes" / f"v{version}" / "bin"


def version_of(binary: Path) -> str | None:
    """First line of ``binary --version``, or None if it does not run."""
    # kubectl alone has no --version flag.
    args = ["version", "--client", "--short"] if binary.name == "kubectl" else ["--version"]
    try:
        out = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=30)
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


def _collect(directory: Path | None, source: str) -> Binaries | None:
    """Binaries from one place (``None`` = PATH); etcd may come from PATH."""
    paths: dict[str, Path | None] = {n: _which(n, directory) for n in CONTROL_PLANE + EXTRAS}
    paths["etcd"] = _which("etcd", directory) or _which("etcd", None)
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
        kubemark=paths["kubemark"],
        kubectl=paths["kubectl"],
        source=source,
        versions=versions,
    )


def find_binaries(bin_dir: Path | None) -> Binaries | None:
    """The first complete, working set: flag, environment, PATH, then the cache.

    An explicit directory (flag or environment) that lacks a binary is an error rather
    than a reason to look elsewhere: the user asked for those binaries.
    """
    explicit = bin_dir or (Path(os.environ[BIN_DIR_ENV]) if os.environ.get(BIN_DIR_ENV) else None)
    if explicit is not None:
        origin = "--bin-dir" if bin_dir else f"${BIN_DIR_ENV}"
        if not explicit.is_dir():
            raise UserError(f"{origin} {explicit} is not a directory")
        missing = [n for n in CONTROL_PLANE if _which(n, explicit) is None]
        if _which("etcd", explicit) is None and _which("etcd", None) is None:
            missing.append("etcd")
        if missing:
            raise UserError(f"{origin} {explicit} lacks {', '.join(missing)}")
        found = _collect(explicit, origin)
        if found is None:
            raise UserError(f"{origin} {explicit}: a binary there does not run `--version`")
        return found
    return _collect(None, "PATH") or (
        _collect(cached_bin_dir(), "cache") if cached_bin_dir().is_dir() else None
    )


def find_kubectl() -> Path | None:
    """kubectl alone, matching the control plane where we can: ``$PYKUBEMARK_BIN_DIR``,
    the cache, then PATH. Only a client, so the rest of the set is not checked."""
    env_dir = os.environ.get(BIN_DIR_ENV)
    for directory in (Path(env_dir) if env_dir else None, cached_bin_dir()):
        if directory is not None and (found := _which("kubectl", directory)):
            return found
    return _which("kubectl", None)


def find_kubemark(bin_dir: Path | None = None) -> Path | None:
    """The Go kubemark alone, for the kubemark engine: ``bin_dir`` or
    ``$PYKUBEMARK_BIN_DIR`` when given (and then only there: the user chose it), else
    PATH, then the cache. Only a binary that answers ``--version`` counts."""
    explicit = bin_dir or (Path(os.environ[BIN_DIR_ENV]) if os.environ.get(BIN_DIR_ENV) else None)
    candidates = [explicit] if explicit is not None else [None, cached_bin_dir()]
    for directory in candidates:
        found = _which("kubemark", directory)
        if found is not None and version_of(found) is not None:
            return found
    return None
