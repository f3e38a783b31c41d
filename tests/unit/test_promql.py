"""measure/promql.py against a Prometheus that answers from a table: the queries
clusterloader2 makes, the rows they give, and the alerts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pykubemark.errors import UserError
from pykubemark.measure.promql import (
    PrometheusAlert,
    PrometheusUnreachable,
    api_calls,
    api_slos,
    evaluate_alert,
)


class Fake:
    def __init__(self, answers: dict[str, list[dict[str, Any]]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def _match(self, expr: str) -> list[dict[str, Any]]:
        self.asked.append(expr)
        return next((v for k, v in self.answers.items() if k in expr), [])

    async def aquery(self, expr: str, at: float) -> list[dict[str, Any]]:
        return self._match(expr)

    def query_range(self, expr: str, start: float, end: float, step: float
                    ) -> list[dict[str, Any]]:
        return self._match(expr)


POST = {"verb": "POST", "resource": "pods", "subresource": "", "scope": "resource"}
LIST = {"verb": "LIST", "resource": "pods", "subresource": "", "scope": "cluster"}


def sample(metric: dict[str, str], value: float) -> dict[str, Any]:
    return {"metric": metric, "value": [0, str(value)]}


def test_api_rows_from_clusterloader2s_queries() -> None:
    fake = Fake({
        "histogram_quantile(0.5,": [sample(POST, 0.01), sample(LIST, 0.1)],
        "histogram_quantile(0.9,": [sample(POST, 0.02), sample(LIST, 0.2)],
        "histogram_quantile(0.99,": [sample(POST, 1.5), sample(LIST, 0.3)],
        "_count{": [sample(POST, 100), sample(LIST, 4)],
        'le="1"': [sample(POST, 97), sample(LIST, 4)],
        'le="30"': [sample(LIST, 4)],
    })
    calls = asyncio.run(api_calls(fake, 0.0, 120.0))  # type: ignore[arg-type]
    assert all("[120s]" in q for q in fake.asked)
    post = next(c for c in calls if c.call.verb == "POST")
    assert (post.count, post.slow_count, post.perc["Perc99"]) == (100, 3, 1500.0)
    listed = next(c for c in calls if c.call.verb == "LIST")
    assert (listed.count, listed.slow_count) == (4, 0)
    rows = {r.name.split(" (worst")[0]: r for r in api_slos(calls)}
    single = rows["API call latency p99, mutating and single-object calls"]
    assert (single.value, single.verdict, single.source) == (1500.0, "fail", "prometheus")
    assert rows["API call latency p99, namespace LIST calls"].verdict == "no data"
    assert rows["API call latency p99, cluster LIST calls"].verdict == "pass"


def test_alerts_fire_on_any_series_and_only_errors_fail() -> None:
    fired = {"metric": {}, "values": [[0, "1"], [10, "3"]]}
    fake = Fake({"== 1": [fired]})
    error = asyncio.run(evaluate_alert(fake, PrometheusAlert("up == 1", "up"),  # type: ignore[arg-type]
                                       0, 60, 10))
    assert (error.verdict, error.value, error.name) == ("fail", 3.0, "up (error, fired)")
    warning = asyncio.run(evaluate_alert(
        fake, PrometheusAlert("up == 1", "up", "warning"), 0, 60, 10))  # type: ignore[arg-type]
    assert warning.verdict == "pass"
    quiet = asyncio.run(evaluate_alert(fake, PrometheusAlert("up == 0"), 0, 60, 10))  # type: ignore[arg-type]
    assert (quiet.verdict, quiet.value) == ("pass", None)


def test_an_unreachable_prometheus_is_a_user_error() -> None:
    from pykubemark.measure.promql import Prometheus

    with pytest.raises(PrometheusUnreachable, match="cannot reach Prometheus") as info:
        Prometheus("http://127.0.0.1:1", timeout=2).check()
    assert isinstance(info.value, UserError) and info.value.exit_code == 2


def test_a_scenario_takes_prometheus_alerts() -> None:
    import msgspec

    from pykubemark.load.scenario import Scenario

    base = {"name": "s", "phases": [{"name": "p", "create": [
        {"kind": "Deployment", "name": "d"}]}]}
    scenario = msgspec.convert({**base, "prometheus_alerts": [
        {"expr": "up == 0", "description": "down"}]}, Scenario)
    assert scenario.prometheus_alerts[0].severity == "error"
    with pytest.raises(msgspec.ValidationError, match="severity"):
        msgspec.convert({**base, "prometheus_alerts": [
            {"expr": "up", "severity": "critical"}]}, Scenario)
