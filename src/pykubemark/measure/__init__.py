"""Measurements taken from the cluster itself (audit log, metrics), never from hollow nodes.

Which measurements exist is `measure.registry`. The classes are imported on first use
(`from pykubemark.measure import NodeReadiness` imports nodes.py then), so that the
registry and the SLO definitions (`measure.slos`) load without the API client.
"""

from __future__ import annotations

import importlib
from typing import Any

_SHARED = {"Context": "base", "Measurement": "base", "MeasurementError": "base", "Slo": "slos"}


def __getattr__(name: str) -> Any:
    if name in _SHARED:
        return getattr(importlib.import_module(f"{__name__}.{_SHARED[name]}"), name)
    from pykubemark.measure.registry import MEASUREMENTS

    for measurement in MEASUREMENTS.values():
        if measurement.target.endswith(f":{name}"):
            return measurement.cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
