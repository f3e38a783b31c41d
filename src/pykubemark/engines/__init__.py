"""Engines: what plays the nodes, looked up by name (`up --engine`, `hollow --engine`).

pykubemark's own hollow nodes are one engine. The Go kubemark, the reference pykubemark
is calibrated against, is another: running it behind the same commands lets a user
measure both on their own control plane instead of trusting our numbers; KWOK, one
controller that patches every node's and pod's status from rules, is a third. A command
knows engines only through `Engine` (base.py) and `ENGINES`, so another engine is one
more entry here, not one more branch in every command.

Every command that takes --engine imports this registry to list the choices; an
engine's heavier code (a hollow fleet, an apiserver client) loads when it runs.
"""

from __future__ import annotations

from pykubemark.engines.base import (
    Engine,
    HollowOptions,
    NodeOptions,
    Progress,
    refuse_options,
    register_rate,
)
from pykubemark.engines.gokubemark import GoKubemarkEngine
from pykubemark.engines.kwok import KwokEngine
from pykubemark.engines.pykubemark import PykubemarkEngine

__all__ = ["ENGINES", "Engine", "HollowOptions", "NodeOptions", "Progress", "refuse_options",
           "register_rate"]

#: By the name --engine takes; the first is the default.
ENGINES: dict[str, Engine] = {engine.name: engine for engine in (
    PykubemarkEngine(), GoKubemarkEngine(), KwokEngine())}
