"""What a release's kubelet and kube-proxy do toward the apiserver, one file per minor.

``releases/<major>.<minor>.yaml`` holds the fields of `pykubemark.hollow.profile.Profile`
in which that release differs from kubelet 1.20 (the struct's defaults): which objects
it watches with which selectors, whether its informers stream their initial lists,
where a node-status check reads the Node, what the kube-proxy watches, the client
budgets, the status fields. Each file was read off the real binaries' requests in the
apiserver's audit log (``benchmarks/fidelity.py --record`` writes them), so the next
release is a recording away, not a code change.

A release with no file of its own takes the nearest one below it (a patch release, or a
minor newer than the newest file), and says so once; one older than every file is an
error, since nothing below it was ever checked.

``runtime/<name>.yaml`` holds what is not the kubelet's but its container runtime's: how
long a sandbox and a container take to start and stop on some machine. The release
profiles take none (as the Go kubemark's fake runtime); benchmarks that hold hollow
nodes against real ones put the real nodes' runtime on top (`runtime_profile`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from pykubemark.errors import UserError
from pykubemark.provision.releases import Release

log = logging.getLogger(__name__)
RELEASES = Path(__file__).parent / "releases"
RUNTIMES = Path(__file__).parent / "runtime"
#: The runtime of `up --real-nodes` on this project's machine: what benchmarks that hold
#: hollow nodes against real ones put on the hollow side.
REAL_NODES_RUNTIME = "containerd-one-machine"
#: A mapping of these keys is a distribution (hollow.profile.Distribution): replaced
#: whole, never merged key by key (a ``fixed`` over a ``uniform`` is not both).
DISTRIBUTION_KEYS = frozenset({"fixed", "uniform", "lognormal"})


@dataclass(frozen=True)
class ReleaseProfile:
    #: The minor whose file was taken.
    minor: tuple[int, int]
    #: Profile fields, as in the file (without its ``source`` note).
    data: dict[str, object]
    #: Where the file's figures come from: the recording it was read off.
    source: str
    #: Whether the release asked for had no file of its own.
    fallback: bool


@cache
def available() -> tuple[tuple[int, int], ...]:
    """The minors with a profile file, oldest first."""
    minors = []
    for path in RELEASES.glob("*.yaml"):
        major, _, minor = path.stem.partition(".")
        minors.append((int(major), int(minor)))
    return tuple(sorted(minors))


@cache
def _read(minor: tuple[int, int]) -> dict[str, object]:
    """A file's fields on top of those of the file it ``inherits`` (one release's
    differences from the one before): sections (mappings) merge key by key, anything
    else — lists included — is replaced."""
    loaded = yaml.safe_load((RELEASES / f"{minor[0]}.{minor[1]}.yaml").read_text()) or {}
    assert isinstance(loaded, dict), f"profile {minor} is not a mapping"
    parent = loaded.pop("inherits", None)
    if parent is None:
        return loaded
    major, _, sub = str(parent).partition(".")
    return merge(_read((int(major), int(sub))), loaded)


def merge(base: dict[str, object], over: dict[str, object]) -> dict[str, object]:
    """``over`` on top of ``base``: sections (mappings) merge key by key; anything else —
    lists and distributions included — is replaced."""
    merged = dict(base)
    for key, value in over.items():
        old = merged.get(key)
        merged[key] = (merge(old, value) if isinstance(old, dict) and isinstance(value, dict)
                       and not set(value) <= DISTRIBUTION_KEYS else value)
    return merged


def runtime_profile(name: str) -> Path:
    """The packaged runtime profile ``name`` (``runtime/<name>.yaml``)."""
    path = RUNTIMES / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in RUNTIMES.glob("*.yaml")))
        raise UserError(f"no runtime profile {name!r} (known: {known})")
    return path


def release_profile(release: Release) -> ReleaseProfile:
    """The profile for ``release``: its minor's file, else the nearest one below."""
    below = [m for m in available() if m <= release.minor_version]
    if not below:
        oldest = ".".join(map(str, available()[0]))
        raise UserError(f"no hollow-node profile for Kubernetes {release}: the oldest known "
                        f"is {oldest}")
    minor = below[-1]
    fallback = minor != release.minor_version
    if fallback:
        _warn_once(release, minor)
    data = dict(_read(minor))
    source = str(data.pop("source", ""))
    data["kubelet_version"] = release.tag
    return ReleaseProfile(minor, data, source, fallback)


@cache
def _warn_once(release: Release, minor: tuple[int, int]) -> None:
    log.warning("no hollow-node profile for Kubernetes %s.%s: acting as %s.%s's kubelet "
                "and kube-proxy", release.major, release.minor, *minor)
