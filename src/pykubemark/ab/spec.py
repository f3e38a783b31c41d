"""What runs on each side of an A/B: a release or a binaries directory, and flags.

Every side is resolved before anything starts, so that a mistake costs one line: a
release that is neither built here nor served by the Go module proxy, a directory
without the control-plane binaries (or whose binaries do not run), a flag that is not
one. A release that is served but not built yet is built here, once, as `provision`
would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pykubemark.errors import UserError
from pykubemark.provision import Binaries, Release, cached_bin_dir
from pykubemark.provision.binaries import find_binaries
from pykubemark.provision.build import build_release
from pykubemark.provision.releases import default_release, parse_release, served_releases

#: The components whose flags a side may set, as the options name them.
COMPONENTS = ("apiserver", "scheduler", "controller-manager", "etcd")
_RELEASE = re.compile(r"^v?\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class Side:
    """One side of the comparison, resolved: its binaries directory and its flags."""

    label: str                              # baseline | candidate
    spec: str                               # as given ("" for the default release)
    bin_dir: Path
    release: str                            # what its kube-apiserver says it is
    flags: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def args(self, component: str) -> tuple[str, ...]:
        return self.flags.get(component, ())

    def describe(self) -> str:
        what = self.spec or f"{self.release} (the default release)"
        if self.spec and self.spec != self.release:
            what += f" ({self.release})"
        for component in COMPONENTS:
            for flag in self.args(component):
                what += f" {component}:{flag}"
        return what


def _binaries_of_release(label: str, release: Release) -> Binaries:
    directory = cached_bin_dir(release)
    if not (directory.parent / "release.json").is_file():
        if release not in served_releases():
            raise UserError(f"--{label} {release}: no such Kubernetes release (not built here, "
                            "not served by the Go module proxy; `pykubemark provision --list`)")
        build_release(release)
    found = find_binaries(directory)
    if found is None:  # pragma: no cover - find_binaries raises for an explicit directory
        raise UserError(f"--{label} {release}: its build in {directory} does not verify")
    return found


def resolve_side(label: str, spec: str | None,
                 flags: dict[str, tuple[str, ...]] | None = None) -> Side:
    """A SPEC as given to --baseline/--candidate: a release (``1.37.2``), a directory of
    binaries, or nothing (the default release)."""
    flags = {c: tuple(f) for c, f in (flags or {}).items() if f}
    for component, values in flags.items():
        if component not in COMPONENTS:
            raise UserError(f"--{label}: no component '{component}' ({', '.join(COMPONENTS)})")
        for flag in values:
            if not flag.startswith("--") or len(flag) < 3:
                raise UserError(f"--{label}-{component}-arg {flag}: a flag starts with -- "
                                f"(e.g. --{label}-apiserver-arg=--max-requests-inflight=10)")
    text = (spec or "").strip()
    if not text:
        binaries = _binaries_of_release(label, default_release())
    elif _RELEASE.match(text) and not Path(text).exists():
        binaries = _binaries_of_release(label, parse_release(text, what=f"--{label}"))
    else:
        directory = Path(text).expanduser()
        if not directory.exists() and not any(c in text for c in "/~"):
            raise UserError(f"--{label} {text}: neither a release (like 1.37.2) nor a "
                            "directory of binaries")
        try:
            found = find_binaries(directory)
        except UserError as exc:
            raise UserError(f"--{label} {exc.message.removeprefix('--bin-dir ')}") from None
        assert found is not None
        binaries = found
    return Side(label=label, spec=text, bin_dir=binaries.kube_apiserver.parent,
                release=str(binaries.release), flags=flags)
