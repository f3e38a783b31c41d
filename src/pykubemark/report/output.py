"""One output directory per run, every file written atomically.

A run can be interrupted at any moment (Ctrl-C, a crash, a lost cluster), so measurements
rewrite their files while they measure; a reader must never see half a file. Each write
goes to a temporary file in the same directory and is renamed over the target.

Perfdata files use clusterloader2's names and shape so that perfdash and scripts written
for clusterloader2 read them unchanged.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import orjson

from pykubemark.errors import UserError

PERFDATA_VERSION = "v1"


class DataItem(msgspec.Struct):
    """One row of a perfdata file: clusterloader2's ``DataItem``."""

    data: dict[str, float]
    unit: str
    labels: dict[str, str] = {}


def _default(obj: Any) -> Any:
    """What orjson cannot encode by itself: msgspec structs (DataItem...) and paths."""
    if isinstance(obj, msgspec.Struct):
        return msgspec.to_builtins(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _utc(when: dt.datetime | None) -> dt.datetime:
    when = when or dt.datetime.now(dt.UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).replace(microsecond=0)


class Output:
    """The run's ``--out`` directory: perfdata, series, raw values, summary."""

    def __init__(self, directory: Path, test_name: str, started: dt.datetime | None = None):
        self.directory = Path(directory)
        self.test_name = test_name
        self.started = _utc(started)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Prove we can write here now, not at the first measurement minutes later.
            with tempfile.NamedTemporaryFile(dir=self.directory, prefix=".probe-"):
                pass
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise UserError(f"output directory {self.directory} cannot be written: {reason}"
                            ) from None

    @property
    def stamp(self) -> str:
        """The run's start as clusterloader2 puts it in file names (RFC 3339, UTC)."""
        return f"{self.started:%Y-%m-%dT%H:%M:%SZ}"

    def elapsed(self, when: dt.datetime | None = None) -> float:
        """Seconds since the run started: the x axis of every series."""
        return (_utc_exact(when) - self.started).total_seconds()

    def write_json(self, relpath: str, obj: Any) -> Path:
        target = self.directory / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        payload = orjson.dumps(obj, default=_default,
                               option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload + b"\n")
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return target

    def perfdata_name(self, summary_name: str) -> str:
        return f"{summary_name}_{self.test_name}_{self.stamp}.json"

    def perfdata(self, summary_name: str, items: list[DataItem]) -> Path:
        return self.write_json(self.perfdata_name(summary_name),
                               {"version": PERFDATA_VERSION, "dataItems": items})

    def series(self, name: str, unit: str, series: dict[str, list[list[float]]]) -> Path:
        """series/<name>.json: ``[[seconds_since_run_start, value], ...]`` per label."""
        return self.write_json(f"series/{name}.json", {"unit": unit, "series": series})


def _utc_exact(when: dt.datetime | None) -> dt.datetime:
    when = when or dt.datetime.now(dt.UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)
