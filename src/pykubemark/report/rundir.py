"""Reading a run back from its files only, so a report can be rendered again, long after the
run, from a copied directory, or from clusterloader2's own results.

Every reader tolerates what a partial run did not write: a missing or unreadable file is
`None` (or empty), never an exception, because an interrupted run must still get a report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pykubemark.report.summary import RunSummary, read_summary

# clusterloader2 names its files f"{summary}_{test}_{time.RFC3339}.json"; the test name has
# no underscore in practice (density, load), the summary name often has one.
_PERFDATA_NAME = re.compile(
    r"^(?P<summary>.+?)_(?P<test>[^_]+)_"
    r"(?P<time>\d{4}-\d\d-\d\dT\d\d[:_-]?\d\d[:_-]?\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)\.json$"
)


@dataclass
class Perfdata:
    """One perfdata file: clusterloader2's {"version", "dataItems": [...]}."""

    summary: str
    path: Path
    items: list[dict[str, Any]]


@dataclass
class RunFiles:
    """What a run left in its output directory (any part may be missing)."""

    directory: Path
    summary: RunSummary | None = None    # None: no summary.json (or not a JSON object)
    perfdata: dict[str, Perfdata] = field(default_factory=dict)

    def raw(self, summary_name: str) -> dict[str, Any] | None:
        loaded = read_json(self.directory / "raw" / f"{summary_name}.json")
        return loaded if isinstance(loaded, dict) else None

    def series(self, name: str) -> dict[str, Any] | None:
        loaded = read_json(self.directory / "series" / f"{name}.json")
        if not isinstance(loaded, dict) or not isinstance(loaded.get("series"), dict):
            return None
        return loaded

    def series_names(self, prefix: str) -> list[str]:
        folder = self.directory / "series"
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob(f"{prefix}*.json"))

    def raw_names(self, prefix: str) -> list[str]:
        folder = self.directory / "raw"
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob(f"{prefix}*.json"))


def read_json(path: Path) -> Any | None:
    """The file's JSON, or None when it is missing or not JSON (a run cut short)."""
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def summary_name(path: Path, test: str | None = None) -> str:
    """The summary name of a perfdata file: its name without `_<test>_<time>.json`."""
    name = path.name
    if test:
        match = re.match(rf"^(?P<summary>.+)_{re.escape(test)}_[^_]+\.json$", name)
        if match:
            return match["summary"]
    match = _PERFDATA_NAME.match(name)
    if match:
        return match["summary"]
    return path.stem


def perfdata_name_parts(path: Path) -> tuple[str, str] | None:
    """The test name and start time in a perfdata file name, when it has clusterloader2's."""
    match = _PERFDATA_NAME.match(path.name)
    return (match["test"], match["time"]) if match else None


def read_perfdata(path: Path, test: str | None = None) -> Perfdata | None:
    """The perfdata in `path`, or None when the file is not a perfdata file."""
    loaded = read_json(path)
    if not isinstance(loaded, dict) or not isinstance(loaded.get("dataItems"), list):
        return None
    items = [item for item in loaded["dataItems"]
             if isinstance(item, dict) and isinstance(item.get("data"), dict)]
    return Perfdata(summary_name(path, test), path, items)


def read_perfdata_files(paths: Iterable[Path], test: str | None = None) -> dict[str, Perfdata]:
    """Perfdata by summary name; of two files with one summary name, the later time wins."""
    found: dict[str, Perfdata] = {}
    for path in sorted(paths, key=lambda p: p.name):
        perfdata = read_perfdata(path, test)
        if perfdata is not None:
            found[perfdata.summary] = perfdata
    return found


def read_run(directory: Path) -> RunFiles:
    """Every file of a run directory that exists and parses."""
    summary = read_summary(directory / "summary.json")
    test = summary.test if summary is not None else None
    perfdata = read_perfdata_files(directory.glob("*.json"), test)
    return RunFiles(directory, summary, perfdata)
