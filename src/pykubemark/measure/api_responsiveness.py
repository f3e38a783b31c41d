"""API call latency from the apiserver's own histograms, as APIResponsivenessPrometheus.

clusterloader2 asks Prometheus for ``increase(apiserver_request_duration_seconds_bucket)``
over the test, summed by verb, resource, subresource and scope, and interpolates the
quantiles with ``histogram_quantile``. Without a Prometheus we scrape /metrics at start
and again (every few seconds and at stop) and take the difference ourselves: the same
numbers as clusterloader2's ``useSimpleLatencyQuery`` over the whole window.

Excluded as clusterloader2 and the SLO do: WATCH (the legacy WATCHLIST is reported as
WATCH in 1.20), CONNECT and the long-running subresources (log, exec, portforward,
attach, proxy). Thresholds: the official API call latency SLO, as `measure.slos` defines
it (`api_call_kind`, `api_call_threshold`): 1 s for mutating calls and calls on single
objects, 5 s for LISTs in a namespace, 30 s for cluster-wide LISTs, and 30 s for a DELETE
of a whole collection, a row of its own shown only when there were some. SlowCount is the
number of calls above that threshold (count minus the threshold's bucket), Count and
SlowCount are strings in the labels as clusterloader2 writes them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from pykubemark.measure.base import Context, Measurement, Slo
from pykubemark.measure.metrics import Labels, histograms, parse_off_loop, scrape
from pykubemark.measure.registry import API_RESPONSIVENESS
from pykubemark.measure.slos import (
    API_CALL_KINDS,
    OPTIONAL_API_CALL_KINDS,
    api_call_kind,
    api_call_threshold,
)
from pykubemark.measure.stats import Histogram, count_above, delta, merge, quantiles_ms
from pykubemark.report.output import DataItem

METRIC = "apiserver_request_duration_seconds"
EXCLUDED_VERBS = frozenset({"WATCH", "WATCHLIST", "CONNECT"})
EXCLUDED_SUBRESOURCES = frozenset({"log", "exec", "portforward", "attach", "proxy"})


@dataclass(frozen=True, order=True)
class Call:
    verb: str
    resource: str
    subresource: str
    scope: str

    @property
    def kind(self) -> str:
        return api_call_kind(self.verb, self.scope)

    @property
    def threshold(self) -> float:
        """In seconds."""
        return api_call_threshold(self.verb, self.scope)


@dataclass(frozen=True)
class CallLatency:
    call: Call
    histogram: Histogram

    @property
    def count(self) -> int:
        return round(self.histogram.count)

    @property
    def slow_count(self) -> int:
        return round(count_above(self.histogram, self.call.threshold))

    def item(self) -> DataItem:
        c = self.call
        return DataItem(quantiles_ms(self.histogram), "ms", {
            "Verb": c.verb, "Resource": c.resource, "Subresource": c.subresource,
            "Scope": c.scope, "Count": str(self.count), "SlowCount": str(self.slow_count),
        })


def measured(labels: Labels) -> Call | None:
    """The call a series counts, or None when the SLO leaves it out."""
    values = dict(labels)
    verb, subresource = values.get("verb", ""), values.get("subresource", "")
    if verb in EXCLUDED_VERBS or subresource in EXCLUDED_SUBRESOURCES:
        return None
    return Call(verb, values.get("resource", ""), subresource, values.get("scope", ""))


def aggregate(before: dict[Labels, Histogram], after: dict[Labels, Histogram]
              ) -> list[CallLatency]:
    """Calls made between two scrapes, summed over group, version, component and dry_run;
    calls with no request in the window are left out. Slowest p99 first."""
    grouped: dict[Call, list[Histogram]] = defaultdict(list)
    for labels, hist in after.items():
        call = measured(labels)
        if call is not None:
            grouped[call].append(delta(before.get(labels), hist))
    calls = []
    for call, parts in grouped.items():
        total = merge(parts)
        if total is not None and total.count > 0:
            calls.append(CallLatency(call, total))
    return sorted(calls, key=lambda c: (-quantiles_ms(c.histogram)["Perc99"], c.call))


def slos(calls: list[CallLatency]) -> list[Slo]:
    """One SLO per kind of call: the worst p99 of that kind against its threshold."""
    out = []
    for kind, threshold in API_CALL_KINDS.items():
        p99s = [(quantiles_ms(c.histogram)["Perc99"], c.call) for c in calls
                if c.call.kind == kind]
        if not p99s and kind in OPTIONAL_API_CALL_KINDS:
            continue
        worst = max(p99s, key=lambda pair: pair[0]) if p99s else None
        name = f"API call latency p99, {kind}"
        if worst is not None:
            call = worst[1]
            resource = f"{call.resource}/{call.subresource}" if call.subresource else call.resource
            name += f" (worst: {call.verb} {resource}, {call.scope} scope)"
        out.append(Slo.judge(ApiResponsiveness.name, name, worst[0] if worst else None,
                             threshold * 1000.0, "ms"))
    return out


class ApiResponsiveness(Measurement):
    name = API_RESPONSIVENESS.perfdata

    def __init__(self, ctx: Context, **params: Any) -> None:
        super().__init__(ctx, **params)
        self._baseline: dict[Labels, Histogram] | None = None
        self._calls: list[CallLatency] = []

    async def _snapshot(self) -> dict[Labels, Histogram]:
        return histograms(await parse_off_loop(await scrape(self.ctx.client), [METRIC]), METRIC)

    async def _begin(self) -> None:
        self._baseline = await self._snapshot()

    async def _refresh(self) -> None:
        if self._baseline is not None:
            self._calls = aggregate(self._baseline, await self._snapshot())

    def calls(self) -> list[CallLatency]:
        return list(self._calls)

    def write(self) -> None:
        if self._baseline is not None:
            self.output.perfdata(self.name, [c.item() for c in self._calls])

    def slos(self) -> list[Slo]:
        return slos(self._calls)

    def progress(self) -> dict[str, int]:
        return {"calls": sum(c.count for c in self._calls)}
