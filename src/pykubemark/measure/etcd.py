"""etcd's own latency and size where etcd is local (EtcdMetrics).

Like clusterloader2's EtcdMetrics: the backend commit and WAL fsync duration histograms
(the disk latencies that bound every write of the apiserver) over the measured window,
as the difference of two scrapes, and the database size. etcd 3.4 exposes the size as
both ``etcd_mvcc_db_total_size_in_bytes`` and the older
``etcd_debugging_mvcc_db_total_size_in_bytes``; the first present is read.
"""

from __future__ import annotations

from typing import Any

from pykubemark.kube import Client
from pykubemark.measure.base import Context, Measurement, MeasurementError
from pykubemark.measure.metrics import gauge, histograms, parse_off_loop, plain_client, scrape
from pykubemark.measure.registry import ETCD_METRICS
from pykubemark.measure.stats import Histogram, delta, merge, quantiles_ms
from pykubemark.report.output import DataItem

LATENCIES = {  # perfdata Metric label -> etcd histogram
    "backend_commit_duration": "etcd_disk_backend_commit_duration_seconds",
    "wal_fsync_duration": "etcd_disk_wal_fsync_duration_seconds",
}
DB_SIZE = ("etcd_mvcc_db_total_size_in_bytes", "etcd_debugging_mvcc_db_total_size_in_bytes")
MIB = 1024.0 * 1024.0


class EtcdMetrics(Measurement):
    name = ETCD_METRICS.perfdata

    def __init__(self, ctx: Context, **params: Any) -> None:
        super().__init__(ctx, **params)
        self._client: Client | None = None
        self._path = "/metrics"
        self._baseline: dict[str, Histogram] | None = None
        self.window: dict[str, Histogram] = {}
        self.db_size: list[float] = []   # bytes, one per scrape

    async def _scrape(self) -> tuple[dict[str, Histogram], float | None]:
        assert self._client is not None
        families = await parse_off_loop(await scrape(self._client, self._path),
                         [*LATENCIES.values(), *DB_SIZE])
        hists = {}
        for metric, name in LATENCIES.items():
            total = merge(histograms(families, name).values())
            if total is not None:
                hists[metric] = total
        return hists, gauge(families, *DB_SIZE)

    async def _begin(self) -> None:
        if not self.ctx.etcd_metrics_url:
            raise MeasurementError(f"{self.name}: no etcd metrics URL (etcd is not local)")
        self._client, self._path = plain_client(self.ctx.etcd_metrics_url)
        self._baseline, size = await self._scrape()
        if size is not None:
            self.db_size.append(size)

    async def _refresh(self) -> None:
        if self._baseline is None:
            return
        hists, size = await self._scrape()
        self.window = {m: delta(self._baseline.get(m), h) for m, h in hists.items()}
        if size is not None:
            self.db_size.append(size)

    def write(self) -> None:
        if self._baseline is None:
            return
        items = [DataItem(quantiles_ms(h), "ms", {"Metric": metric, "Count": str(round(h.count))})
                 for metric, h in self.window.items() if h.count > 0]
        if self.db_size:
            items.append(DataItem({"Max": max(self.db_size) / MIB, "Last": self.db_size[-1] / MIB},
                                  "MiB", {"Metric": "db_size"}))
        self.output.perfdata(self.name, items)

    async def _close(self) -> None:
        if self._client is not None:
            await self._client.close()
