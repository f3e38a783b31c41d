"""`pykubemark alive`: the liveness probe of `deploy`'s shard pods, run every few
seconds in each of them; it imports nothing but the standard library and click."""

from __future__ import annotations

import time
from pathlib import Path

import click


@click.command()
@click.argument("heartbeat_file", type=click.Path(path_type=Path))
@click.option("--max-age", type=click.FloatRange(0), default=50.0, show_default=True,
              help="Seconds.")
def alive(heartbeat_file: Path, max_age: float) -> None:
    """Exit 0 if `hollow --heartbeat-file` touched HEARTBEAT_FILE in the last --max-age
    seconds (the liveness probe of the shard pods of `deploy`), else 1."""
    try:
        age = time.time() - heartbeat_file.stat().st_mtime
    except OSError:
        click.echo(f"no heartbeat file {heartbeat_file}", err=True)
        raise SystemExit(1) from None
    if age > max_age:
        click.echo(f"last heartbeat {age:.0f}s ago: the nodes stopped renewing their leases",
                   err=True)
        raise SystemExit(1)
