"""The fleet's own metrics: Prometheus text on ``hollow --metrics-port``.

One endpoint per fleet process (shard K of ``--processes`` on port + K), served by the
process's event loop with aiohttp. Figures are read when scraped: the nodes and pods
from the fleet's kubelets, the API traffic and heartbeats from `pykubemark.telemetry`.
docs/metrics.md lists every name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from pykubemark import telemetry

if TYPE_CHECKING:
    from pykubemark.hollow.fleet import Fleet

log = logging.getLogger("pykubemark.hollow.metrics")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PHASES = ("Pending", "Running", "Succeeded", "Failed")


def _histogram(name: str, doc: str, histogram: telemetry.Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=histogram.cumulative(),
                                 sum_value=histogram.sum)


def _by_label(name: str, doc: str, label: str, counts: Counter[str]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family


class FleetCollector(Collector):
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def collect(self) -> Iterator[Metric]:
        kubelets = list(self.fleet.kubelets.values())
        nodes = GaugeMetricFamily("pykubemark_nodes",
                                  "Hollow nodes of this process by state: started, "
                                  "registered (their Node exists), ready (registered and "
                                  "not stopped by a node failure).", labels=["state"])
        registered = [k for k in kubelets if k.registered.is_set()]
        nodes.add_metric(["started"], len(kubelets))
        nodes.add_metric(["registered"], len(registered))
        nodes.add_metric(["ready"], sum(k.up.is_set() for k in registered))
        yield nodes
        phases: Counter[str] = Counter({phase: 0 for phase in PHASES})
        for kubelet in kubelets:
            for record in kubelet.pods.pods.values():
                phases[record.phase or "Pending"] += 1
        pods = GaugeMetricFamily("pykubemark_pods", "Pods bound to this process's nodes, "
                                 "by the phase their kubelet gives them.", labels=["phase"])
        for phase, count in sorted(phases.items()):
            pods.add_metric([phase], count)
        yield pods
        yield _histogram("pykubemark_lease_renewal_duration_seconds",
                         "Seconds a node lease renewal (PUT) took until accepted.",
                         telemetry.LEASE_RENEWAL)
        yield _histogram("pykubemark_lease_renewal_gap_seconds",
                         "Seconds between two successive accepted renewals of one node's "
                         "lease.", telemetry.LEASE_GAP)
        yield GaugeMetricFamily("pykubemark_lease_renewal_gap_max_seconds",
                                "The largest gap between two renewals of one node's lease "
                                "since the process started.", value=telemetry.LEASE_GAP.max)
        requests = CounterMetricFamily("pykubemark_api_requests",
                                       "API requests answered, by verb, resource and HTTP "
                                       "code (code \"error\": no answer).",
                                       labels=["verb", "resource", "code"])
        for (verb, resource, code), count in sorted(telemetry.REQUESTS.items()):
            requests.add_metric([verb, resource, code], count)
        yield requests
        retries = CounterMetricFamily("pykubemark_api_request_retries",
                                      "Requests sent again because the answer (429 or 5xx) "
                                      "asked to with Retry-After.", labels=["verb", "resource"])
        for (verb, resource), count in sorted(telemetry.RETRIES.items()):
            retries.add_metric([verb, resource], count)
        yield retries
        throttled = CounterMetricFamily("pykubemark_api_throttled_requests",
                                        "Answers 429 Too Many Requests (API priority and "
                                        "fairness, max-in-flight).")
        throttled.add_metric([], sum(c for (_, _, code), c in telemetry.REQUESTS.items()
                                     if code == "429"))
        yield throttled
        yield _by_label("pykubemark_watch_restarts", "Watches opened again after a "
                        "reflector's first (timeouts, errors, cut connections).", "resource",
                        telemetry.WATCH_RESTARTS)
        yield _by_label("pykubemark_relists", "Lists of a reflector after its first (a watch "
                        "that failed or expired).", "resource", telemetry.RELISTS)
        yield _by_label("pykubemark_http2_connections_closed", "HTTP/2 connections to the "
                        "apiserver that ended under their clients, by why: ping (no answer "
                        "to a PING: found dead), lost (closed or reset), goaway.", "why",
                        telemetry.CONNECTIONS_CLOSED)
        yield _histogram("pykubemark_event_loop_lag_seconds",
                         "How late the process's event loop ran a timer, sampled twice a "
                         "second.", telemetry.LOOP_LAG)


def registry_for(fleet: Fleet) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(fleet))
    # pykubemark_process_resident_memory_bytes, _cpu_seconds_total, _open_fds, ...
    ProcessCollector(namespace="pykubemark", registry=registry)
    return registry


class MetricsServer:
    """/metrics of one fleet process on 127.0.0.1:port (or ``host``)."""

    def __init__(self, fleet: Fleet, port: int, host: str = "127.0.0.1") -> None:
        self.registry = registry_for(fleet)
        self.port = port
        self.host = host
        self._runner: web.AppRunner | None = None
        self._lag: asyncio.Task[None] | None = None

    async def metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry),
                            headers={"Content-Type": CONTENT_TYPE})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self.metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._lag = asyncio.get_running_loop().create_task(sample_loop_lag())
        log.info("fleet metrics on http://%s:%d/metrics", self.host, self.port)

    async def stop(self) -> None:
        if self._lag is not None:
            self._lag.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def sample_loop_lag(period: float = 0.5) -> None:
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(period)
        telemetry.LOOP_LAG.observe(max(0.0, loop.time() - started - period))
