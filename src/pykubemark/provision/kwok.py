"""Build KWOK (sigs.k8s.io/kwok) from Go modules, once per machine, for `--engine kwok`.

KWOK's module has no replace directives, so its controller builds from a small wrapper
module that requires it at the pinned version (Go's minimal version selection then picks
exactly the versions KWOK's own go.mod names). What the engine applies to a cluster
comes from the same module, never from a copy in this repository: the Stage CRD
(``kustomize/crd``), the Stages ``kwokctl`` uses by default (``kustomize/stage/fast``:
node-initialize, node-heartbeat-with-lease, pod-ready, pod-complete, pod-delete) and the
controller's RBAC (``kustomize/rbac``). They are copied beside the binary:

    ~/.cache/pykubemark/kwok/v0.8.0/bin/kwok
                                  /manifests/crd/*.yaml, stages/*.yaml, rbac/*.yaml
                                  /kwok.json        (written last: the build is complete)

As with a Kubernetes release, every step is named, logged to one file and shown as it
runs; a version the proxy does not serve or a failed build is one line naming the log,
and leaves nothing but the log in the cache.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from pykubemark.errors import UserError
from pykubemark.paths import cache_home
from pykubemark.provision.binaries import version_of
from pykubemark.provision.build import (
    BuildFailed,
    Steps,
    _locked,
    console,
    go_directive,
    publish,
)

MODULE = "sigs.k8s.io/kwok"
COMMAND = f"{MODULE}/cmd/kwok"
#: The newest KWOK the Go module proxy served when this was written that builds with the
#: Go installed here (v0.8.0 asks for go 1.26.0, built against client-go 0.36). Pinned,
#: as the Kubernetes release is, so two runs of one pykubemark run the same KWOK.
DEFAULT_VERSION = "v0.8.0"
VERSION_ENV = "PYKUBEMARK_KWOK_VERSION"
#: The Stages applied: kwokctl's defaults with node leases (kustomize/stage/fast).
STAGES = "kustomize/stage/fast"
#: Only the Stage CRD: the controller is started with --enable-crds=Stage.
CRDS = ("kustomize/crd/bases/kwok.x-k8s.io_stages.yaml",)
#: The controller's ClusterRole and its FlowSchema (exempt from priority and fairness,
#: as KWOK deploys itself); the engine binds them to its own user.
RBAC = ("kustomize/rbac/role.yaml", "kustomize/rbac/flow_schema.yaml")
_VERSION = re.compile(r"^v\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class Kwok:
    """A complete build: the controller and the manifests of its version."""

    version: str
    root: Path

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "kwok"

    def manifests(self, kind: str) -> list[Path]:
        """crd, stages or rbac: the files copied from the module, in name order."""
        return sorted((self.root / "manifests" / kind).glob("*.yaml"))

    def objects(self, kind: str) -> list[dict]:
        """The objects of those files (a file may hold several documents)."""
        found = []
        for path in self.manifests(kind):
            found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        return found


def kwok_version() -> str:
    """``$PYKUBEMARK_KWOK_VERSION`` or the pinned default."""
    version = os.environ.get(VERSION_ENV) or DEFAULT_VERSION
    version = version if version.startswith("v") else f"v{version}"
    if not _VERSION.match(version):
        raise UserError(f"${VERSION_ENV}: '{version}' is not a KWOK release (like "
                        f"{DEFAULT_VERSION})")
    return version


def kwok_dir(version: str) -> Path:
    return cache_home() / "kwok" / version


def find_kwok(version: str | None = None) -> Kwok | None:
    """The cached build of ``version`` if it is complete and its binary runs."""
    version = version or kwok_version()
    found = Kwok(version, kwok_dir(version))
    if not (found.root / "kwok.json").is_file() or not found.binary.is_file():
        return None
    line = version_of(found.binary) or ""
    return found if version in line else None


def ensure_kwok(version: str | None = None, *, allow_build: bool = True) -> Kwok:
    """The cached build, building it first (minutes, once per machine) if need be."""
    version = version or kwok_version()
    found = find_kwok(version)
    if found is not None:
        return found
    if not allow_build:
        raise UserError(f"KWOK {version} is not built (run `pykubemark provision --kwok`)")
    build_kwok(version)
    found = find_kwok(version)
    assert found is not None, "KWOK build finished but its binary does not verify"
    return found


def stage_files(module: Path, directory: str = STAGES) -> list[Path]:
    """The Stage files a kustomization lists, following the directories it names."""
    base = module / directory
    try:
        listed = yaml.safe_load((base / "kustomization.yaml").read_text()) or {}
    except OSError as exc:
        raise BuildFailed(f"{MODULE} has no {directory}/kustomization.yaml: "
                          f"{exc.strerror}") from None
    files: list[Path] = []
    for entry in listed.get("resources") or []:
        target = (base / entry).resolve()
        if target.is_dir():
            files += stage_files(module, str(target.relative_to(module.resolve())))
        else:
            files.append(target)
    return files


def build_kwok(version: str) -> Path:
    """Build (once) KWOK's controller and copy its manifests into the cache."""
    if find_kwok(version) is not None:
        return kwok_dir(version)
    if shutil.which("go") is None:
        raise UserError(f"building KWOK {version} needs Go on PATH")
    root = kwok_dir(version)
    logs = cache_home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with _locked(cache_home() / "locks" / f"build-kwok-{version}.lock"):
        if find_kwok(version) is not None:
            return root
        log_path = logs / f"build-kwok-{version}-{datetime.now(UTC):%Y%m%d-%H%M%S}.log"
        work = root.parent / f".{version}.build"
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
        (work / "module").mkdir(parents=True)
        steps = Steps(work, log_path)
        env = {"GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
        try:
            out = steps.run_json(["go", "mod", "download", "-json", f"{MODULE}@{version}"])
            if out.get("Error") or not out.get("Dir"):
                lines = str(out.get("Error") or "no source").strip().splitlines()
                reason = lines[-1].strip()[:160] if lines else ""
                raise BuildFailed(f"KWOK {version} is not served by the Go module proxy: "
                                  f"{reason} (`go list -m -versions {MODULE}` shows what "
                                  f"is); log: {log_path}")
            source = Path(str(out["Dir"]))
            console.print(f"Building KWOK {version} from Go modules into {root}")
            console.print(f"  log: {log_path}")
            gomod = (source / "go.mod").read_text()
            module = work / "module"
            (module / "go.mod").write_text(f"module pykubemark.local/kwok\n\n"
                                           f"go {go_directive(gomod)}\n")
            steps.run(f"resolve KWOK {version}", ["go", "get", f"{COMMAND}@{version}"],
                      cwd=module, env=env)
            staged = work / "bin"
            steps.run(f"go build kwok {version} (minutes, once)",
                      ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o",
                       str(staged / "kwok"), COMMAND], cwd=module, env=env)
            line = version_of(staged / "kwok") or ""
            if version not in line:
                raise BuildFailed(f"built kwok says '{line}', not {version}; log: {log_path}")
            copies = {"crd": [source / p for p in CRDS], "rbac": [source / p for p in RBAC],
                      "stages": stage_files(source)}
            for kind, files in copies.items():
                (work / "manifests" / kind).mkdir(parents=True)
                for path in files:
                    if not path.is_file():
                        raise BuildFailed(f"{MODULE}@{version} has no {path.name}; "
                                          f"log: {log_path}")
                    target = work / "manifests" / kind / path.name
                    shutil.copyfile(path, target)
                    target.chmod(0o644)  # the module cache's files are read-only
            publish(work, root, ("bin", "manifests"), "kwok.json", {
                "version": version, "kwok": line,
                "stages": [p.name for p in copies["stages"]], "log": str(log_path)})
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        console.print(f"KWOK {version} ready in {root}")
        return root
