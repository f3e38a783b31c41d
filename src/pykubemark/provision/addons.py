"""Build the addons a release is tested with (metrics-server, CoreDNS) from Go modules,
once per machine, as the control plane is built (provision/build.py).

Which version: the one the release's own source names — the image tag of
``cluster/addons/metrics-server/metrics-server-deployment.yaml`` and kubeadm's
``CoreDNSVersion`` (``cmd/kubeadm/app/constants/constants.go``). The Go module proxy is
asked what it serves (``go list -m -versions``); the named version when it is served,
else the nearest served one of the same minor (then major), said so in the log and in
``addon.json``.

How: a small wrapper module requires the addon's module at that version and
``go build``s its command with the ldflags the addon's own Makefile sets, so that its
``--version`` names the version. The binary reaches the cache
(``~/.cache/pykubemark/addons/NAME/VERSION/``) only once it answers ``--version`` with
it; ``addon.json`` is written last and says the build is complete. A failed or
interrupted build leaves only its log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from pykubemark.errors import UserError
from pykubemark.paths import cache_home
from pykubemark.provision.build import Builder, BuildFailed, _locked, console, publish
from pykubemark.provision.releases import MODULE, Release


@dataclass(frozen=True)
class AddonSource:
    """How one addon is built and how its version is found."""

    name: str
    module: str
    package: str
    binary: str
    #: The file of the Kubernetes source that names the version, and the pattern.
    source_file: str
    pattern: str
    #: -X flags (besides -s -w) that make ``--version`` name the version.
    version_ldflags: tuple[str, ...] = ()
    version_args: tuple[str, ...] = ("--version",)

    def ldflags(self, version: str) -> str:
        return " ".join(["-s", "-w", *(f"-X '{flag}={version}'"
                                       for flag in self.version_ldflags)])


SOURCES = {
    "metrics-server": AddonSource(
        name="metrics-server", module="sigs.k8s.io/metrics-server",
        package="sigs.k8s.io/metrics-server/cmd/metrics-server", binary="metrics-server",
        source_file="cluster/addons/metrics-server/metrics-server-deployment.yaml",
        pattern=r"image:\s*\S*/metrics-server:(v[\d.]+)",
        # metrics-server's Makefile: PKG=k8s.io/client-go/pkg, version.gitVersion
        version_ldflags=("k8s.io/client-go/pkg/version.gitVersion",)),
    "coredns": AddonSource(
        name="coredns", module="github.com/coredns/coredns",
        package="github.com/coredns/coredns", binary="coredns",
        source_file="cmd/kubeadm/app/constants/constants.go",
        pattern=r'CoreDNSVersion\s*=\s*"(v[\d.]+)"', version_args=("-version",)),
}


class AddonVersion(msgspec.Struct):
    """The version an addon runs at, and why."""

    name: str
    #: What the release names (its source), e.g. v0.8.1.
    tested: str
    #: What is built: ``tested`` when the proxy serves it, else the nearest served one.
    version: str
    note: str = ""


def _semver(text: str, *, release_only: bool = True) -> tuple[int, ...] | None:
    """(major, minor, patch) of ``vX.Y.Z``; with ``release_only`` False, of a pre-release
    too (``v0.8.0-rc.1``)."""
    pattern = r"v(\d+)\.(\d+)\.(\d+)" + ("" if release_only else r"(?:[-+].*)?")
    match = re.fullmatch(pattern, text)
    return tuple(int(g) for g in match.groups()) if match else None


def nearest_served(wanted: str, served: list[str]) -> tuple[str, str]:
    """(version, note): ``wanted`` if served; else the highest served one of its minor not
    above it, else the lowest above it of its minor, else of its major likewise."""
    if wanted in served:
        return wanted, ""
    want = _semver(wanted, release_only=False)
    versions = sorted(v for v in (_semver(s) for s in served) if v is not None)
    if want is None or not versions:
        raise UserError(f"the Go module proxy serves no release like {wanted}")
    for width in (2, 1):
        same = [v for v in versions if v[:width] == want[:width]]
        below = [v for v in same if v < want]
        chosen = below[-1] if below else (same[0] if same else None)
        if chosen is not None:
            text = "v" + ".".join(map(str, chosen))
            return text, f"{wanted} is not served by the Go module proxy; {text} is the nearest"
    text = "v" + ".".join(map(str, versions[-1]))
    return text, f"{wanted} is not served by the Go module proxy; {text} is its newest"


def served_versions(module: str, timeout: float = 120.0) -> list[str]:
    try:
        out = subprocess.run(["go", "list", "-m", "-versions", module], capture_output=True,
                             text=True, timeout=timeout, cwd="/",
                             env={**os.environ, "GO111MODULE": "on"}, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise UserError("building the addons needs Go (`go` is not on PATH)") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"`go list -m -versions {module}` took over {timeout:.0f}s") from None
    if out.returncode != 0:
        line = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"`go list -m -versions {module}` failed: {line}")
    return [v for v in out.stdout.split()[1:] if _semver(v)]


def release_source(release: Release) -> Path:
    """The release's module source (downloaded once by its build; cheap after that)."""
    try:
        out = subprocess.run(["go", "mod", "download", "-json", f"{MODULE}@{release.tag}"],
                             capture_output=True, text=True, timeout=600, cwd="/",
                             stdin=subprocess.DEVNULL)
        info = json.loads(out.stdout)
    except FileNotFoundError:
        raise UserError("finding the addons' versions needs Go (`go` is not on PATH)") \
            from None
    except (subprocess.TimeoutExpired, ValueError):
        raise UserError(f"cannot read the source of Kubernetes {release} "
                        f"(go mod download {MODULE}@{release.tag})") from None
    if info.get("Error") or not info.get("Dir"):
        raise UserError(f"cannot read the source of Kubernetes {release}: "
                        f"{str(info.get('Error', 'no directory')).splitlines()[-1][:160]}")
    return Path(info["Dir"])


def tested_version(source: Path, addon: AddonSource) -> str:
    path = source / addon.source_file
    try:
        match = re.search(addon.pattern, path.read_text())
    except OSError as exc:
        raise UserError(f"cannot read {addon.name}'s version from {path}: {exc}") from None
    if match is None:
        raise UserError(f"{path} does not name {addon.name}'s version")
    return match.group(1)


def addon_versions(release: Release, names: tuple[str, ...]) -> dict[str, AddonVersion]:
    """The version each addon runs at with this release; resolved once per release and
    kept in the cache (``addons/versions-vX.Y.Z.json``)."""
    path = cache_home() / "addons" / f"versions-{release.tag}.json"
    known: dict[str, AddonVersion] = {}
    if path.is_file():
        try:
            known = msgspec.json.decode(path.read_bytes(), type=dict[str, AddonVersion])
        except msgspec.DecodeError:
            known = {}
    missing = [n for n in names if n not in known]
    if missing:
        source = release_source(release)
        for name in missing:
            addon = SOURCES[name]
            tested = tested_version(source, addon)
            version, note = nearest_served(tested, served_versions(addon.module))
            known[name] = AddonVersion(name=name, tested=tested, version=version, note=note)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(msgspec.json.format(msgspec.json.encode(known)))
        tmp.replace(path)
    return {n: known[n] for n in names}


def addon_dir(name: str, version: str) -> Path:
    return cache_home() / "addons" / name / version


def cached_addon(name: str, version: str) -> Path | None:
    directory = addon_dir(name, version)
    binary = directory / "bin" / SOURCES[name].binary
    return binary if binary.is_file() and (directory / "addon.json").is_file() else None


def version_line(binary: Path, addon: AddonSource) -> str:
    try:
        out = subprocess.run([str(binary), *addon.version_args], capture_output=True,
                             text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return ((out.stdout or out.stderr).strip().splitlines() or [""])[0]


def build_addon(version: AddonVersion) -> Path:
    """The addon's binary at ``version``, built once into the cache."""
    addon = SOURCES[version.name]
    if found := cached_addon(addon.name, version.version):
        return found
    if shutil.which("go") is None:
        raise UserError(f"building {addon.name} {version.version} needs Go on PATH")
    root = addon_dir(addon.name, version.version)
    logs = cache_home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with _locked(cache_home() / "locks" / f"build-{addon.name}-{version.version}.lock"):
        if found := cached_addon(addon.name, version.version):
            return found
        log_path = logs / f"build-{addon.name}-{version.version}-" \
                          f"{datetime.now(UTC):%Y%m%d-%H%M%S}.log"
        work = root.parent / f".{version.version}.build"
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
        (work / "module").mkdir(parents=True)
        builder = Builder(Release(0, 0, 0), work, log_path)
        if version.note:
            with log_path.open("a") as log:
                log.write(f"{version.note}\n")
        try:
            console.print(f"Building {addon.name} {version.version} from Go modules into "
                          f"{root}" + (f" ({version.note})" if version.note else ""))
            console.print(f"  log: {log_path}")
            module = work / "module"
            (module / "go.mod").write_text(
                f"module pykubemark.local/{addon.name}\n\ngo 1.22\n")
            env = {"GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
            builder.run(f"resolve {addon.name} {version.version}",
                        ["go", "get", f"{addon.module}@{version.version}"], cwd=module,
                        env=env)
            staged = work / "bin"
            builder.run(f"go build {addon.name} {version.version} (a minute or two, once)",
                        ["go", "build", "-trimpath", "-ldflags",
                         addon.ldflags(version.version), "-o", str(staged / addon.binary),
                         addon.package], cwd=module, env=env)
            line = version_line(staged / addon.binary, addon)
            if version.version.lstrip("v") not in line:
                raise BuildFailed(f"built {addon.name} says '{line}', not {version.version}; "
                                  f"log: {log_path}")
            publish(work, root, ("bin",), "addon.json", {
                "name": addon.name, "version": version.version, "tested": version.tested,
                "note": version.note, "says": line, "log": str(log_path)})
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        console.print(f"{addon.name} {version.version} ready in {root / 'bin'}")
        return root / "bin" / addon.binary
