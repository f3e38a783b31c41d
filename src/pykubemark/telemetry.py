"""Counters of one process's API traffic and heartbeats, for the fleet's /metrics.

Plain dicts and integers, incremented where the traffic happens (kube/client.py,
kube/watch.py, hollow/kubelet.py) at the cost of a dict update; nothing here imports
prometheus_client: hollow/metrics.py turns them into Prometheus metrics when scraped.
A process that never serves /metrics just counts.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Mapping

#: (verb, resource, code) -> answers; code "error" when nothing answered.
REQUESTS: Counter[tuple[str, str, str]] = Counter()
#: (verb, resource) -> tries again that an answer's Retry-After asked for (429, 5xx).
RETRIES: Counter[tuple[str, str]] = Counter()
#: resource -> watches opened again after the first of a reflector (timeouts, errors).
WATCH_RESTARTS: Counter[str] = Counter()
#: resource -> lists of a reflector after its first (after a failed watch, an expiry).
RELISTS: Counter[str] = Counter()
#: why -> HTTP/2 connections closed under a client: "ping" (found dead: no PING answer),
#: "lost" (closed or reset by the peer or the network), "goaway" (the server's).
CONNECTIONS_CLOSED: Counter[str] = Counter()


class Histogram:
    """Cumulative buckets (upper bounds, seconds), their sum and count; ``max`` since
    the start."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.bounds = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0
        self.max = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1
        self.max = max(self.max, value)

    def cumulative(self) -> list[tuple[str, int]]:
        out, total = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out


#: Seconds a lease renewal (the PUT, retries included) took.
LEASE_RENEWAL = Histogram((0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
#: Seconds between two successive renewals of one node's lease.
LEASE_GAP = Histogram((5, 10, 11, 12, 15, 20, 30, 40, 60, 120))

#: How late the event loop woke up for a timer (sampled twice a second).
LOOP_LAG = Histogram((0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))

_GROUPS = ("api", "apis")


def classify(method: str, path: str, params: Mapping[str, str] | None = None
             ) -> tuple[str, str]:
    """(verb, resource) as the apiserver's apiserver_request_total names them: LIST for
    a GET of a collection, WATCH for a watch, and the resource with its subresource
    (``pods/status``)."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if not parts or parts[0] not in _GROUPS:
        return method, "" if not parts else parts[0]
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) > 2:
        rest = rest[2:]
    resource = rest[0] if rest else ""
    named = len(rest) >= 2
    if len(rest) >= 3:
        resource = f"{resource}/{rest[2]}"
    verb = method
    if method == "GET":
        if params and params.get("watch") in ("true", "1"):
            verb = "WATCH"
        elif not named:
            verb = "LIST"
    return verb, resource


def reset() -> None:
    """For tests."""
    for counter in (REQUESTS, RETRIES, WATCH_RESTARTS, RELISTS, CONNECTIONS_CLOSED):
        counter.clear()
    for histogram in (LEASE_RENEWAL, LEASE_GAP, LOOP_LAG):
        histogram.__init__(histogram.bounds)  # type: ignore[misc]
