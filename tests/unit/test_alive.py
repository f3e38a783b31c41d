"""`pykubemark alive`: the liveness probe of the shard pods reads the heartbeat's age."""

from __future__ import annotations

import os
import time

from click.testing import CliRunner

from pykubemark.cli import cli


def test_alive_fails_on_a_stale_or_missing_heartbeat(tmp_path) -> None:
    beat = tmp_path / "heartbeat"
    runner = CliRunner()
    assert runner.invoke(cli, ["alive", str(beat)]).exit_code == 1
    beat.touch()
    assert runner.invoke(cli, ["alive", str(beat), "--max-age", "50"]).exit_code == 0
    old = time.time() - 120
    os.utime(beat, (old, old))
    result = runner.invoke(cli, ["alive", str(beat), "--max-age", "50"])
    assert result.exit_code == 1
    assert "stopped renewing" in result.output
