"""API call latency from the apiserver's own histograms, as APIResponsivenessPrometheus.

clusterloader2 asks Prometheus for ``increase(apiserver_request_duration_seconds_bucket)``
over the test, summed by verb, resource, subresource and scope, and interpolates the
quantiles with ``histogram_quantile``. Without a Prometheus we scrape /metrics at start
and again (every few seconds and at stop) and take the difference ourselves: the same
numbers as clusterloader2's ``useSimpleLatencyQuery`` over the whole window.

Excluded as clusterloader2 and the SLO do: WATCH (the legacy WATCHLIST is reported as
WATCH in 1.20), CONNECT and the long-running subresources (log, exec, portforward,
attach, proxy). Thresholds (the official API call latency SLO): 1 s for calls on single
objects (every verb but LIST), 5 s for LISTs in a namespace, 30 s for cluster-wide LISTs.
A DELETE of a whole collection (the namespace controller's, scope namespace or cluster) is
not a single-object call; the SLO does not cover it and clusterloader2 judges every call
not on a single object at 30 s, so it is its own row at 30 s, shown only when there were
some. SlowCount is the number of calls above that threshold (count minus the threshold's
bucket), Count and SlowCount are strings in the labels as clusterloader2 writes them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from pykubemark.measure.base import Context, Measurement, Slo
from pykubemark.measure.metrics import Labels, histograms, parse_off_loop, scrape
from pykubemark.measure.stats import Histogram, count_above, delta, merge, quantiles_ms
from pykubemark.report.output import DataItem

METRIC = "apiserver_request_duration_seconds"
EXCLUDED_VERBS = frozenset({"WATCH", "WATCHLIST", "CONNECT"})
EXCLUDED_SUBRESOURCES = frozenset({"log", "exec", "portforward", "attach", "proxy"})
KINDS = {  # SLO kind -> threshold in seconds
    "mutating and single-object calls": 1.0,
    "namespace LIST calls": 5.0,
    "cluster LIST calls": 30.0,
    "collection DELETE calls": 30.0,
}
#: Kinds without calls in the window get no row: the SLO does not define them.
OPTIONAL_KINDS = frozenset({"collection DELETE calls"})


@dataclass(frozen=True, order=True)
class Call:
    verb: str
    resource: str
    subresource: str
    scope: str

    @property
    def kind(self) -> str:
        if self.verb != "LIST":
            collection = self.scope in ("namespace", "cluster")
            return "collection DELETE calls" if collection else "mutating and single-object calls"
        return "cluster LIST calls" if self.scope == "cluster" else "namespace LIST calls"

    @property
    def threshold(self) -> float:
        return KINDS[self.kind]


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
    for kind, threshold in KINDS.items():
        p99s = [(quantiles_ms(c.histogram)["Perc99"], c.call) for c in calls
                if c.call.kind == kind]
        if not p99s and kind in OPTIONAL_KINDS:
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
    name = "APIResponsivenessPrometheus"

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
