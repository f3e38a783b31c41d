"""The installed package (a wheel, the container image) carries only what
``package-data`` names beside the modules: a data file it misses works from the
checkout and fails where pykubemark is installed."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "pykubemark"


def test_every_data_file_is_package_data() -> None:
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["pykubemark"]
    data = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc")
            and "__pycache__" not in p.parts]
    assert data
    missed = [name for name in data if not any(fnmatch(name, g) for g in globs)]
    assert not missed, f"not in [tool.setuptools.package-data]: {missed}"
