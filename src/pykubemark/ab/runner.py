"""`pykubemark ab`: the runs of both sides, each on a fresh local control plane with a
hollow fleet of the same size, and the analysis of what they measured.

Two designs (`result.DESIGNS`):

- interleaved: one cluster at a time, the sides alternating A B B A A B …, so that a
  drift of the machine's speed falls on both sides alike; a unit is one pair;
- together: both clusters at once, each with its fleet, their runs started together; a
  unit is one pair run side by side.

Each run is `pykubemark run` itself, a child process in its own session (its output in
the run's directory, `run.log`): `ab` measures nothing on its own. A run's directory is
the run's `--out`, with its own report.html.

Ctrl-C (or SIGTERM) stops the runs in progress (they write what they saw, marked
interrupted), stops every cluster this command started, and analyses the completed runs,
marking the comparison partial. Nothing is left running: the clusters are stopped under
a shield that a second Ctrl-C does not cut short.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import fnmatch
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pykubemark import __version__
from pykubemark.ab import metrics as ab_metrics
from pykubemark.ab.result import (
    DESIGNS,
    INTERLEAVED,
    TOGETHER,
    AbResult,
    MetricResult,
    RunRecord,
    SideRecord,
)
from pykubemark.ab.spec import COMPONENTS, Side
from pykubemark.ab.stats import DEFAULT_CONFIDENCE, REGRESSION, SEVERITY, compare_values
from pykubemark.errors import Interrupted, UserError
from pykubemark.report.summary import read_summary

#: The default design, chosen from A/A runs of both (docs/ab.md, benchmarks/results/ab-*).
DEFAULT_DESIGN = INTERLEAVED
#: Runs per side by default.
DEFAULT_REPEAT = 6
#: `--fail-on` words: the SLO-bearing metrics, or every metric.
FAIL_ON_SLO = "slo"
FAIL_ON_ANY = "any"
#: How long a run may take to stop after its SIGINT before it is killed.
STOP_GRACE = 60.0


@dataclass
class AbOptions:
    scenario: str
    baseline: Side
    candidate: Side
    out: Path
    nodes: int
    run_args: tuple[str, ...] = ()         # --pods-per-node, --set … as `run` takes them
    parameters: dict[str, Any] = field(default_factory=dict)
    repeat: int | None = DEFAULT_REPEAT
    budget: float | None = None            # minutes
    design: str = DEFAULT_DESIGN
    paired: bool | None = None             # None: paired when the design is `together`
    confidence: float = DEFAULT_CONFIDENCE
    fail_on: tuple[str, ...] = (FAIL_ON_SLO,)
    name: str = "ab"                       # clusters are NAME-baseline and NAME-candidate

    def check(self) -> None:
        if self.design not in DESIGNS:
            raise UserError(f"--design {self.design}: one of {', '.join(DESIGNS)}")
        if self.repeat is None and self.budget is None:
            raise UserError("give --repeat N or --budget MINUTES")
        if self.repeat is not None and self.repeat < 1:
            raise UserError("--repeat must be at least 1")
        if self.budget is not None and self.budget <= 0:
            raise UserError("--budget must be more than 0 minutes")
        if not 0.5 <= self.confidence < 1:
            raise UserError(f"--confidence {self.confidence}: between 0.5 and 1 (e.g. 0.95)")


def plan(repeat: int | None, design: str) -> Iterator[tuple[int, tuple[str, ...]]]:
    """The units in order: (unit number, the sides it runs, in order). Interleaved pairs
    alternate AB, BA, AB …; a `together` unit runs both at once."""
    unit = 0
    while repeat is None or unit < repeat:
        unit += 1
        if design == TOGETHER:
            yield unit, ("baseline", "candidate")
        else:
            yield unit, (("baseline", "candidate") if unit % 2 else ("candidate", "baseline"))


def utc(when: dt.datetime | None = None) -> str:
    return (when or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def side_record(side: Side) -> SideRecord:
    return SideRecord(label=side.label, spec=side.spec, release=side.release,
                      bin_dir=str(side.bin_dir),
                      flags={c: list(side.args(c)) for c in COMPONENTS if side.args(c)},
                      described=side.describe())


# -- the analysis -------------------------------------------------------------------------


def fails(metric: ab_metrics.Metric, fail_on: tuple[str, ...]) -> bool:
    for pattern in fail_on:
        if pattern == FAIL_ON_ANY or (pattern == FAIL_ON_SLO and metric.slo):
            return True
        if pattern not in (FAIL_ON_ANY, FAIL_ON_SLO) and fnmatch.fnmatchcase(metric.name,
                                                                             pattern):
            return True
    return False


def analyse(result: AbResult, out: Path) -> AbResult:
    """Judge every metric over the usable runs; sets `metrics`, `verdict`, `regressions`.

    Paired: only units in which both sides completed, paired by unit; else every
    completed run of each side."""
    runs = [r for r in result.runs if r.usable]
    if result.paired:
        units = {r.unit for r in runs if r.side == "baseline"} \
            & {r.unit for r in runs if r.side == "candidate"}
        runs = [r for r in runs if r.unit in units]
    runs.sort(key=lambda r: (r.unit, r.side))
    values = {id(r): ab_metrics.run_values(out / r.directory) for r in runs}
    base = [values[id(r)] for r in runs if r.side == "baseline"]
    cand = [values[id(r)] for r in runs if r.side == "candidate"]
    judged: list[MetricResult] = []
    if base and cand:
        for metric in ab_metrics.select(base + cand):
            b = ab_metrics.values(base, metric)
            c = ab_metrics.values(cand, metric)
            verdict = compare_values(b, c, higher_is_better=metric.higher_is_better,
                                     floor=metric.floor, confidence=result.confidence,
                                     paired=result.paired)
            judged.append(MetricResult(
                name=metric.name, title=metric.title, unit=metric.unit, group=metric.group,
                higher_is_better=metric.higher_is_better, slo=metric.slo,
                fails=fails(metric, tuple(result.fail_on)), floor=metric.floor,
                baseline=b, candidate=c,
                result=verdict))
    judged.sort(key=lambda m: (SEVERITY[m.result.verdict], not m.fails, not m.slo,
                               -abs(m.result.ratio - 1), m.name))
    result.metrics = judged
    result.regressions = [m.name for m in judged if m.fails and m.result.verdict == REGRESSION]
    result.verdict = ("no data" if not judged else REGRESSION if result.regressions else "pass")
    return result


# -- running ------------------------------------------------------------------------------


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class _Child:
    record: RunRecord
    popen: subprocess.Popen[bytes]
    started: float
    signalled: bool = False


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C while the comparison runs."""
    previous = {sig: signal.signal(sig, _raise_interrupt)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Stopping clusters: not to be cut short by another Ctrl-C."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class AbRun:
    """One comparison: call `run()`; `result` holds what was measured so far."""

    def __init__(self, options: AbOptions, *, say: Callable[[str], None] | None = None) -> None:
        options.check()
        self.options = options
        self.say = say or (lambda _line: None)
        self.out = options.out
        self.paired = options.paired if options.paired is not None \
            else options.design == TOGETHER
        self.result = AbResult(
            pykubemark=__version__, scenario=options.scenario, nodes=options.nodes,
            parameters=options.parameters, design=options.design, paired=self.paired,
            confidence=options.confidence, fail_on=list(options.fail_on),
            baseline=side_record(options.baseline), candidate=side_record(options.candidate),
            started=utc())
        self.clusters: set[str] = set()
        self.children: list[_Child] = []
        self._unit_seconds: list[float] = []

    # -- the pieces ----------------------------------------------------------------------
    def cluster_name(self, side: str) -> str:
        return f"{self.options.name}-{side}"

    def start_cluster(self, side: Side) -> str:
        from pykubemark.cluster import lifecycle
        from pykubemark.cluster.control_plane import UpOptions
        from pykubemark.engines import NodeOptions

        name = self.cluster_name(side.label)
        self.clusters.add(name)
        lifecycle.up(lifecycle.UpRequest(
            cluster=UpOptions(name=name, apiserver_args=side.args("apiserver"),
                              scheduler_args=side.args("scheduler"),
                              controller_manager_args=side.args("controller-manager"),
                              etcd_args=side.args("etcd"), size=self.options.nodes),
            bin_dir=side.bin_dir, nodes=NodeOptions(count=self.options.nodes)))
        return name

    def stop_clusters(self) -> None:
        from pykubemark.cluster import lifecycle

        with _shielded():
            for name in sorted(self.clusters):
                try:
                    lifecycle.down(name)
                except UserError as exc:
                    self.say(f"could not stop cluster '{name}': {exc.message}")
            self.clusters.clear()

    def start_run(self, side: str, unit: int, cluster: str) -> _Child:
        index = sum(1 for r in self.result.runs if r.side == side) + 1
        directory = Path("runs") / f"{len(self.result.runs) + 1:02d}-{side}-{index}"
        (self.out / directory).mkdir(parents=True, exist_ok=True)
        record = RunRecord(side=side, index=index, unit=unit, directory=str(directory),
                           status="running", started=utc())
        self.result.runs.append(record)
        argv = [sys.executable, "-m", "pykubemark", "run", self.options.scenario,
                "--cluster", cluster, "--out", str(self.out / directory), "--quiet",
                "--keep", "--nodes", str(self.options.nodes), *self.options.run_args]
        with (self.out / directory / "run.log").open("wb") as log:
            popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        child = _Child(record, popen, time.monotonic())
        self.children.append(child)
        return child

    def finish_run(self, child: _Child) -> None:
        record = child.record
        record.seconds = round(time.monotonic() - child.started, 1)
        summary = read_summary(self.out / record.directory / "summary.json")
        code = child.popen.returncode
        if summary is None:
            record.status = f"failed: no summary.json (exit code {code}; see run.log)"
        else:
            record.status = summary.status or f"exit code {code}"
            record.verdict = summary.verdict
        self.children.remove(child)

    def wait_children(self) -> None:
        while self.children:
            for child in list(self.children):
                if child.popen.poll() is not None:
                    self.finish_run(child)
            if self.children:
                time.sleep(0.5)

    def stop_children(self) -> None:
        """Ask the runs in progress to stop (each writes its partial report), and kill
        those that take longer than `STOP_GRACE`."""
        with _shielded():
            for child in self.children:
                if child.popen.poll() is None and not child.signalled:
                    with contextlib.suppress(ProcessLookupError):
                        child.popen.send_signal(signal.SIGINT)
                    child.signalled = True
            deadline = time.monotonic() + STOP_GRACE
            for child in list(self.children):
                try:
                    child.popen.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.popen.pid, signal.SIGKILL)
                    child.popen.wait()
                self.finish_run(child)

    # -- the plan ------------------------------------------------------------------------
    def _total(self) -> str:
        repeat, budget = self.options.repeat, self.options.budget
        per_unit = 2
        if budget is not None and self._unit_seconds:
            mean = sum(self._unit_seconds) / len(self._unit_seconds)
            units = max(len(self._unit_seconds), int(budget * 60 // mean))
            if repeat is not None:
                units = min(units, repeat)
            return f"~{units * per_unit}"
        if repeat is not None:
            return str(repeat * per_unit)
        return "?"

    def _within_budget(self, started: float) -> bool:
        if self.options.budget is None:
            return True
        elapsed = time.monotonic() - started
        mean = sum(self._unit_seconds) / len(self._unit_seconds) if self._unit_seconds else 0.0
        return elapsed + mean <= self.options.budget * 60

    def _progress(self) -> None:
        """The interval so far of the SLO-bearing metrics."""
        analyse(self.result, self.out)
        shown = [m for m in self.result.metrics if m.slo][:6]
        for m in shown:
            r = m.result
            high = "∞" if r.high is None else f"{r.high:.2f}"
            self.say(f"    {m.title}: ×{r.ratio:.2f} [{r.low:.2f}, {high}] {r.verdict}")

    def execute(self) -> None:
        started = time.monotonic()
        sides = {"baseline": self.options.baseline, "candidate": self.options.candidate}
        done = 0
        for unit, order in plan(self.options.repeat, self.options.design):
            if not self._within_budget(started):
                self.say(f"budget of {self.options.budget:g} min reached")
                break
            unit_started = time.monotonic()
            if self.options.design == TOGETHER:
                names = {s: self.start_cluster(sides[s]) for s in order}
                done += 1
                self.say(f"runs {done}-{done + 1} of {self._total()}: baseline and candidate "
                         "together")
                done += 1
                for s in order:
                    self.start_run(s, unit, names[s])
                self.wait_children()
                self.stop_clusters()
            else:
                for s in order:
                    name = self.start_cluster(sides[s])
                    done += 1
                    self.say(f"run {done} of {self._total()}: {s}")
                    self.start_run(s, unit, name)
                    self.wait_children()
                    self.stop_clusters()
            self._unit_seconds.append(time.monotonic() - unit_started)
            for record in self.result.runs:
                if record.unit == unit and not record.usable:
                    self.say(f"  run {record.directory}: {record.status}")
            self.result.write(self.out)
            self._progress()

    def run(self) -> AbResult:
        """Run the comparison to the end, the budget or an interrupt; always analyse and
        write ab.json and report.html. A `UserError` (a cluster that did not start) stops
        it like an interrupt, then is raised again."""
        self.out.mkdir(parents=True, exist_ok=True)
        for side in ("baseline", "candidate"):
            from pykubemark.cluster.state import cluster_dir, load

            name = self.cluster_name(side)
            if (cluster_dir(name) / "state.json").is_file() and load(name).running():
                raise UserError(f"cluster '{name}' is running (another `ab`?); stop it "
                                f"(pykubemark down --name {name}) or pass --name")
        status = "completed"
        error: UserError | None = None
        self.result.write(self.out)
        try:
            with _signals_raise():
                self.execute()
        except (KeyboardInterrupt, Interrupted):
            status = "interrupted"
            self.say("interrupted: stopping the runs and the clusters; the completed runs "
                     "are analysed")
        except UserError as exc:
            status = f"failed: {exc.message}"
            error = exc
        finally:
            self.stop_children()
            self.stop_clusters()
        self.result.status = status
        self.result.partial = status != "completed"
        self.result.finished = utc()
        analyse(self.result, self.out)
        self.result.write(self.out)
        from pykubemark.ab.report import write_report

        write_report(self.result, self.out)
        if error is not None:
            raise error
        return self.result
