"""Errors a user can act on.

Anything raised as `UserError` is printed as one line and exits with code 2: a bad
kubeconfig, a cluster name that does not exist, a port already taken. Everything
else is a bug and keeps its traceback.

These are plain exceptions so that the packages raising them need no command-line
library: only the command line (`pykubemark.cli.main`) turns one into its line and
exit code, and a benchmark or a test can catch one like any other exception.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

import yaml


def one_line(text: str) -> str:
    """A user's text quoted in a message of one line: control characters escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class UserError(Exception):
    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def format_message(self) -> str:
        """The message alone (the name click's exceptions give it)."""
        return self.message

    def show(self, file: TextIO | None = None) -> None:
        """The one line a command prints for it, on stderr unless told otherwise."""
        out = file if file is not None else sys.stderr
        out.write(f"pykubemark: {self.message}\n")
        out.flush()


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
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"{what} {path} is not valid YAML: {first}") from None
    except RecursionError:
        raise UserError(f"{what} {path} is not valid YAML: nested too deeply") from None
    if loaded is None and empty_ok:
        return {}
    if not isinstance(loaded, dict):
        raise UserError(f"{what} {path} has no mapping at top level")
    return loaded
