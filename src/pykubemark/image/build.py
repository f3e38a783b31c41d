"""Build the pykubemark image where only Debian's and PyPI's registries are reachable.

Two layers: a ``debootstrap --variant=minbase`` root with Debian's python3 (cached under
~/.cache/pykubemark/image, with its packed layer, so later builds only redo the second),
and /opt/pykubemark, a venv with the project's wheel and its pinned dependencies. Both
are packed as an OCI image layout tar with a docker-archive ``manifest.json`` beside the
OCI index, which ``ctr images import``, ``podman load`` and ``docker load`` all accept.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pykubemark import __version__
from pykubemark.errors import UserError
from pykubemark.files import write_atomic
from pykubemark.provision import aptsource

CACHE = Path("~/.cache/pykubemark/image").expanduser()
IMAGE_NAME = f"localhost/pykubemark:{__version__}"
VENV = "opt/pykubemark"
DEBIAN_PACKAGES = ("python3", "python3-venv")
#: Trimmed from the root: nothing in the image reads them.
TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
        "var/cache/apt/archives", "var/lib/apt/lists")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass
class Layer:
    """A gzipped layer blob: ``digest`` of the gzip, ``diff_id`` of the tar inside."""

    path: Path
    digest: str
    diff_id: str
    size: int


def _run(step: str, argv: list[str], log: Path, **kwargs) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False,
                                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                                **kwargs)
    if result.returncode != 0:
        tail = log.read_text().splitlines()[-5:]
        raise UserError(f"image build step '{step}' failed (exit {result.returncode}; "
                        f"log {log}): {' | '.join(tail)}")


def _mirror() -> tuple[str, str]:
    """(URI, suite) of the machine's own Debian archive."""
    try:
        entries = aptsource.find_debian_entries()
    except OSError as exc:
        raise UserError(f"cannot read the apt sources: {exc}") from None
    for entry in entries:
        suites = entry.get("Suites", "").split()
        codename = aptsource._codename()
        if codename in suites:
            return entry["URIs"].split()[0], codename
    raise UserError("no Debian apt source found for this machine's release: "
                    "`pykubemark image build` needs a Debian machine (or use deploy/Containerfile)")


def ensure_rootfs(log: Path, on_progress: Callable[[str], None]) -> Path:
    """The cached minbase root with python3 (built once)."""
    if os.geteuid() != 0:
        raise UserError("`pykubemark image build` needs root (debootstrap, chroot)")
    uri, suite = _mirror()
    root = CACHE / f"rootfs-{suite}"
    if (root / ".complete").is_file():
        return root
    if shutil.which("debootstrap") is None:
        on_progress("apt-get install debootstrap")
        _run("apt-get update", ["apt-get", "update", "-q"], log)
        _run("apt-get install debootstrap",
             ["apt-get", "install", "-y", "-q", "--no-install-recommends", "debootstrap"], log)
    staging = CACHE / f"rootfs-{suite}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    on_progress(f"debootstrap --variant=minbase {suite} (once; a few minutes)")
    _run("debootstrap", ["debootstrap", "--variant=minbase",
                         f"--include={','.join(DEBIAN_PACKAGES)}", suite, str(staging), uri], log)
    for relative in TRIM:
        target = staging / relative
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    shutil.rmtree(root, ignore_errors=True)
    staging.rename(root)
    (root / ".complete").touch()
    return root


class _Hashing:
    """A write-only file that hashes (and counts) what passes through it."""

    def __init__(self, out) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.out.write(data) if self.out is not None else len(data)

    def flush(self) -> None:
        if self.out is not None:
            self.out.flush()


def _entries(root: Path, skip: set[str]) -> Iterator[tuple[Path, str]]:
    for directory, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(directory, root)
        dirs[:] = sorted(d for d in dirs if os.path.normpath(os.path.join(rel_dir, d)) not in skip)
        for name in sorted(dirs) + sorted(files):
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel in skip:
                continue
            yield Path(directory) / name, rel


def pack_layer(root: Path, out: Path, *, prefix: str = "", skip: set[str] | None = None) -> Layer:
    """Tar ``root`` (as ``prefix``/...) into a gzipped layer; device nodes are left out
    (the runtime makes /dev)."""
    skip = skip or set()
    with out.open("wb") as raw:
        compressed = _Hashing(raw)
        with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=6, mtime=0) as gz:
            plain = _Hashing(gz)
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                if prefix:
                    parts = Path(prefix).parts
                    for i in range(1, len(parts)):
                        info = tarfile.TarInfo("/".join(parts[:i]))
                        info.type, info.mode = tarfile.DIRTYPE, 0o755
                        tar.addfile(info)
                for path, rel in _entries(root, skip):
                    name = f"{prefix}/{rel}" if prefix else rel
                    info = tar.gettarinfo(str(path), arcname=name)
                    if info.ischr() or info.isblk() or info.isfifo():
                        continue
                    info.uname = info.gname = ""
                    if info.isreg():
                        with path.open("rb") as handle:
                            tar.addfile(info, handle)
                    else:
                        tar.addfile(info)
    return Layer(out, f"sha256:{compressed.sha.hexdigest()}", f"sha256:{plain.sha.hexdigest()}",
                 compressed.size)


def _cached_base_layer(root: Path, on_progress: Callable[[str], None]) -> Layer:
    meta = root.with_name(root.name + ".layer.json")
    blob = root.with_name(root.name + ".layer.tar.gz")
    if meta.is_file() and blob.is_file():
        known = json.loads(meta.read_text())
        return Layer(blob, known["digest"], known["diff_id"], known["size"])
    on_progress("packing the Debian layer (once)")
    layer = pack_layer(root, blob, skip={".complete", VENV})
    write_atomic(meta, json.dumps({"digest": layer.digest, "diff_id": layer.diff_id,
                                   "size": layer.size}))
    return layer


@contextmanager
def _venv_in(root: Path) -> Iterator[Path]:
    venv = root / VENV
    shutil.rmtree(venv, ignore_errors=True)
    try:
        yield venv
    finally:
        shutil.rmtree(venv, ignore_errors=True)
        shutil.rmtree(root / "tmp" / "wheels", ignore_errors=True)


def build_wheels(project: Path, out: Path, log: Path) -> None:
    """The project's wheel and its pinned dependencies' wheels, with this machine's pip
    (whose Python must be the image's: Debian's python3 of this release)."""
    import sys

    _run("pip wheel", [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(out),
                       f"{project}[uvloop]"], log)


def _python_tag(root: Path) -> str:
    version = (root / "usr/bin").glob("python3.*")
    names = sorted(p.name for p in version if p.name.replace("python3.", "").isdigit())
    return names[-1] if names else "python3"


def project_dir() -> Path:
    """The source checkout this pykubemark runs from (its wheel goes into the image)."""
    here = Path(__file__).resolve().parents[3]
    if not (here / "pyproject.toml").is_file():
        raise UserError("`pykubemark image build` runs from a source checkout (pip install -e)")
    return here


def build_image(project: Path, out: Path, on_progress: Callable[[str], None]) -> dict:
    """Write the image archive to ``out``; what it is (name, digests, sizes)."""
    import sys

    CACHE.mkdir(parents=True, exist_ok=True)
    log = CACHE / "build.log"
    root = ensure_rootfs(log, on_progress)
    python = _python_tag(root)
    mine = f"python3.{sys.version_info.minor}"
    if python != mine:
        raise UserError(f"the image's Python is {python}, this machine's is {mine}: the "
                        "wheels would not fit (run with the Debian release's python3)")
    base = _cached_base_layer(root, on_progress)
    with tempfile.TemporaryDirectory(prefix="pykubemark-image-", dir=CACHE) as tmp:
        work = Path(tmp)
        with _venv_in(root) as venv:
            wheels = root / "tmp" / "wheels"
            on_progress("pip wheel (the project and its pinned dependencies)")
            build_wheels(project, wheels, log)
            on_progress("installing the wheels into /opt/pykubemark")
            _run("python3 -m venv", ["chroot", str(root), "python3", "-m", "venv",
                                     "--without-pip", f"/{VENV}"], log)
            _run("pip install", [sys.executable, "-m", "pip", "install", "-q", "--no-index",
                                 "--no-compile", "--no-deps", "--ignore-installed",
                                 "--prefix", str(venv), "--no-warn-script-location",
                                 *[str(w) for w in sorted(wheels.glob("*.whl"))]], log)
            _fix_scripts(venv)
            _run("compileall", ["chroot", str(root), f"/{VENV}/bin/python3", "-m", "compileall",
                                "-q", f"/{VENV}/lib"], log)
            on_progress("packing the pykubemark layer")
            app = pack_layer(venv, work / "app.tar.gz", prefix=VENV)
        return write_archive(out, [base, app], work, name=IMAGE_NAME, config=APP_CONFIG,
                             history=["debootstrap --variant=minbase (Debian python3)",
                                      "pykubemark wheels in /opt/pykubemark"])


def _fix_scripts(venv: Path) -> None:
    """pip --prefix wrote this machine's interpreter into the scripts' #! lines."""
    for script in (venv / "bin").iterdir():
        if not script.is_file() or script.is_symlink():
            continue
        head = script.read_bytes()
        if head.startswith(b"#!") and b"python" in head.split(b"\n", 1)[0]:
            rest = head.split(b"\n", 1)[1] if b"\n" in head else b""
            script.write_bytes(f"#!/{VENV}/bin/python3\n".encode() + rest)


def _blob(directory: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (directory / digest).write_bytes(data)
    return f"sha256:{digest}"


APP_CONFIG = {
    "Entrypoint": ["/opt/pykubemark/bin/pykubemark"],
    "Env": ["PATH=/opt/pykubemark/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:"
            "/usr/bin:/sbin:/bin", "PYTHONUNBUFFERED=1"],
    "WorkingDir": "/",
    "Labels": {"org.opencontainers.image.title": "pykubemark",
               "org.opencontainers.image.version": __version__},
}


def write_archive(out: Path, layers: list[Layer], work: Path, *, name: str, config: dict,
                  history: list[str]) -> dict:
    """An OCI image layout tar with a docker-archive manifest.json beside its index."""
    blobs = work / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    image_config = {
        "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine,
                                                                    os.uname().machine),
        "os": "linux",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created_by": line} for line in history],
    }
    config_bytes = json.dumps(image_config, sort_keys=True).encode()
    config_digest = _blob(blobs, config_bytes)
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer.digest, "size": layer.size}
                   for layer in layers],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = _blob(blobs, manifest_bytes)
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest_bytes),
        "annotations": {"io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name}}]}
    docker = [{"Config": f"blobs/sha256/{config_digest.removeprefix('sha256:')}",
               "RepoTags": [name],
               "Layers": [f"blobs/sha256/{layer.digest.removeprefix('sha256:')}"
                          for layer in layers]}]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        def add_bytes(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))

        add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_bytes("index.json", json.dumps(index).encode())
        add_bytes("manifest.json", json.dumps(docker).encode())
        for path in sorted(blobs.iterdir()):
            tar.add(str(path), arcname=f"blobs/sha256/{path.name}")
        for layer in layers:
            tar.add(str(layer.path), arcname=f"blobs/sha256/{layer.digest.removeprefix('sha256:')}")
    tmp.replace(out)
    return {"name": name, "archive": str(out), "archive_bytes": out.stat().st_size,
            "manifest": manifest_digest,
            "layers": [{"digest": layer.digest, "bytes": layer.size} for layer in layers]}
