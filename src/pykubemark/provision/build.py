"""Build kube-apiserver, kube-scheduler, kube-controller-manager, kubemark and kubectl
from Debian's ``kubernetes`` source package, once per machine.

Each step is named, logged to one file and reported as it runs; the binaries are moved
into the cache only after every one of them answers ``--version``, so an interrupted
or failed build leaves nothing that looks finished.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from pykubemark.errors import UserError
from pykubemark.provision import aptsource
from pykubemark.provision.binaries import (
    CONTROL_PLANE,
    EXTRAS,
    KUBERNETES_VERSION,
    cached_bin_dir,
    version_of,
)

APT_PACKAGES = ("etcd-server", "golang-go", "rsync", "jq", "dpkg-dev")
TARGETS = CONTROL_PLANE + EXTRAS
console = Console(stderr=True)


class StepFailed(UserError):
    pass


def _version_file(version: str) -> str:
    major, minor, _ = version.split(".")
    return (
        f"KUBE_GIT_VERSION='v{version}'\nKUBE_GIT_MAJOR='{major}'\nKUBE_GIT_MINOR='{minor}'\n"
        "KUBE_GIT_TREE_STATE='clean'\n"
    )


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            console.print(f"waiting for another build to finish ({path})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


class Builder:
    """Runs the build steps, each one logged and shown with its elapsed time."""

    def __init__(self, root: Path, version: str) -> None:
        self.root = root
        self.version = version
        self.log_path = root / "build.log"
        self.src = root / "src"

    def run(self, step: str, argv: list[str], *, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> None:
        started = time.monotonic()
        with self.log_path.open("a") as log:
            log.write(f"\n### {step}: {' '.join(argv)}\n")
            log.flush()
            try:
                proc = subprocess.Popen(
                    argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                    env={**os.environ, **(env or {})}, text=True, bufsize=1,
                )
            except OSError as exc:
                raise StepFailed(f"build step '{step}' could not start: {exc}") from None
            assert proc.stdout is not None
            with console.status(f"[bold]{step}[/]") as status:
                try:
                    for line in proc.stdout:
                        log.write(line)
                        elapsed = time.monotonic() - started
                        shown = line.strip()[:80]
                        status.update(f"[bold]{step}[/] [dim]{elapsed:4.0f}s {shown}[/]")
                    code = proc.wait()
                except BaseException:
                    proc.kill()
                    proc.wait()
                    raise
        elapsed = time.monotonic() - started
        if code != 0:
            raise StepFailed(
                f"build step '{step}' failed (exit {code}); log: {self.log_path}"
            )
        console.print(f"  done  {step} ({elapsed:.0f}s)")

    def fetch_source(self) -> None:
        """``apt-get source kubernetes`` into ``src``, via a temporary dir."""
        if (self.src / "Makefile").is_file() and (self.src / "vendor").is_dir():
            return
        tmp = self.root / "src.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.run("apt-get source kubernetes", ["apt-get", "source", "-q", "kubernetes"], cwd=tmp)
        trees = [p for p in tmp.iterdir() if p.is_dir() and p.name.startswith("kubernetes-")]
        if len(trees) != 1 or not trees[0].name.endswith(self.version):
            names = ", ".join(p.name for p in trees) or "nothing"
            raise StepFailed(
                f"apt-get source gave {names}, not Kubernetes {self.version}; "
                f"log: {self.log_path}"
            )
        if not (trees[0] / "vendor").is_dir():
            raise StepFailed(f"the source package has no vendor/ tree; log: {self.log_path}")
        shutil.rmtree(self.src, ignore_errors=True)
        trees[0].rename(self.src)
        shutil.rmtree(tmp, ignore_errors=True)

    def make(self) -> None:
        version_file = self.root / "version.env"
        version_file.write_text(_version_file(self.version))
        self.run(
            "make (about 7 minutes on 2 cores)",
            [
                "make",
                "WHAT=" + " ".join(f"cmd/{t}" for t in TARGETS),
                "GOFLAGS=-tags=providerless",
            ],
            cwd=self.src,
            env={"KUBE_GIT_VERSION_FILE": str(version_file), "CGO_ENABLED": "0"},
        )

    def install(self) -> Path:
        """Copy the binaries into ``bin`` only once every one of them runs."""
        built = self.src / "_output" / "bin"
        staging = self.root / "bin.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for target in TARGETS:
            shutil.copy2(built / target, staging / target)
            if version_of(staging / target) is None:
                raise StepFailed(f"built {target} does not run --version; log: {self.log_path}")
        final = cached_bin_dir(self.version)
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        return final


def _require_apt() -> None:
    if shutil.which("apt-get") is None:
        raise UserError(
            "Kubernetes binaries are missing and this machine has no apt-get to build them; "
            "pass --bin-dir DIR with kube-apiserver, kube-scheduler, kube-controller-manager"
        )
    if os.geteuid() != 0:
        raise UserError(
            "Kubernetes binaries are missing and building them needs root (apt-get); "
            "run as root, or pass --bin-dir DIR with your own binaries"
        )


def install_packages(builder: Builder, packages: tuple[str, ...] = APT_PACKAGES) -> None:
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    builder.run("apt-get update", ["apt-get", "update", "-q"], env=env)
    builder.run(
        f"apt-get install {' '.join(packages)}",
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        env=env,
    )


def build_kubernetes(version: str = KUBERNETES_VERSION) -> Path:
    """Build (or finish building) Kubernetes into the cache; return its bin dir."""
    root = cached_bin_dir(version).parent
    _require_apt()
    with _locked(root / ".lock"):
        if (cached_bin_dir(version) / TARGETS[0]).is_file() and all(
            version_of(cached_bin_dir(version) / t) for t in TARGETS
        ):
            return cached_bin_dir(version)
        console.print(f"Building Kubernetes {version} from Debian's source package into {root}")
        console.print(f"  log: {root / 'build.log'}")
        builder = Builder(root, version)
        try:
            aptsource.ensure_source_entry()
        except (LookupError, OSError) as exc:
            raise StepFailed(f"build step 'add deb-src entry' failed: {exc}") from None
        install_packages(builder)
        builder.fetch_source()
        builder.make()
        final = builder.install()
        console.print(f"Kubernetes {version} binaries ready in {final}")
        return final


if __name__ == "__main__":  # pragma: no cover - manual use
    build_kubernetes()
    sys.exit(0)


def ensure_kubelet(version: str = KUBERNETES_VERSION) -> Path:
    """A real kubelet from the same source tree, for `up --real-node`: built alone (the
    other binaries and the Go build cache stay as they are), so it takes a few minutes
    once rather than a full build."""
    bin_dir = build_kubernetes(version)
    kubelet = bin_dir / "kubelet"
    if kubelet.is_file() and version_of(kubelet):
        return kubelet
    root = bin_dir.parent
    with _locked(root / ".lock"):
        if kubelet.is_file() and version_of(kubelet):
            return kubelet
        builder = Builder(root, version)
        version_file = root / "version.env"
        version_file.write_text(_version_file(version))
        builder.run("make WHAT=cmd/kubelet (a few minutes, once)",
                    ["make", "WHAT=cmd/kubelet", "GOFLAGS=-tags=providerless"], cwd=builder.src,
                    env={"KUBE_GIT_VERSION_FILE": str(version_file), "CGO_ENABLED": "0"})
        staging = bin_dir / "kubelet.tmp"
        shutil.copy2(builder.src / "_output" / "bin" / "kubelet", staging)
        if version_of(staging) is None:
            staging.unlink()
            raise StepFailed(f"built kubelet does not run --version; log: {builder.log_path}")
        staging.rename(kubelet)
        return kubelet
