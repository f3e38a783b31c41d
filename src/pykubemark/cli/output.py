"""Where the commands print: results on stdout, progress and errors on stderr, so that
a command's output can be piped while the user still sees what it is doing."""

from __future__ import annotations

from rich.console import Console

# Results are not wrapped at the terminal's width: a path or a line printed there is
# piped and parsed whole (tables still fit the width).
console = Console(soft_wrap=True)
err_console = Console(stderr=True)
