"""Measurements from a Prometheus, through PromQL: `run --prometheus URL`.

For clusters whose /metrics the user cannot read (managed control planes), the figures
that can come from a Prometheus scraping the control plane do, with the queries
clusterloader2 uses:

- API responsiveness, as APIResponsivenessPrometheus with ``useSimpleLatencyQuery``
  (what the direct source computes too): ``histogram_quantile`` of the
  ``rate(apiserver_request_duration_seconds_bucket[run])`` summed by resource,
  subresource, verb and scope, the counts from ``increase(..._count[run])`` and the
  slow counts from the bucket at the call's threshold; judged by the same SLO
  (measure/slos.py) as the direct rows;
- scheduling throughput: pods bound per second (``irate`` of the apiserver's
  ``pods/binding`` POSTs over 1 m, as SchedulingThroughputPrometheus), its
  quantiles and maximum over the run;
- the control plane's resource usage: CPU (``rate(process_cpu_seconds_total[1m])``)
  quantiles and peak memory of each job over the run;
- a scenario's `prometheus_alerts` (kube-burner's alerts): an expression evaluated at
  every step of the run; an alert fires when it returns any series, and an alert of
  severity error that fired fails the run.

Every row and perfdata item it writes says ``source: prometheus``.

Where the two sources differ: ``rate`` and ``increase`` extrapolate to the window's
edges from the samples inside it (the API calls' window therefore reaches one scrape
interval before the run, so that the samples around its start are both in it), and a
series born during the run (the first call of its kind) loses the calls made before its
first scrape. So a kind of call made only in
the run's last seconds — the namespace controller's collection DELETEs at cleanup — may
be missing from the Prometheus rows; the direct source counts from the start.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from pykubemark.errors import UserError
from pykubemark.measure.api_responsiveness import Call
from pykubemark.measure.base import Context, Measurement, Slo
from pykubemark.measure.slos import (
    API_CALL_KINDS,
    FAIL,
    NO_DATA,
    OPTIONAL_API_CALL_KINDS,
    PASS,
    api_call_kind,
    api_call_threshold,
)
from pykubemark.report.output import DataItem

SOURCE = "prometheus"
API_NAME = "APIResponsivenessPrometheus_prometheus"
SCHEDULING_NAME = "SchedulingThroughput_prometheus"
RESOURCES_NAME = "ResourceUsageSummary_prometheus"
ALERTS_NAME = "PrometheusAlerts"

FILTERS = 'verb!~"WATCH|WATCHLIST|CONNECT", subresource!~"log|exec|portforward|attach|proxy"'
BY = "resource, subresource, verb, scope"
LATENCY = ("histogram_quantile({q}, sum(rate(apiserver_request_duration_seconds_bucket"
           "{{{filters}}}[{window}])) by ({by}, le))")
COUNT = "sum(increase(apiserver_request_duration_seconds_count{{{filters}}}[{window}])) by ({by})"
FAST = ("sum(increase(apiserver_request_duration_seconds_bucket{{{filters}, le=\"{le}\"}}"
        "[{window}])) by ({by})")
BINDINGS = ('sum(irate(apiserver_request_total{verb="POST", resource="pods", '
            'subresource="binding", code="201"}[1m]))')
COMPONENTS = "apiserver|etcd|kube-scheduler|kube-controller-manager"


class PrometheusUnreachable(UserError):
    pass


class Prometheus:
    """The HTTP API of one Prometheus (v1 query and query_range)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: dict[str, str]) -> Any:
        target = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(target, timeout=self.timeout) as answer:
                body = json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            raise PrometheusError(f"{self.url} answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {reason}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"{self.url}: {body.get('error', 'query failed')}")
        return body["data"]

    def check(self) -> str:
        """Its version; a one-line `UserError` when it does not answer as a Prometheus."""
        try:
            data = self._get("/api/v1/status/buildinfo", {})
        except PrometheusError as exc:
            raise PrometheusUnreachable(f"--prometheus: {exc}") from None
        return str(data.get("version", "?"))

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        data = self._get("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})
        return list(data.get("result", []))

    def query_range(self, expr: str, start: float, end: float, step: float
                    ) -> list[dict[str, Any]]:
        data = self._get("/api/v1/query_range", {"query": expr, "start": f"{start:.3f}",
                                                 "end": f"{end:.3f}", "step": f"{step:g}"})
        return list(data.get("result", []))

    async def aquery(self, expr: str, at: float) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.query, expr, at)


class PrometheusError(Exception):
    pass


def window(seconds: float) -> str:
    return f"{max(1, math.ceil(seconds))}s"


def _value(sample: dict[str, Any]) -> float | None:
    try:
        value = float(sample["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def call_of(metric: dict[str, str]) -> Call:
    """The call a PromQL sample's labels name (the direct source's `Call`)."""
    return Call(metric.get("verb", ""), metric.get("resource", ""),
                metric.get("subresource", ""), metric.get("scope", ""))


@dataclass
class CallFigures:
    call: Call
    perc: dict[str, float] = field(default_factory=dict)  # Perc50/90/99, ms
    count: int = 0
    slow_count: int = 0

    def item(self) -> DataItem:
        c = self.call
        return DataItem({k: self.perc.get(k, 0.0) for k in ("Perc50", "Perc90", "Perc99")},
                        "ms", {"Verb": c.verb, "Resource": c.resource,
                               "Subresource": c.subresource, "Scope": c.scope,
                               "Count": str(self.count), "SlowCount": str(self.slow_count),
                               "Source": SOURCE})


async def api_calls(prom: Prometheus, start: float, end: float) -> list[CallFigures]:
    """clusterloader2's simple latency query and counts over [start, end]."""
    span = window(end - start)
    calls: dict[Call, CallFigures] = {}

    def get(call: Call) -> CallFigures:
        return calls.setdefault(call, CallFigures(call))

    for q, key in ((0.5, "Perc50"), (0.9, "Perc90"), (0.99, "Perc99")):
        for sample in await prom.aquery(LATENCY.format(q=q, filters=FILTERS, window=span,
                                                       by=BY), end):
            value = _value(sample)
            if value is not None:
                get(call_of(sample["metric"])).perc[key] = value * 1000.0
    for sample in await prom.aquery(COUNT.format(filters=FILTERS, window=span, by=BY), end):
        value = _value(sample)
        if value is not None and round(value) > 0:
            get(call_of(sample["metric"])).count = round(value)
    fast: dict[Call, float] = {}
    for le in sorted({f"{t:g}" for t in API_CALL_KINDS.values()}):
        for sample in await prom.aquery(FAST.format(filters=FILTERS, le=le, window=span,
                                                    by=BY), end):
            call = call_of(sample["metric"])
            if f"{api_call_threshold(call.verb, call.scope):g}" == le:
                fast[call] = _value(sample) or 0.0
    for call, figures in calls.items():
        figures.slow_count = max(0, figures.count - round(fast.get(call, figures.count)))
    measured = [c for c in calls.values() if c.count > 0 and "Perc99" in c.perc]
    return sorted(measured, key=lambda c: (-c.perc["Perc99"], c.call))


def api_slos(calls: list[CallFigures]) -> list[Slo]:
    """The API call latency SLO rows, as measure/api_responsiveness.py `slos` judges."""
    out = []
    for kind, threshold in API_CALL_KINDS.items():
        p99s = [(c.perc["Perc99"], c.call) for c in calls
                if api_call_kind(c.call.verb, c.call.scope) == kind]
        if not p99s and kind in OPTIONAL_API_CALL_KINDS:
            continue
        worst = max(p99s, key=lambda pair: pair[0]) if p99s else None
        name = f"API call latency p99, {kind}"
        if worst is not None:
            call = worst[1]
            resource = f"{call.resource}/{call.subresource}" if call.subresource \
                else call.resource
            name += f" (worst: {call.verb} {resource}, {call.scope} scope)"
        slo = Slo.judge(API_NAME, name, worst[0] if worst else None, threshold * 1000.0, "ms")
        slo.source = SOURCE
        out.append(slo)
    return out


class PrometheusAlert:
    """kube-burner's alert: an expression that fires when it returns any series."""

    def __init__(self, expr: str, description: str = "", severity: str = "error") -> None:
        self.expr = expr
        self.description = description or expr
        self.severity = severity


async def evaluate_alert(prom: Prometheus, alert: PrometheusAlert, start: float, end: float,
                         step: float) -> Slo:
    """One row: the largest value the expression returned over the run (None: it never
    returned a series). An error-severity alert that fired fails; a warning passes."""
    try:
        series = await asyncio.to_thread(prom.query_range, alert.expr, start,
                                         max(end, start + step), step)
    except PrometheusError as exc:
        slo = Slo(ALERTS_NAME, f"{alert.description} ({alert.severity}): {exc}", None, 0.0,
                  "", NO_DATA)
        slo.source = SOURCE
        return slo
    values = [float(v) for s in series for _t, v in s.get("values", [])
              if not math.isnan(float(v))]
    fired = bool(values)
    verdict = FAIL if fired and alert.severity == "error" else PASS
    name = f"{alert.description} ({alert.severity}{', fired' if fired else ''})"
    slo = Slo(ALERTS_NAME, name, max(values) if values else None, 0.0, "", verdict)
    slo.source = SOURCE
    return slo


class PrometheusSource(Measurement):
    """The run's figures from a Prometheus: taken when the run ends, over its span."""

    name = API_NAME
    write_every = 30.0

    def __init__(self, ctx: Context, *, url: str, api: bool = True, scheduling: bool = True,
                 resources: bool = True, alerts: list[PrometheusAlert] | None = None,
                 step: float = 10.0, settle: float = 0.0) -> None:
        super().__init__(ctx)
        self.prom = Prometheus(url)
        self.wants = {"api": api, "scheduling": scheduling, "resources": resources}
        self.alerts = alerts or []
        self.step = step
        #: Seconds to wait at the end for the last scrape to land (a scrape interval).
        self.settle = settle
        self.start_time = 0.0
        self.end_time = 0.0
        self.calls: list[CallFigures] = []
        self.scheduling: dict[str, float] = {}
        self.usage: list[DataItem] = []
        self.alert_rows: list[Slo] = []
        self.error = ""

    async def _begin(self) -> None:
        self.start_time = time.time()

    async def _refresh(self) -> None:
        return None  # a Prometheus keeps the series: everything is read at the end

    async def _end(self) -> None:
        if self.settle:
            # the run's last requests are in the next scrape: read after it
            await asyncio.sleep(self.settle)
        self.end_time = time.time()
        start, end = self.start_time, self.end_time
        try:
            if self.wants["api"]:
                # From the last scrape before the run began: increase() counts between
                # the samples inside its window, whose first may come a scrape interval
                # after the run's first (often slowest) calls.
                self.calls = await api_calls(self.prom, start - self.settle, end)
            if self.wants["scheduling"]:
                self.scheduling = await self._scheduling(start, end)
            if self.wants["resources"]:
                self.usage = await self._resources(start, end)
        except PrometheusError as exc:
            self.error = str(exc)
        self.alert_rows = [await evaluate_alert(self.prom, alert, start, end, self.step)
                           for alert in self.alerts]

    async def _scheduling(self, start: float, end: float) -> dict[str, float]:
        span = window(end - start)
        out: dict[str, float] = {}
        for key, fn in (("Perc50", "quantile_over_time(0.5, "),
                        ("Perc90", "quantile_over_time(0.9, "),
                        ("Perc99", "quantile_over_time(0.99, "), ("Max", "max_over_time(")):
            result = await self.prom.aquery(f"{fn}{BINDINGS}[{span}:5s])", end)
            value = _value(result[0]) if result else None
            if value is not None:
                out[key] = round(value, 3)
        return out

    async def _resources(self, start: float, end: float) -> list[DataItem]:
        span = window(end - start)
        items: dict[str, dict[str, float]] = {}
        cpu = f'rate(process_cpu_seconds_total{{job=~"{COMPONENTS}"}}[1m])'
        for key, q in (("CPUPerc50", 0.5), ("CPUPerc90", 0.9), ("CPUPerc99", 0.99)):
            for sample in await self.prom.aquery(
                    f"quantile_over_time({q}, {cpu}[{span}:5s])", end):
                value = _value(sample)
                if value is not None:
                    items.setdefault(sample["metric"].get("job", ""), {})[key] = \
                        round(value, 4)
        memory = f'max_over_time(process_resident_memory_bytes{{job=~"{COMPONENTS}"}}[{span}])'
        for sample in await self.prom.aquery(memory, end):
            value = _value(sample)
            if value is not None:
                items.setdefault(sample["metric"].get("job", ""), {})["MemoryMaxMiB"] = \
                    round(value / (1 << 20), 1)
        return [DataItem(data, "", {"Name": job, "Source": SOURCE})
                for job, data in sorted(items.items())]

    def write(self) -> None:
        if not self.end_time:
            return
        if self.wants["api"]:
            self.output.perfdata(API_NAME, [c.item() for c in self.calls])
        if self.wants["scheduling"] and self.scheduling:
            self.output.perfdata(SCHEDULING_NAME, [DataItem(self.scheduling, "1/s",
                                                            {"Source": SOURCE})])
        if self.wants["resources"] and self.usage:
            self.output.perfdata(RESOURCES_NAME, self.usage)

    def slos(self) -> list[Slo]:
        rows = api_slos(self.calls) if self.wants["api"] and not self.error else []
        if self.error and self.wants["api"]:
            slo = Slo(API_NAME, f"API call latency (Prometheus: {self.error})", None, 0.0,
                      "ms", NO_DATA)
            slo.source = SOURCE
            rows.append(slo)
        return rows + self.alert_rows

    def progress(self) -> dict[str, int]:
        return {}
