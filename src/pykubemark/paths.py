"""Where pykubemark keeps what outlives one command.

The Kubernetes build is cached per machine (it takes minutes), cluster state per user;
both can be moved with environment variables so tests and CI stay self-contained.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    """Builds and downloads: ``$PYKUBEMARK_CACHE`` or ``~/.cache/pykubemark``."""
    if env := os.environ.get("PYKUBEMARK_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pykubemark"


def state_home() -> Path:
    """Cluster state dirs: ``$PYKUBEMARK_STATE`` or ``~/.local/state/pykubemark``."""
    if env := os.environ.get("PYKUBEMARK_STATE"):
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "pykubemark"
