"""A hollow kube-proxy: watches what the release's kube-proxy watches (services and
endpoints or EndpointSlices with its selectors; later releases also its own Node and the
ServiceCIDRs), says it started, and programs nothing.

The no-op proxier needs no event's content, so events are decoded only as far as their
resourceVersion (`MetaOnly`): msgspec skips the rest without building objects.
"""

from __future__ import annotations

import asyncio
import logging

import orjson

from pykubemark.hollow import objects
from pykubemark.hollow.kubelet import IGNORE
from pykubemark.hollow.profile import Profile, WatchSpec
from pykubemark.kube.client import NETWORK_ERRORS, ApiError, Client
from pykubemark.kube.types import MetaOnly
from pykubemark.kube.watch import Backoff, Reflector, cancel_all

log = logging.getLogger(__name__)
CORE_ENDPOINTS = "/api/v1/endpoints"


async def endpoints_path(client: Client, kind: str) -> str:
    """Where kube-proxy's endpoints come from: core/v1 Endpoints (1.20) or
    EndpointSlices from discovery.k8s.io/v1, falling back to v1beta1 where v1 is absent."""
    if kind == "endpoints":
        return CORE_ENDPOINTS
    try:
        group = orjson.loads(await client.get("/apis/discovery.k8s.io"))
        versions = {v["version"] for v in group.get("versions", [])}
    except (ApiError, *NETWORK_ERRORS, ValueError):
        versions = set()
    version = "v1" if "v1" in versions or not versions else "v1beta1"
    return f"/apis/discovery.k8s.io/{version}/endpointslices"


def proxy_watches(client: Client, profile: Profile, endpoints: str, node: str, *,
                  shared: bool = False) -> list[Reflector[MetaOnly]]:
    """The profile's kube-proxy informers; its watch of ``/api/v1/endpoints`` reads
    ``endpoints`` (Endpoints or EndpointSlices, `endpoints_path`)."""
    def reflector(watch: WatchSpec) -> Reflector[MetaOnly]:
        path = endpoints if watch.path == CORE_ENDPOINTS else watch.path
        params = watch.shared_params() if shared else watch.params(node)
        return Reflector(client, path, MetaOnly, IGNORE, params=params,
                         min_timeout=profile.min_watch_timeout,
                         stream_list=profile.stream_list)

    return [reflector(watch) for watch in profile.proxy_watches]


class HollowProxy:
    def __init__(self, name: str, client: Client, endpoints: str, profile: Profile, *,
                 shared: bool = False):
        self.name = name
        self.client = client
        self.endpoints = endpoints
        self.profile = profile
        self.shared = shared
        self.started = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        await self._announce()
        loop = asyncio.get_running_loop()
        if not self.shared:
            self._tasks = [loop.create_task(r.run())
                           for r in proxy_watches(self.client, self.profile, self.endpoints,
                                                  self.name)]
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await cancel_all(self._tasks)

    async def _node_uid(self) -> str:
        """kube-proxy 1.20 GETs its Node until it exists (it needs its IP); later ones
        learn it from their watch of it, which a hollow proxy need not decode: the event
        names the Node without its uid, as kube-proxy's recorder does for a node ref."""
        if not self.profile.proxy_get_node:
            return ""
        backoff = Backoff(initial=0.5, cap=5.0)
        while True:
            try:
                node = orjson.loads(await self.client.get(f"/api/v1/nodes/{self.name}"))
                return str(node["metadata"]["uid"])
            except (ApiError, *NETWORK_ERRORS):
                await asyncio.sleep(backoff.next())

    async def _announce(self) -> None:
        """The "Starting kube-proxy." event, through the profile's events API."""
        uid = await self._node_uid()
        try:
            if self.profile.proxy_event_api == "events.k8s.io/v1":
                await self.client.create("/apis/events.k8s.io/v1/namespaces/default/events",
                                         objects.events_v1("default", self.name, uid,
                                                           "StartKubeProxy", "Starting",
                                                           "kube-proxy", self.name),
                                         as_json=False)
            else:
                involved = {"kind": "Node", "name": self.name, "uid": uid, "namespace": ""}
                body = objects.event("default", involved, "Starting", "Starting kube-proxy.",
                                     "kube-proxy", self.name)
                await self.client.create("/api/v1/namespaces/default/events", body,
                                         as_json=False)
        except (ApiError, *NETWORK_ERRORS) as exc:
            log.debug("%s: proxy event: %r", self.name, exc)
        self.started.set()
