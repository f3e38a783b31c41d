"""Errors a user can act on.

Anything raised as `UserError` is printed as one line and exits with code 2: a bad
kubeconfig, a cluster name that does not exist, a port already taken. Everything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import click


class UserError(click.ClickException):
    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"pykubemark: {self.format_message()}", err=True, file=file)
