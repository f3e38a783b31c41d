"""Errors a user can act on.

Anything raised as `UserError` is printed as one line and exits with code 2: a bad
kubeconfig, a cluster name that does not exist, a port already taken. Everything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path

import click
import yaml


class UserError(click.ClickException):
    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"pykubemark: {self.format_message()}", err=True, file=file)


class Interrupted(UserError):
    """Ctrl-C or SIGTERM stopped a command after it cleaned up; the shell's code for it."""

    exit_code = 130


def read_yaml_mapping(path: Path, what: str, *, empty_ok: bool = False) -> dict:
    """The mapping at the top of a YAML file, or a `UserError` naming the file."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise UserError(f"{what} {path} cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"{what} {path} is not valid YAML: {first}") from None
    if loaded is None and empty_ok:
        return {}
    if not isinstance(loaded, dict):
        raise UserError(f"{what} {path} has no mapping at top level")
    return loaded
