"""What a run shows in the terminal: the phase, bars of pods created / Running / gone,
the elapsed time; or, for CI logs, one line per phase and one every 30 seconds."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pykubemark.load.generator import Progress, progress_line

if TYPE_CHECKING:
    from pykubemark.load.scenario import Values
    from pykubemark.runner import Run

VERDICT_STYLE = {"pass": "green", "fail": "bold red", "no data": "yellow"}


def _bar(done: int, total: int, width: int = 30) -> str:
    if total <= 0:
        return " " * width
    filled = min(width, round(width * done / total))
    return "█" * filled + "░" * (width - filled)


class RunDisplay:
    def __init__(self, console: Console, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet or not console.is_terminal
        self.started = time.monotonic()
        self.phase = ""
        self._last_line = 0.0
        self._live: Live | None = None
        self._measured: dict[str, int] = {}

    def __enter__(self) -> RunDisplay:
        if not self.quiet:
            self._live = Live(Text("preparing"), console=self.console, refresh_per_second=4,
                              transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def ready(self, run: Run, values: Values) -> None:
        cluster = run.summary.cluster
        assert cluster is not None, "written by Run.prepare()"
        params = ", ".join(f"{k}={v}" for k, v in values.names.items())
        self.console.print(f"[bold]{run.test}[/] on {cluster.server} "
                           f"(Kubernetes {cluster.version}, {cluster.nodes} nodes): "
                           f"{params}")
        self.console.print(f"  results: {run.output.directory}")
        self._run = run

    def update(self, phase: str, progress: Progress) -> None:
        elapsed = time.monotonic() - self.started
        if phase != self.phase:
            if self.phase:
                self.console.print(f"  [dim]{_clock(elapsed)}[/] {self.phase} done")
            self.phase = phase
            if self.quiet:
                self.console.print(f"{_clock(elapsed)} phase {phase}")
        if self.quiet:
            if time.monotonic() - self._last_line >= 30 and progress.phase:
                self._last_line = time.monotonic()
                self.console.print(f"{_clock(elapsed)} {progress_line(progress)}")
            return
        if self._live is not None:
            self._live.update(self._render(progress, elapsed))

    def _render(self, progress: Progress, elapsed: float) -> Table:
        table = Table.grid(padding=(0, 1))
        table.add_row(f"[bold]{progress.phase}[/]", f"[dim]{_clock(elapsed)}[/]",
                      progress.waiting and f"waiting for {progress.waiting}")
        if progress.pods_to_create:
            table.add_row("created", _bar(progress.pods_created, progress.pods_to_create),
                          f"{progress.pods_created}/{progress.pods_to_create} pods")
        if progress.pods_wanted:
            table.add_row("Running", _bar(progress.pods_running, progress.pods_wanted),
                          f"{progress.pods_running}/{progress.pods_wanted} pods")
        if progress.to_delete:
            table.add_row("deleted", _bar(progress.deleted, progress.to_delete),
                          f"{progress.deleted}/{progress.to_delete} objects")
        if progress.waiting == "pods gone" or progress.phase == "cleanup":
            table.add_row("left", "", f"{progress.pods_running} pods")
        return table

    def summary(self, run: Run) -> None:
        summary = run.summary
        if self.phase:
            elapsed = time.monotonic() - self.started
            self.console.print(f"  [dim]{_clock(elapsed)}[/] {self.phase} done")
        table = Table(title=f"{summary.test}: {summary.status}")
        sources = any(isinstance(slo.source, str) for slo in summary.slos)
        for column in ("SLO", "value", "threshold", "verdict", *(["source"] if sources
                                                                  else [])):
            table.add_column(column)
        for slo in summary.slos:
            value = "-" if slo.value is None else f"{slo.value:.0f} {slo.unit}"
            source = [slo.source if isinstance(slo.source, str) else "direct"] if sources \
                else []
            table.add_row(slo.name, value, f"{slo.threshold:g} {slo.unit}",
                          f"[{VERDICT_STYLE.get(slo.verdict, '')}]{slo.verdict}[/]", *source)
        self.console.print(table)
        verdict = summary.verdict
        self.console.print(f"verdict: [{VERDICT_STYLE.get(verdict, '')}]{verdict}[/]"
                           + ("  (partial: " + summary.status + ")"
                              if summary.partial else ""))
        if not isinstance(summary.left_behind, msgspec.UnsetType):
            left = msgspec.to_builtins(summary.left_behind)
            self.console.print(f"[yellow]left behind[/]: {left}")
        report = run.output.directory / "report.html" if run._output else None
        if report and report.exists():
            self.console.print(f"report: {report.resolve()}")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"
