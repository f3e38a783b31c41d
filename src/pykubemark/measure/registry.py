"""Every measurement pykubemark has, in one place: the name a scenario gives it, its class,
the summary name of its perfdata files, what it spans, and what it judges.

The runner creates measurements from here, a scenario is checked against it, the report
finds each measurement's files through it and `compare` reads directions from it; each
measurement class takes its own `name` from its entry. A new measurement is one entry
here (and its class): no other list of names exists.

Classes are imported when first asked for (`MeasurementType.cls`), so that a scenario
can be checked and a report rendered without the API client.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from pykubemark.measure.slos import api_call_thresholds_text

if TYPE_CHECKING:
    from pykubemark.measure.base import Context, Measurement

#: Spans: the whole run (named in a scenario's `measurements`), one phase (named in a
#: phase's `measurements`), or one group of pods each (always on, one per group).
RUN: Final = "run"
PHASE: Final = "phase"
POD_GROUP: Final = "pod group"


@dataclass(frozen=True)
class RunSetup:
    """What the runner knows that a measurement may need beside its Context."""

    #: Label selector of the run's pods (of one group's, for a per-group measurement).
    pods: str = ""
    #: Label selector of the run's nodes (the run's --node-selector).
    nodes: str = ""
    #: False when the scenario fails nodes itself: their NotReady is data, not a verdict.
    judge_nodes: bool = True


def _no_params(_setup: RunSetup) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class MeasurementType:
    #: As a scenario names it.
    name: str
    #: The summary name of its perfdata file, `<perfdata>_<test>_<time>.json` (per pod group:
    #: `<perfdata>_<identifier>_<test>_<time>.json`); also the `measurement` of its SLO rows.
    perfdata: str
    scope: str
    #: "module:Class", imported on first use.
    target: str
    #: The SLO it judges, in words ("": none, data only).
    slo: str = ""
    #: The name of its series/<series>.json (or series/<series>_<x>.json), "" for none.
    series: str = ""
    #: The Context field it cannot measure without (left out of a run that lacks it).
    needs: str = ""
    #: Whether a larger value is better (a throughput), for `compare`.
    higher_is_better: bool = False
    #: Its constructor's arguments beside the Context, from what the runner knows.
    params: Callable[[RunSetup], dict[str, Any]] = _no_params

    @property
    def cls(self) -> type[Measurement]:
        module, _, name = self.target.partition(":")
        cls: type[Measurement] = getattr(importlib.import_module(module), name)
        return cls

    def available(self, ctx: Context) -> bool:
        """Whether it can measure in this context (local processes, a local etcd)."""
        return not self.needs or bool(getattr(ctx, self.needs))

    def create(self, ctx: Context, setup: RunSetup) -> Measurement:
        return self.cls(ctx, **self.params(setup))

    def owns(self, summary_name: str) -> bool:
        """Whether a perfdata file of this summary name is this measurement's (its own name,
        or its name and a suffix: a pod group's identifier, clusterloader2's `_simple`)."""
        return summary_name == self.perfdata or summary_name.startswith(f"{self.perfdata}_")


_MODULE = "pykubemark.measure"
POD_STARTUP: Final = MeasurementType(
    "PodStartupLatency", "PodStartupLatency", POD_GROUP,
    f"{_MODULE}.pod_startup:PodStartupLatency",
    slo="pod startup (create → watch) p99 within the scenario's pod_startup_slo (5 s by "
        "default), for each group of pods apart")
API_RESPONSIVENESS: Final = MeasurementType(
    "APIResponsiveness", "APIResponsivenessPrometheus", RUN,
    f"{_MODULE}.api_responsiveness:ApiResponsiveness",
    slo=f"API call latency p99: {api_call_thresholds_text()}")
RESOURCE_USAGE: Final = MeasurementType(
    "ResourceUsage", "ResourceUsageSummary", RUN, f"{_MODULE}.resources:ResourceUsage",
    series="ResourceUsage", needs="processes")
ETCD_METRICS: Final = MeasurementType(
    "EtcdMetrics", "EtcdMetrics", RUN, f"{_MODULE}.etcd:EtcdMetrics",
    needs="etcd_metrics_url")
NODE_READINESS: Final = MeasurementType(
    "NodeReadiness", "NodeReadiness", RUN, f"{_MODULE}.nodes:NodeReadiness",
    slo="no node turned NotReady during the run (not judged in a scenario that fails "
        "nodes itself)",
    series="NodeReadiness",
    params=lambda setup: {"selector": setup.nodes, "judged": setup.judge_nodes})
SCHEDULING_THROUGHPUT: Final = MeasurementType(
    "SchedulingThroughput", "SchedulingThroughput", PHASE,
    f"{_MODULE}.scheduling:SchedulingThroughput",
    series="SchedulingThroughput", higher_is_better=True,
    params=lambda setup: {"selector": setup.pods})

#: By the name a scenario gives them; run-wide ones in the order a scenario defaults to.
MEASUREMENTS: Final[dict[str, MeasurementType]] = {m.name: m for m in (
    POD_STARTUP, API_RESPONSIVENESS, RESOURCE_USAGE, ETCD_METRICS, NODE_READINESS,
    SCHEDULING_THROUGHPUT)}


def names(scope: str) -> tuple[str, ...]:
    """The names a scenario may list where measurements of this span go."""
    return tuple(name for name, m in MEASUREMENTS.items() if m.scope == scope)


def by_perfdata(summary_name: str) -> MeasurementType | None:
    """The measurement that writes perfdata of this summary name (None: a foreign one)."""
    return next((m for m in MEASUREMENTS.values() if m.owns(summary_name)), None)
