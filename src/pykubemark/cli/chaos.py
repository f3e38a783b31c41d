"""`pykubemark chaos`: node failures for a running fleet."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from pykubemark.cli.options import name_option
from pykubemark.cli.output import console
from pykubemark.cluster.hollow import cluster_chaos_file
from pykubemark.contract import NODE_FAILURE_ACTIONS
from pykubemark.hollow import chaos as node_chaos


@click.command()
@click.argument("action", type=click.Choice([*NODE_FAILURE_ACTIONS, "clear"]))
@name_option
@click.option("--file", "chaos_path", type=click.Path(path_type=Path), default=None,
              help="The --chaos-file of a `pykubemark hollow` fleet (default: the cluster's, "
              "for nodes started by `up --nodes`).")
@click.option("--nodes", "node_names", default="", help="Comma-separated node names.")
@click.option("--fraction", type=float, default=0.0, help="Or this fraction of all nodes.")
@click.option("--after", type=float, default=0.0, help="Start in this many seconds.")
@click.option("--for", "duration", type=float, default=0.0,
              help="Seconds it lasts (default: until `chaos clear`; restart: down this "
              "long, default 0).")
@click.option("--period", type=float, default=0.0, help="flap: seconds down, then as many up.")
@click.option("--delay", type=float, default=0.0, help="slow: seconds each heartbeat is late.")
@click.option("--interval", type=float, default=0.0,
              help="chaosmonkey: seconds between rounds that each kill --fraction of the nodes.")
@click.option("--jitter", type=float, default=0.0,
              help="chaosmonkey: each interval is longer by up to this factor of itself.")
@click.option("--downtime", type=float, default=0.0,
              help="chaosmonkey: seconds a killed node stays down before it restarts.")
def chaos(action: str, name: str, chaos_path: Path | None, node_names: str, fraction: float,
          after: float, duration: float, period: float, delay: float, interval: float,
          jitter: float, downtime: float) -> None:
    """Fail hollow nodes of a running fleet: stop their heartbeats, flap them, slow them,
    restart them, or let clusterloader2's chaos monkey kill and restore a fraction of
    them every interval."""
    if chaos_path is None:
        chaos_path = cluster_chaos_file(name)
    nodes = [n for n in node_names.split(",") if n]
    scheduled = node_chaos.request(chaos_path, action, nodes=nodes, fraction=fraction,
                                   after=after, duration=duration, period=period, delay=delay,
                                   interval=interval, jitter=jitter, downtime=downtime)
    if scheduled is None:
        console.print(f"node failures cleared ({chaos_path})")
        return

    def clock(stamp: float | None) -> str:
        if stamp is None:
            return "until cleared"
        return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%H:%M:%S UTC")

    who = ", ".join(nodes) if nodes else f"{fraction:.0%} of the nodes"
    if action == "chaosmonkey":
        who = (f"{fraction:.0%} of {', '.join(nodes) if nodes else 'the nodes'} every "
               f"{interval:g}s (+{jitter:.0%}), down {downtime:g}s each")
    console.print(f"{action} {who}: from {clock(scheduled.start)} to "
                  f"{clock(scheduled.end)} ({chaos_path})")
