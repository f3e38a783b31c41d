"""The command line's layout: `pykubemark --help` lists every command from summaries
without importing the commands' modules, and those summaries are the commands' own."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from pykubemark.cli import COMMANDS, cli
from pykubemark.engines import ENGINES


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_summary_is_the_commands_own_help(name: str) -> None:
    ctx = click.Context(cli)
    command = cli.get_command(ctx, name)
    assert command is not None and command.name == name
    stub = click.Command(name, help=COMMANDS[name][2])
    for limit in (30, 45, 63, 80, 200):
        assert stub.get_short_help_str(limit) == command.get_short_help_str(limit)


def test_help_imports_no_command_module() -> None:
    probe = ("import sys; from pykubemark.cli import cli\n"
             "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
             "loaded = [m for m in sys.modules if m.startswith('pykubemark.') and "
             "m.split('.')[1] not in ('cli', 'errors')]\n"
             "print(sorted({m for m in sys.modules if m.startswith('pykubemark.cli.')}), "
             "loaded, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    assert "Commands:" in result.stdout
    for name in COMMANDS:
        assert f"\n  {name} " in result.stdout
    assert result.stderr.strip() == "[] []", result.stderr


def test_engines_are_chosen_by_name() -> None:
    assert list(ENGINES) == ["pykubemark", "kubemark", "kwok"]
    for name, engine in ENGINES.items():
        assert engine.name == name
    for command in ("up", "hollow"):
        cmd = cli.get_command(click.Context(cli), command)
        assert cmd is not None
        engine = next(p for p in cmd.params if p.name == "engine")
        assert isinstance(engine.type, click.Choice)
        assert list(engine.type.choices) == list(ENGINES)
