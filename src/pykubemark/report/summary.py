"""summary.json as a type: `RunSummary`, written by the runner after every phase and read
by the terminal display, the HTML report, `compare` and `pykubemark report`.

The JSON is the one the runner has always written (field names, order, nulls), so that
result files of earlier runs stay readable and scripts that read them keep working:

    {"pykubemark": "0.1.0", "test": "density", "scenario": "density", "run_id": "7d39fe",
     "started": "2026-11-23T06:15:08Z", "finished": ..., "partial": false,
     "status": "completed", "cluster": {...}, "parameters": {...}, "node_selector": {},
     "phases": [...], "node_failures": [...], "slos": [...], "verdict": "fail",
     "files": {"perfdata": [...], "report": "report.html"}}

plus `node_failures_left` and `left_behind` only when there are some, and a phase's
`objects` once it has ended. Reading never fails: unknown fields are ignored, and a field
of the wrong type (a hand-edited file) reads as its default; see `decode_summary`.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from pykubemark.measure.slos import Slo

__all__ = ["Cluster", "Files", "LeftBehind", "NodeFailureRecord", "PhaseRecord",
           "RunSummary", "Slo", "decode_summary", "encode_summary"]


class Cluster(msgspec.Struct):
    """The cluster under test, as the run found it."""

    server: str = ""
    version: str = ""                    # the apiserver's gitVersion
    nodes: int | None = None             # the nodes the load was sized for
    ready_nodes: int | None = None       # Ready schedulable nodes (of the node selector)
    local: str | None = None             # the name of a cluster `pykubemark up` started
    flags: dict[str, list[str]] = {}     # component -> its --flags (local clusters)
    #: Addons running beside the control plane (`up --addons`): name -> version.
    addons: dict[str, str] | UnsetType = UNSET
    #: The Prometheus the run read figures from (`run --prometheus`, or the local
    #: cluster's own `up --prometheus` for the scenario's alerts).
    prometheus: str | UnsetType = UNSET


class PhaseRecord(msgspec.Struct):
    name: str = ""
    started: str | None = None
    finished: str | None = None          # None while it runs
    #: Objects touched per kind ("Deployment": 34, "deleted": 200); absent until it ends.
    objects: dict[str, int] | UnsetType = UNSET


class NodeFailureRecord(msgspec.Struct):
    """A node failure the run scheduled on its fleet (hollow.chaos's NodeFailure)."""

    phase: str | None = None             # None: scenario-wide
    id: str = ""
    failure: dict[str, Any] = {}
    start: str | None = None
    end: str | None = None               # None: until the run ends


class Files(msgspec.Struct):
    perfdata: list[str] = []             # the perfdata files, by name
    report: str = "report.html"


class LeftBehind(msgspec.Struct):
    """What the run's cleanup could not delete."""

    namespaces: list[str] = []


class RunSummary(msgspec.Struct):
    """One run: what it ran, on what, its phases, every SLO judged and the verdict."""

    pykubemark: str = ""                 # the version that ran it
    test: str = ""                       # the test name in the perfdata file names
    scenario: str = ""                   # as given to `run`: a built-in's name or a path
    run_id: str = ""                     # the value of the run's pykubemark.io/run label
    started: str = ""                    # RFC 3339, UTC, seconds
    finished: str | None = None
    partial: bool = False
    status: str = ""                     # running | completed | interrupted | failed: ...
    cluster: Cluster | None = None
    parameters: dict[str, Any] = {}      # the scenario's parameters as evaluated
    node_selector: dict[str, str] = {}
    phases: list[PhaseRecord] = []
    node_failures: list[NodeFailureRecord] = []
    slos: list[Slo] = []
    verdict: str = ""                    # pass | fail | no data ("" when not written)
    files: Files = msgspec.field(default_factory=Files)
    #: The chaos file the run's node failures could not be removed from.
    node_failures_left: str | UnsetType = UNSET
    left_behind: LeftBehind | UnsetType = UNSET


def encode_summary(summary: RunSummary) -> dict[str, Any]:
    """The summary as JSON-ready builtins, in summary.json's shape."""
    out: dict[str, Any] = msgspec.to_builtins(summary)
    return out


def decode_summary(obj: Any) -> RunSummary:
    """A summary from parsed JSON, field by field: unknown fields are ignored, and one of
    the wrong type is left at its default (an element of the wrong type of a list of rows
    is left out), so that a report still renders from a foreign or damaged file."""
    return _tolerant(RunSummary, obj)


def read_summary(path: Path) -> RunSummary | None:
    """`path`'s summary, or None when it is missing or not a JSON object."""
    try:
        obj = msgspec.json.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError):
        return None
    return decode_summary(obj) if isinstance(obj, dict) else None


_S = typing.TypeVar("_S", bound=msgspec.Struct)


def _tolerant(cls: type[_S], obj: Any) -> _S:
    if not isinstance(obj, dict):
        return cls()
    try:
        return msgspec.convert(obj, cls)
    except msgspec.ValidationError:
        pass
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        if field.encode_name not in obj:
            continue
        value = obj[field.encode_name]
        try:
            values[field.name] = msgspec.convert(value, field.type)
            continue
        except msgspec.ValidationError:
            pass
        inner = _struct_in(field.type)
        if inner is not None and isinstance(value, dict):
            values[field.name] = _tolerant(inner, value)
        item = _list_of_struct(field.type)
        if item is not None and isinstance(value, list):
            values[field.name] = [_tolerant(item, v) for v in value if isinstance(v, dict)]
    return cls(**values)


def _struct_in(annotation: Any) -> type[msgspec.Struct] | None:
    """S of a field typed S, S | None or S | UnsetType."""
    options = (typing.get_args(annotation)
               if isinstance(annotation, types.UnionType) else (annotation,))
    return next((o for o in options
                 if isinstance(o, type) and issubclass(o, msgspec.Struct)), None)


def _list_of_struct(annotation: Any) -> type[msgspec.Struct] | None:
    if typing.get_origin(annotation) is list:
        return _struct_in(typing.get_args(annotation)[0])
    return None
