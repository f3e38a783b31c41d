"""The one registry of measurements: the names scenarios use, the classes and their files."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pykubemark.load import scenario
from pykubemark.measure import Context, registry
from pykubemark.measure.base import Measurement
from pykubemark.report.compare import MetricKey, higher_is_better
from pykubemark.report.output import Output


def test_the_names_a_scenario_may_use() -> None:
    # the run-wide ones in the order a scenario without `measurements` gets them
    assert scenario.RUN_MEASUREMENTS == registry.names(registry.RUN) == (
        "APIResponsiveness", "ResourceUsage", "EtcdMetrics", "NodeReadiness")
    assert scenario.PHASE_MEASUREMENTS == registry.names(registry.PHASE) == (
        "SchedulingThroughput",)
    assert registry.names(registry.POD_GROUP) == ("PodStartupLatency",)
    parsed = scenario.parse_scenario("name: x\nphases: [{name: p}]\n", "x")
    assert parsed.measurements == list(registry.names(registry.RUN))


@pytest.mark.parametrize("name", list(registry.MEASUREMENTS))
def test_every_entry_is_its_class(name: str) -> None:
    entry = registry.MEASUREMENTS[name]
    assert entry.name == name
    assert issubclass(entry.cls, Measurement)
    assert entry.cls.name == entry.perfdata  # the class takes its name from here
    assert registry.by_perfdata(entry.perfdata) is entry


def test_perfdata_names_lead_to_their_measurement() -> None:
    assert registry.by_perfdata("PodStartupLatency_SaturationPodStartupLatency") \
        is registry.POD_STARTUP
    # clusterloader2's summary name with useSimpleLatencyQuery
    assert registry.by_perfdata("APIResponsivenessPrometheus_simple") \
        is registry.API_RESPONSIVENESS
    assert registry.by_perfdata("NetworkProgrammingLatency") is None
    assert registry.by_perfdata("EtcdMetricsX") is None


def test_compare_reads_the_direction_from_the_registry() -> None:
    def key(summary: str) -> MetricKey:
        return MetricKey(summary, (), "Perc50")

    assert higher_is_better(key("SchedulingThroughput"), "")
    assert not higher_is_better(key("APIResponsivenessPrometheus"), "ms")
    # foreign files: by name or by unit, as before
    assert higher_is_better(key("PodThroughput"), "")
    assert higher_is_better(key("Custom"), "1/s")


def test_the_runner_creates_what_the_context_allows(tmp_path) -> None:
    ctx = Context(client=None, output=Output(tmp_path, "t"))  # type: ignore[arg-type]
    assert not registry.ETCD_METRICS.available(ctx)
    assert not registry.RESOURCE_USAGE.available(ctx)
    assert registry.NODE_READINESS.available(ctx)
    ctx.etcd_metrics_url = "http://127.0.0.1:2379/metrics"
    assert registry.ETCD_METRICS.available(ctx)
    setup = registry.RunSetup(pods="pykubemark.io/run=abc", nodes="a=b", judge_nodes=False)
    assert registry.NODE_READINESS.params(setup) == {"selector": "a=b", "judged": False}
    assert registry.SCHEDULING_THROUGHPUT.params(setup) == {"selector": "pykubemark.io/run=abc"}
    assert registry.API_RESPONSIVENESS.params(setup) == {}


def test_scenarios_and_reports_load_without_the_api_client() -> None:
    code = ("import sys, pykubemark.load.scenario, pykubemark.report.compare; "
            "print(sorted(m for m in sys.modules if m in ('aiohttp', 'pykubemark.kube.client')"
            " or m.startswith('pykubemark.measure.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['pykubemark.measure.registry', 'pykubemark.measure.slos']"
