"""A hollow kube-proxy: reads its node, says it started, watches services and endpoints
(or EndpointSlices) with kube-proxy's label selector, and programs nothing.

The no-op proxier needs no event's content, so events are decoded only as far as their
resourceVersion (`MetaOnly`): msgspec skips the rest without building objects.
"""

from __future__ import annotations

import asyncio
import logging

import orjson

from pykubemark.hollow import objects
from pykubemark.hollow.kubelet import IGNORE
from pykubemark.kube.client import NETWORK_ERRORS, ApiError, Client
from pykubemark.kube.types import MetaOnly
from pykubemark.kube.watch import MIN_WATCH_TIMEOUT, Backoff, Reflector, cancel_all

log = logging.getLogger(__name__)
SELECTOR = "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name"


async def endpoints_path(client: Client, kind: str) -> str:
    """Where kube-proxy's endpoints come from: core/v1 Endpoints (1.20) or
    EndpointSlices from discovery.k8s.io/v1, falling back to v1beta1 where v1 is absent."""
    if kind == "endpoints":
        return "/api/v1/endpoints"
    try:
        group = orjson.loads(await client.get("/apis/discovery.k8s.io"))
        versions = {v["version"] for v in group.get("versions", [])}
    except (ApiError, *NETWORK_ERRORS, ValueError):
        versions = set()
    version = "v1" if "v1" in versions or not versions else "v1beta1"
    return f"/apis/discovery.k8s.io/{version}/endpointslices"


def proxy_watches(client: Client, endpoints: str,
                  min_timeout: float = MIN_WATCH_TIMEOUT) -> list[Reflector[MetaOnly]]:
    params = {"labelSelector": SELECTOR}
    return [
        Reflector(client, "/api/v1/services", MetaOnly, IGNORE, params=params,
                  min_timeout=min_timeout),
        Reflector(client, endpoints, MetaOnly, IGNORE, params=params, min_timeout=min_timeout),
    ]


class HollowProxy:
    def __init__(self, name: str, client: Client, endpoints: str, *, shared: bool = False,
                 min_watch_timeout: float = MIN_WATCH_TIMEOUT):
        self.name = name
        self.client = client
        self.endpoints = endpoints
        self.shared = shared
        self.min_watch_timeout = min_watch_timeout
        self.started = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        await self._announce()
        if not self.shared:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(r.run())
                           for r in proxy_watches(self.client, self.endpoints,
                                                   self.min_watch_timeout)]
            try:
                await asyncio.gather(*self._tasks)
            finally:
                await cancel_all(self._tasks)

    async def _announce(self) -> None:
        """GET the node until it exists (kube-proxy needs its IP), then one event."""
        backoff = Backoff(initial=0.5, cap=5.0)
        while True:
            try:
                node = orjson.loads(await self.client.get(f"/api/v1/nodes/{self.name}"))
                break
            except (ApiError, *NETWORK_ERRORS):
                await asyncio.sleep(backoff.next())
        involved = {"kind": "Node", "name": self.name, "uid": node["metadata"]["uid"],
                    "namespace": ""}
        body = objects.event("default", involved, "Starting", "Starting kube-proxy.",
                             "kube-proxy", self.name)
        try:
            await self.client.create("/api/v1/namespaces/default/events", body,
                                     as_json=False)
        except (ApiError, *NETWORK_ERRORS) as exc:
            log.debug("%s: proxy event: %r", self.name, exc)
        self.started.set()
