"""The `pykubemark` command. Each subcommand parses its options, calls one function of
the package it concerns and prints what came back; the packages know nothing of the
command line.

A command's module is imported only when that command runs (or shows its help), so
`pykubemark alive`, the liveness probe of every shard pod, does not load the hollow
fleet, nor `pykubemark status` the load generator. `pykubemark --help` loads none of
them: it shows the summaries in `COMMANDS`, which tests/unit/test_cli.py keeps equal
to the commands' own.
"""

from __future__ import annotations

import importlib

import click

from pykubemark import __version__
from pykubemark.errors import UserError

#: Each command: the module of this package that defines it, the function's name there,
#: and the first paragraph of its help.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "ab": ("ab", "ab",
           "A/B of two control planes: repeated runs of a scenario on each, a verdict per "
           "metric with its confidence; exit code 1 on a regression."),
    "alive": ("alive", "alive",
              "Exit 0 if `hollow --heartbeat-file` touched HEARTBEAT_FILE in the last "
              "--max-age seconds (the liveness probe of the shard pods of `deploy`), else 1."),
    "chaos": ("chaos", "chaos",
              "Fail hollow nodes of a running fleet: stop their heartbeats, flap them, slow "
              "them, restart them, or let clusterloader2's chaos monkey kill and restore a "
              "fraction of them every interval."),
    "compare": ("run", "compare", "Compare two runs; exit code 1 on any regression."),
    "deploy": ("deploy", "deploy",
               "Run hollow nodes as pods of a StatefulSet on a base cluster, joining a "
               "target cluster."),
    "down": ("cluster", "down", "Stop every process of a local cluster."),
    "hollow": ("hollow", "hollow",
               "Run hollow nodes (kubelet + kube-proxy each) against a cluster until Ctrl-C."),
    "image": ("image", "image", "The pykubemark container image (for `deploy`)."),
    "kubectl": ("cluster", "kubectl",
                "Run kubectl against a local cluster: pykubemark kubectl --name N -- get "
                "nodes."),
    "provision": ("provision", "provision",
                  "Build a Kubernetes release (and its etcd) from Go modules once, or check "
                  "--bin-dir."),
    "real-nodes": ("cluster", "real_nodes",
                   "Real nodes of a running local cluster (see `up --real-nodes`)."),
    "report": ("run", "report", "(Re)render DIRECTORY/report.html from the files of a run."),
    "restart": ("cluster", "restart",
                "Stop one component of a local cluster and start it again with the same "
                "flags."),
    "run": ("run", "run_command",
            "Run a scenario (density, load, or a YAML file) with its SLO measurements."),
    "scenario": ("run", "scenario",
                 "Built-in scenarios: list them, or print one to copy and change."),
    "status": ("cluster", "status",
               "Show each component of the local clusters: pid, port, health."),
    "trend": ("ab", "trend",
              "The history of one scenario over many runs: each metric's series and the "
              "change points in it, naming the first run after each shift."),
    "undeploy": ("deploy", "undeploy",
                 "Remove what `deploy` created on the base cluster (and the target's Nodes)."),
    "up": ("cluster", "up",
           "Start a local control plane (etcd, apiserver, scheduler, controller-manager)."),
}


class LazyGroup(click.Group):
    """Finds a command in `COMMANDS` and imports its module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attribute, _summary = COMMANDS[cmd_name]
            command = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's own listing, from the summaries instead of the imported commands."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = [(name, self.summary(name).get_short_help_str(limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def summary(self, name: str) -> click.Command:
        if name in self.commands:
            return self.commands[name]
        return click.Command(name, help=COMMANDS[name][2])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pykubemark")
def cli() -> None:
    """Kubemark in Python: hollow nodes against a real Kubernetes control plane."""


def main() -> None:
    """The entry point: a `UserError` from any package is one line and its exit code."""
    try:
        cli(standalone_mode=True)
    except UserError as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
