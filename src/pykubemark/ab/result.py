"""ab.json as types: what an A/B ran, each run, and each metric's verdict.

Written after every run (so an interrupted comparison keeps what it measured) and read
back by the report and by `benchmarks/ab.py`.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from pykubemark.ab.stats import Verdict

INTERLEAVED = "interleaved"
TOGETHER = "together"
DESIGNS = (INTERLEAVED, TOGETHER)


class SideRecord(msgspec.Struct):
    label: str = ""
    spec: str = ""
    release: str = ""
    bin_dir: str = ""
    flags: dict[str, list[str]] = {}
    described: str = ""


class RunRecord(msgspec.Struct):
    side: str = ""                      # baseline | candidate
    index: int = 0                      # 1-based, among its side's runs
    unit: int = 0                       # 1-based: the pair (interleaved) or block it was in
    directory: str = ""                 # relative to the comparison's directory
    status: str = ""                    # the run's summary status, or why it has none
    verdict: str = ""                   # the run's own SLO verdict
    started: str = ""
    seconds: float = 0.0                # the run alone (the cluster's start excluded)

    @property
    def usable(self) -> bool:
        return self.status == "completed"


class MetricResult(msgspec.Struct):
    name: str
    title: str
    unit: str
    group: str
    higher_is_better: bool
    slo: bool
    #: Whether a regression of it fails the comparison (`--fail-on`).
    fails: bool
    baseline: list[float]
    candidate: list[float]
    result: Verdict
    #: Changes within it are not news; values below it count as it (`ab.stats`).
    floor: float = 0.0


class AbResult(msgspec.Struct):
    pykubemark: str = ""
    scenario: str = ""
    nodes: int = 0
    parameters: dict[str, object] = {}  # --pods-per-node, --set: what the runs were given
    design: str = INTERLEAVED
    paired: bool = False
    confidence: float = 0.95
    fail_on: list[str] = []
    baseline: SideRecord = msgspec.field(default_factory=SideRecord)
    candidate: SideRecord = msgspec.field(default_factory=SideRecord)
    started: str = ""
    finished: str | None = None
    status: str = "running"             # running | completed | interrupted | failed: ...
    partial: bool = True
    runs: list[RunRecord] = []
    metrics: list[MetricResult] = []
    verdict: str = ""                   # regression | pass | no data
    regressions: list[str] = []         # the failing metrics' names

    def write(self, directory: Path) -> Path:
        from pykubemark.files import write_atomic

        path = directory / "ab.json"
        write_atomic(path, msgspec.json.format(msgspec.json.encode(self), indent=2))
        return path


def read_result(path: Path) -> AbResult:
    from pykubemark.errors import UserError

    try:
        return msgspec.json.decode(path.read_bytes(), type=AbResult)
    except (OSError, msgspec.DecodeError) as exc:
        raise UserError(f"{path}: not an ab.json ({exc})") from None
