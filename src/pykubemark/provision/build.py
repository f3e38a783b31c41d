"""Build a Kubernetes release and its etcd from Go modules, once per machine.

``k8s.io/kubernetes`` cannot be installed with ``go install …@version``: its go.mod
requires its staging modules (k8s.io/api, k8s.io/client-go, …) at v0.0.0 and replaces
them with paths inside its own tree. So the binaries are built from a small wrapper
module whose replace directives point each staging module at the version released with
it, derived from that release's own go.mod (never from another release's), with the
ldflags Kubernetes' own build sets, so that ``/version`` and a Node's ``kubeletVersion``
name the release. etcd is built from ``go.etcd.io/etcd/server/v3`` at the version the
release is tested with (its ``hack/lib/etcd.sh``).

Each step is named, logged to one file and reported as it runs. The binaries reach the
cache only after every one of them answers ``--version`` with the release; a release the
proxy does not serve, a failed build or an interrupted one leaves nothing in the cache
but the log.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from pykubemark.errors import UserError
from pykubemark.paths import cache_home
from pykubemark.provision.binaries import (
    CONTROL_PLANE,
    EXTRAS,
    cached_bin_dir,
    release_dir,
    version_of,
)
from pykubemark.provision.releases import MODULE, Release

#: What a release build makes: the control plane, the real node's two binaries (the
#: reference for hollow nodes), the Go kubemark and kubectl.
COMMANDS = (*CONTROL_PLANE, *EXTRAS)
ETCD_MODULE = "go.etcd.io/etcd/server/v3"
console = Console(stderr=True)


class BuildFailed(UserError):
    pass


def staging_replaces(gomod: str, release: Release) -> dict[str, str]:
    """Staging module → its released version, from a k8s.io/kubernetes go.mod: every
    module the release requires at v0.0.0 and replaces with a path in its own tree."""
    required = set(re.findall(r"^\s*(k8s\.io/[\w.-]+) v0\.0\.0\s*$", gomod, re.M))
    replaced = set(re.findall(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", gomod, re.M))
    return {module: release.staging_version for module in sorted(required & replaced)}


def wrapper_gomod(release: Release, replaces: dict[str, str], go_version: str) -> str:
    lines = ["module pykubemark.local/kubernetes", "", f"go {go_version}", "",
             f"require {MODULE} {release.tag}", "", "replace ("]
    lines += [f"\t{module} => {module} {version}" for module, version in replaces.items()]
    return "\n".join([*lines, ")", ""])


def go_directive(gomod: str) -> str:
    match = re.search(r"^go (\d+\.\d+(?:\.\d+)?)\s*$", gomod, re.M)
    return match.group(1) if match else "1.22"


def version_ldflags(release: Release, build_date: str) -> str:
    """The -X flags of hack/lib/version.sh, for client-go's and component-base's copy."""
    values = {"gitVersion": release.tag, "gitMajor": str(release.major),
              "gitMinor": str(release.minor), "gitTreeState": "clean",
              "buildDate": build_date}
    flags = [f"-X '{package}.{key}={value}'" for key, value in values.items()
             for package in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version")]
    return " ".join(["-s", "-w", *flags])


def etcd_version(source: Path) -> str:
    """The etcd a release is tested with: ``ETCD_VERSION`` in its hack/lib/etcd.sh."""
    try:
        text = (source / "hack" / "lib" / "etcd.sh").read_text()
    except OSError as exc:
        raise BuildFailed(f"{source} has no hack/lib/etcd.sh to name its etcd: {exc}") from None
    match = re.search(r"ETCD_VERSION=\$\{ETCD_VERSION:-([\d.]+)\}", text)
    if match is None:
        raise BuildFailed(f"no ETCD_VERSION in {source / 'hack/lib/etcd.sh'}")
    return match.group(1)


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


class Steps:
    """Runs build steps, each one logged and shown with its elapsed time."""

    def __init__(self, work: Path, log_path: Path) -> None:
        self.work = work
        self.log_path = log_path

    def run(self, step: str, argv: list[str], *, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> str:
        """Run one step; return its output (also in the log)."""
        started = time.monotonic()
        output: list[str] = []
        with self.log_path.open("a") as log:
            log.write(f"\n### {step}: {' '.join(argv)}\n")
            log.flush()
            try:
                proc = subprocess.Popen(
                    argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                    env={**os.environ, **(env or {})}, text=True, bufsize=1,
                    stdin=subprocess.DEVNULL,
                )
            except OSError as exc:
                raise BuildFailed(f"build step '{step}' could not start: {exc}; "
                                  f"log: {self.log_path}") from None
            assert proc.stdout is not None
            with console.status(f"[bold]{step}[/]") as status:
                try:
                    for line in proc.stdout:
                        log.write(line)
                        output.append(line)
                        elapsed = time.monotonic() - started
                        status.update(f"[bold]{step}[/] [dim]{elapsed:4.0f}s "
                                      f"{line.strip()[:80]}[/]")
                    code = proc.wait()
                except BaseException:
                    proc.kill()
                    proc.wait()
                    raise
        elapsed = time.monotonic() - started
        if code != 0:
            last = next((line.strip() for line in reversed(output) if line.strip()), "")
            raise BuildFailed(f"build step '{step}' failed (exit {code}): {last[:200]}; "
                              f"log: {self.log_path}")
        console.print(f"  done  {step} ({elapsed:.0f}s)")
        return "".join(output)

    def run_json(self, argv: list[str]) -> dict[str, object]:
        with self.log_path.open("a") as log:
            log.write(f"\n### {' '.join(argv)}\n")
            proc = subprocess.run(argv, capture_output=True, text=True, cwd=self.work,
                                  stdin=subprocess.DEVNULL)
            log.write(proc.stdout + proc.stderr)
        try:
            return json.loads(proc.stdout)
        except ValueError:
            line = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise BuildFailed(f"`{' '.join(argv)}` failed: {line}; log: {self.log_path}") \
                from None


class Builder(Steps):
    """The steps of a Kubernetes release's build."""

    def __init__(self, release: Release, work: Path, log_path: Path) -> None:
        super().__init__(work, log_path)
        self.release = release

    def download(self) -> Path:
        """The release's module source; a release the proxy refuses is one line."""
        out = self.run_json(["go", "mod", "download", "-json", f"{MODULE}@{self.release.tag}"])
        if out.get("Error"):
            reason = str(out["Error"]).splitlines()
            detail = reason[-1].strip() if reason else ""
            raise BuildFailed(
                f"Kubernetes {self.release} is not served by the Go module proxy "
                f"({os.environ.get('GOPROXY') or _go_env('GOPROXY')}): {detail[:160]} "
                f"(`pykubemark provision --list` shows what is); log: {self.log_path}")
        return Path(out["Dir"])

    def build_kubernetes(self, source: Path, out: Path) -> None:
        gomod = (source / "go.mod").read_text()
        replaces = staging_replaces(gomod, self.release)
        if not replaces:
            raise BuildFailed(f"{MODULE}@{self.release.tag}'s go.mod names no staging "
                              f"modules; log: {self.log_path}")
        module = self.work / "kubernetes"
        module.mkdir()
        (module / "go.mod").write_text(wrapper_gomod(self.release, replaces,
                                                     go_directive(gomod)))
        packages = [f"{MODULE}/cmd/{name}" for name in COMMANDS]
        env = {"GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
        self.run("resolve the modules", ["go", "get",
                                         *(f"{p}@{self.release.tag}" for p in packages)],
                 cwd=module, env=env)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.run(f"go build {' '.join(COMMANDS)} (minutes, once)",
                 ["go", "build", "-trimpath", "-ldflags",
                  version_ldflags(self.release, stamp), "-o", f"{out}/", *packages],
                 cwd=module, env=env)

    def build_etcd(self, version: str, out: Path) -> None:
        module = self.work / "etcd"
        module.mkdir()
        (module / "go.mod").write_text("module pykubemark.local/etcd\n\ngo 1.22\n")
        env = {"GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
        self.run(f"resolve etcd {version}", ["go", "get", f"{ETCD_MODULE}@v{version}"],
                 cwd=module, env=env)
        self.run(f"go build etcd {version}", ["go", "build", "-trimpath", "-ldflags", "-s -w",
                                              "-o", str(out / "etcd"), ETCD_MODULE],
                 cwd=module, env=env)


def _go_env(name: str) -> str:
    try:
        return subprocess.run(["go", "env", name], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def publish(work: Path, root: Path, parts: tuple[str, ...], record: str,
            fields: dict[str, object]) -> None:
    """Move a finished build's ``parts`` from ``work`` into ``root``, its record (``fields``,
    the Go version and the time) last: an entry of the cache with its record is whole.
    Shared by every build that is cached (the releases, KWOK, the addons)."""
    (work / record).write_text(json.dumps({
        **fields, "go": _go_env("GOVERSION"), "built": datetime.now(UTC).isoformat()},
        indent=2) + "\n")
    root.mkdir(parents=True)
    for name in (*parts, record):
        (work / name).rename(root / name)


def _complete(release: Release) -> bool:
    bin_dir = cached_bin_dir(release)
    return all((bin_dir / name).is_file() for name in ("etcd", *COMMANDS)) and \
        (release_dir(release) / "release.json").is_file()


def build_release(release: Release) -> Path:
    """Build (once) the release's binaries into the cache; return their directory."""
    if _complete(release):
        return cached_bin_dir(release)
    if shutil.which("go") is None:
        raise UserError(f"building Kubernetes {release} needs Go on PATH (the release says "
                        "which, in its go.mod); or pass --bin-dir DIR with your own binaries")
    root = release_dir(release)
    logs = cache_home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with _locked(cache_home() / "locks" / f"build-{release.tag}.lock"):
        if _complete(release):
            return cached_bin_dir(release)
        log_path = logs / f"build-{release.tag}-{datetime.now(UTC):%Y%m%d-%H%M%S}.log"
        work = root.parent / f".{release.tag}.build"
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
        work.mkdir(parents=True)
        builder = Builder(release, work, log_path)
        staged = work / "bin"
        try:
            source = builder.download()  # a release that is not served: one line
            console.print(f"Building Kubernetes {release} from Go modules into {root}")
            console.print(f"  log: {log_path}")
            builder.build_kubernetes(source, staged)
            etcd = etcd_version(source)
            builder.build_etcd(etcd, staged)
            versions = {}
            for name in ("etcd", *COMMANDS):
                line = version_of(staged / name) or ""
                wanted = etcd if name == "etcd" else release.tag
                if wanted not in line:
                    raise BuildFailed(f"built {name} says '{line}', not {wanted}; "
                                      f"log: {log_path}")
                versions[name] = line
            pause = source / "build" / "pause" / "linux" / "pause.c"
            (work / "src").mkdir()
            if pause.is_file():
                shutil.copy2(pause, work / "src" / "pause.c")
            publish(work, root, ("bin", "src"), "release.json", {
                "release": str(release), "etcd": etcd, "versions": versions,
                "log": str(log_path)})
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        console.print(f"Kubernetes {release} binaries ready in {root / 'bin'}")
        return root / "bin"
