"""A/B of two control planes (`ab`) and the history of many runs (`trend`)."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pykubemark.cli.output import console, err_console

_STYLE = {"regression": "bold red", "improvement": "green", "no change": ""}


def _side_options(side: str):
    def decorate(func):
        for component in reversed(("apiserver", "scheduler", "controller-manager", "etcd")):
            func = click.option(
                f"--{side}-{component}-arg", f"{side}_{component.replace('-', '_')}_args",
                multiple=True, metavar="FLAG",
                help=f"Extra {component} flag of the {side} (repeatable).")(func)
        return func
    return decorate


@click.command()
@click.argument("scenario")
@click.option("--baseline", default=None, metavar="SPEC",
              help="A release (1.37.2) or a directory of binaries (default: the default "
              "release).")
@click.option("--candidate", default=None, metavar="SPEC",
              help="A release or a directory of binaries (default: the default release).")
@_side_options("baseline")
@_side_options("candidate")
@click.option("--nodes", type=click.IntRange(1, 100_000), default=100, show_default=True,
              help="Hollow nodes of each side's cluster (and the scenario's size).")
@click.option("--pods-per-node", type=click.IntRange(0, 10_000), default=None,
              help="Scenario parameter pods_per_node.")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="Any other scenario parameter (see `pykubemark scenario show`).")
@click.option("--repeat", type=click.IntRange(1, 1000), default=None,
              help="Runs per side (default: 6, or as many as --budget allows).")
@click.option("--budget", type=click.FloatRange(0, min_open=True), default=None,
              metavar="MINUTES", help="Run pairs until the next one would end past this.")
@click.option("--design", type=click.Choice(["interleaved", "together"]), default=None,
              help="interleaved: one cluster at a time, A B B A …; together: both clusters "
              "at once (default: interleaved, see docs/ab.md).")
@click.option("--confidence", type=click.FloatRange(0.5, 1, max_open=True), default=0.95,
              show_default=True, help="Confidence of the intervals and verdicts.")
@click.option("--fail-on", "fail_on", multiple=True, metavar="slo|any|PATTERN",
              help="Metrics whose regression exits 1: slo (default: the SLO-bearing ones), "
              "any, or glob patterns of metric names (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output directory (default: ./pykubemark-ab-<scenario>-<time>).")
@click.option("--name", default="ab", show_default=True,
              help="Cluster names: NAME-baseline and NAME-candidate.")
def ab(scenario: str, baseline: str | None, candidate: str | None, nodes: int,
       pods_per_node: int | None, sets: tuple[str, ...], repeat: int | None,
       budget: float | None, design: str | None, confidence: float,
       fail_on: tuple[str, ...], out: Path | None, name: str, **flags: tuple[str, ...]) -> None:
    """A/B of two control planes: repeated runs of a scenario on each, a verdict per
    metric with its confidence; exit code 1 on a regression.

    Each run starts a fresh local control plane (NAME-baseline or NAME-candidate) with
    NODES hollow nodes, runs SCENARIO on it as `pykubemark run` does, and stops it. The
    directory gets ab.json, report.html and each run's own directory under runs/.
    """
    from pykubemark.ab.runner import DEFAULT_DESIGN, DEFAULT_REPEAT, AbOptions, AbRun
    from pykubemark.ab.spec import resolve_side
    from pykubemark.load.scenario import load_scenario, parse_overrides, resolve_parameters

    # everything that can refuse the comparison, before anything starts
    loaded = load_scenario(scenario)
    overrides = parse_overrides(sets)
    run_args: list[str] = []
    parameters: dict[str, object] = {}
    if pods_per_node is not None:
        overrides["pods_per_node"] = pods_per_node
        run_args += ["--pods-per-node", str(pods_per_node)]
        parameters["pods_per_node"] = pods_per_node
    for pair in sets:
        run_args += ["--set", pair]
        key, _, value = pair.partition("=")
        parameters[key] = value
    resolve_parameters(loaded, nodes, overrides, scenario)
    sides = {}
    for label, spec in (("baseline", baseline), ("candidate", candidate)):
        sides[label] = resolve_side(label, spec, {
            c: flags[f"{label}_{c.replace('-', '_')}_args"]
            for c in ("apiserver", "scheduler", "controller-manager", "etcd")})
    scenario_path = Path(scenario)
    source = str(scenario_path.resolve()) if scenario_path.is_file() else scenario
    out = out or Path(f"pykubemark-ab-{loaded.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    options = AbOptions(
        scenario=source, baseline=sides["baseline"], candidate=sides["candidate"],
        out=out.resolve(), nodes=nodes, run_args=tuple(run_args), parameters=parameters,
        repeat=repeat if repeat is not None or budget is not None else DEFAULT_REPEAT,
        budget=budget, design=design or DEFAULT_DESIGN, confidence=confidence,
        fail_on=fail_on or ("slo",), name=name)
    err_console.print(f"ab {loaded.name}: baseline [bold]{sides['baseline'].describe()}[/] "
                      f"vs candidate [bold]{sides['candidate'].describe()}[/], {nodes} nodes, "
                      f"{options.design}; results in {out}")

    def say(line: str) -> None:
        err_console.print(f"{time.strftime('%H:%M:%S')} {line}", highlight=False)

    result = AbRun(options, say=say).run()
    _print_metrics(result)
    console.print(f"report: {out / 'report.html'}")
    if result.partial and result.status == "interrupted":
        raise SystemExit(130)
    if result.regressions:
        raise SystemExit(1)


def _print_metrics(result) -> None:
    from pykubemark.ab.report import detectable_text, interval_text, ratio_text

    table = Table(title=f"{result.baseline.described}  vs  {result.candidate.described}"
                  + ("  (partial)" if result.partial else ""), box=box.SIMPLE_HEAD,
                  pad_edge=False)
    table.add_column("metric", overflow="fold", min_width=20)
    for column in ("baseline", "candidate", "ratio", "interval", "detectable"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    for m in result.metrics:
        r = m.result
        style = _STYLE.get(r.verdict, "")
        verdict = f"[{style}]{r.verdict}[/]" if style else r.verdict
        table.add_row(Text(("★ " if m.slo else "") + m.title), f"{r.baseline_median:.4g}",
                      f"{r.candidate_median:.4g}", ratio_text(r.ratio), interval_text(m),
                      detectable_text(m), verdict + (" ✖" if m.fails and
                                                     r.verdict == "regression" else ""))
    out = console if console.is_terminal else Console(width=160)
    out.print(table)
    used = {s: sum(1 for r in result.runs if r.side == s and r.usable)
            for s in ("baseline", "candidate")}
    console.print(f"runs used: {used['baseline']} baseline, {used['candidate']} candidate; "
                  f"{result.confidence * 100:g} % intervals; verdict: {result.verdict}"
                  + (f" ({', '.join(result.regressions)})" if result.regressions else ""))


@click.command()
@click.argument("directories", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--html", "html_out", type=click.Path(path_type=Path), default=None,
              help="Write the page here (default: ./trend.html).")
@click.option("--penalty", type=click.FloatRange(0, min_open=True), default=None,
              help="Change-point penalty factor (default: 8; higher finds fewer).")
def trend(directories: tuple[Path, ...], html_out: Path | None,
          penalty: float | None) -> None:
    """The history of one scenario over many runs: each metric's series and the change
    points in it, naming the first run after each shift.

    DIRECTORIES are `run --out` directories, or directories holding them (an `ab`
    output, a CI's archive of runs); runs are put in the order they started.
    """
    from pykubemark.ab.trend import PENALTY, write_trend_html
    from pykubemark.ab.trend import trend as find_trend

    result = find_trend(list(directories), penalty=penalty or PENALTY)
    table = Table(title=f"{result.scenario}: {len(result.runs)} runs", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for column in ("metric", "first run after the shift", "before", "after", "ratio"):
        table.add_column(column, overflow="fold")
    for metric in result.metrics:
        for shift in metric.shifts:
            table.add_row(Text(metric.title), Text(f"{shift.run} (#{shift.index + 1})"),
                          f"{shift.before:.4g}", f"{shift.after:.4g}", f"×{shift.ratio:.2f}")
    out = console if console.is_terminal else Console(width=160)
    if table.row_count:
        out.print(table)
    else:
        console.print(f"no shift in any of {len(result.metrics)} metrics over "
                      f"{len(result.runs)} runs")
    page = write_trend_html(result, html_out or Path("trend.html"))
    console.print(f"trend page: {page}")
