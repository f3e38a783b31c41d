"""Whether a Node is Ready, written once: on a Node as JSON (a dict, as a GET, a LIST or
`kubectl get -o json` gives it) and on a typed view (a struct whose ``status`` has
``conditions`` with ``type`` and ``status``, as measure/nodes.py decodes them).

A pod's Ready condition has the same shape, so the same test serves pods.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def is_ready(obj: Mapping[str, Any] | Any) -> bool:
    """Its Ready condition is True: False (from the kubelet) and Unknown (from the
    node-lifecycle controller) are both not Ready, as is a Node without the condition."""
    if isinstance(obj, Mapping):
        conditions = (obj.get("status") or {}).get("conditions") or ()
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return any(c.type == "Ready" and c.status == "True" for c in obj.status.conditions)


def count_ready(nodes: Iterable[Mapping[str, Any]], prefix: str = "") -> int:
    """How many of ``nodes`` (as JSON) are Ready; with ``prefix``, of those named
    ``<prefix>-...`` only."""
    return sum(1 for node in nodes
               if node["metadata"]["name"].startswith(f"{prefix}-" if prefix else "")
               and is_ready(node))
