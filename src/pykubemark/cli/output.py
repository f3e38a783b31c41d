"""Where the commands print: results on stdout, progress and errors on stderr, so that
a command's output can be piped while the user still sees what it is doing."""

from __future__ import annotations

from rich.console import Console

console = Console()
err_console = Console(stderr=True)
