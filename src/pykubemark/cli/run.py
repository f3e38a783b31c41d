"""Load, measurements and reports: run, scenario, report, compare.

The bodies are those the commands had in the single cli.py, kept as they were while the
run summary and the comparison become typed results; runner and report load only for
the command that needs them.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pykubemark.cli.output import console, err_console
from pykubemark.errors import UserError


def _key_values(pairs: tuple[str, ...], option: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"{option} {pair}: expected KEY=VALUE")
        out[key] = value
    return out


@click.command(name="run")
@click.argument("scenario")
@click.option("--cluster", "cluster_name", default=None,
              help="A local cluster started by `pykubemark up` (adds process and etcd metrics).")
@click.option("--kubeconfig", type=click.Path(path_type=Path), default=None,
              help="Kubeconfig of any cluster (default: $KUBECONFIG merged, ~/.kube/config).")
@click.option("--context", default=None, help="Context of the kubeconfig to use.")
@click.option("--nodes", type=click.IntRange(1, 1_000_000), default=None,
              help="Size the load for this many nodes (default: the Ready nodes).")
@click.option("--pods-per-node", type=click.IntRange(0, 10_000), default=None,
              help="Scenario parameter pods_per_node (density and load: 30).")
@click.option("--qps", type=click.FloatRange(0, min_open=True), default=None,
              help="Scenario parameter qps: pods created (changed, deleted) per second.")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="Any other scenario parameter (see `pykubemark scenario show`).")
@click.option("--node-selector", "node_selector", multiple=True, metavar="KEY=VALUE",
              help="Put the pods only on nodes with this label (and count only those).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output directory (default: ./pykubemark-<scenario>-<time>).")
@click.option("--test-name", default=None, help="Name in the result files (default: scenario).")
@click.option("--keep", is_flag=True, help="Leave the objects of the run in the cluster.")
@click.option("--prometheus", "prometheus", default=None, metavar="URL",
              help="Read API responsiveness, scheduling throughput and the control plane's "
              "resource usage from this Prometheus through PromQL (for clusters whose "
              "/metrics you cannot read); the report names each figure's source. "
              "A local cluster's `up --prometheus` is at the address `status` shows.")
@click.option("-q", "--quiet", is_flag=True, help="No live display: one line per phase (CI logs).")
def run_command(scenario: str, cluster_name: str | None, kubeconfig: Path | None,
                context: str | None, nodes: int | None, pods_per_node: int | None,
                qps: float | None, sets: tuple[str, ...], node_selector: tuple[str, ...],
                out: Path | None, test_name: str | None, keep: bool, prometheus: str | None,
                quiet: bool) -> None:
    """Run a scenario (density, load, or a YAML file) with its SLO measurements."""
    import time

    from pykubemark.kube.config import load_kubeconfig
    from pykubemark.load.scenario import load_scenario, parse_overrides
    from pykubemark.runner import RunOptions, Target, run

    if cluster_name and (kubeconfig or context):
        raise UserError("--cluster and --kubeconfig/--context name two different clusters: "
                        "pass one")
    loaded = load_scenario(scenario)
    overrides = parse_overrides(sets)
    if pods_per_node is not None:
        overrides["pods_per_node"] = pods_per_node
    if qps is not None:
        overrides["qps"] = qps
    target = (Target.from_local(cluster_name) if cluster_name
              else Target(config=load_kubeconfig(kubeconfig, context)))
    out = out or Path(f"pykubemark-{loaded.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    options = RunOptions(scenario=loaded, scenario_source=scenario, target=target, out=out,
                         overrides=overrides, nodes=nodes, keep=keep, test_name=test_name or "",
                         node_selector=_key_values(node_selector, "--node-selector"),
                         prometheus=prometheus)
    from pykubemark.display import RunDisplay

    display = RunDisplay(err_console, quiet=quiet)
    try:
        with display:
            result = run(options, on_progress=display.update, on_ready=display.ready)
    except KeyboardInterrupt:
        err_console.print("interrupted before the run started: nothing was created")
        raise SystemExit(130) from None
    display.summary(result)
    summary = result.summary
    if summary.status == "interrupted":
        raise SystemExit(130)
    if summary.status.startswith("failed"):
        raise SystemExit(3)
    if summary.verdict == "fail":
        raise SystemExit(1)


@click.group()
def scenario() -> None:
    """Built-in scenarios: list them, or print one to copy and change."""


@scenario.command(name="list")
def scenario_list() -> None:
    """Names and descriptions of the built-in scenarios."""
    from pykubemark.load.scenario import builtin_names, load_scenario

    for name in builtin_names():
        console.print(f"[bold]{name}[/]: {load_scenario(name).description}")


@scenario.command(name="show")
@click.argument("name")
def scenario_show(name: str) -> None:
    """Print a scenario's YAML: pykubemark scenario show density > my.yaml"""
    from pykubemark.load.scenario import scenario_text

    click.echo(scenario_text(name)[0], nl=False)


# --- reports of a run: `report`, `compare` ---------------------------------------------------

_VERDICT_STYLE = {"regression": "bold red", "improvement": "green", "ok": "",
                  "only in baseline": "yellow", "only in candidate": "yellow"}


@click.command()
@click.argument("directory", type=click.Path(path_type=Path))
def report(directory: Path) -> None:
    """(Re)render DIRECTORY/report.html from the files of a run."""
    from pykubemark.report.html import write_html

    console.print(str(write_html(directory)))


@click.command()
@click.argument("baseline")
@click.argument("candidate")
@click.option("--tolerance", type=float, default=10.0, show_default=True,
              help="Change (in %) beyond which a metric is a regression or an improvement.")
@click.option("--tolerances", "tolerances_file", type=click.Path(path_type=Path), default=None,
              help="YAML file: glob pattern of metric names -> tolerance in %, or -> "
              "{tolerance: %, floor: absolute value}.")
@click.option("--html", "html_out", type=click.Path(path_type=Path), default=None,
              help="Also write the comparison as an HTML page to this file.")
def compare(baseline: str, candidate: str, tolerance: float, tolerances_file: Path | None,
            html_out: Path | None) -> None:
    """Compare two runs; exit code 1 on any regression.

    BASELINE and CANDIDATE are `run --out` directories, directories of clusterloader2
    result files, single perfdata files or quoted glob patterns of them.
    """
    from pykubemark.report.compare import compare_runs, load_run, load_tolerances

    overrides = load_tolerances(tolerances_file) if tolerances_file else {}
    result = compare_runs(load_run(baseline), load_run(candidate), tolerance, overrides)
    table = Table(title=f"baseline {result.baseline.label}  vs  candidate "
                  f"{result.candidate.label}", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("metric (unit)", overflow="fold", min_width=16)
    for column, width in (("baseline", 8), ("candidate", 9), ("change", 7), ("tol.", 4)):
        table.add_column(column, justify="right", no_wrap=True, min_width=width)
    table.add_column("better", no_wrap=True, min_width=6)
    table.add_column("verdict", overflow="fold", min_width=11)

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.4g}"

    for row in result.rows:
        change = "-" if row.change_pct is None else f"{row.change_pct:+.1f}%"
        style = _VERDICT_STYLE[row.verdict]
        table.add_row(Text(f"{row.name} ({row.unit})"), number(row.baseline),
                      number(row.candidate),
                      change, f"{row.tolerance:g}%", "higher" if row.higher_is_better else "lower",
                      (f"[{style}]{row.verdict}[/]" if style else row.verdict)
                      + (f", {row.note}" if row.note else ""))
    # a CI log is not a terminal: give the table room, so that names are never folded
    longest = max((len(row.name) + len(row.unit) for row in result.rows), default=0)
    out = console if console.is_terminal else Console(width=max(160, longest + 80))
    out.print(table)
    counts = ", ".join(f"{n} {verdict}" for verdict, n in result.counts().items() if n)
    console.print(counts)
    if html_out is not None:
        from pykubemark.report.html import write_compare_html

        console.print(f"comparison page: {write_compare_html(result, html_out)}")
    if result.regressions:
        raise SystemExit(1)

