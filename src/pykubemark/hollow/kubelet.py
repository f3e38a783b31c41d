"""A hollow kubelet: what a release's kubelet says to the apiserver, without a container.

Per node: register the Node (and CSINode), renew its Lease every 10 s, check the Node
every 10 s and PATCH its status when something changed or 5 minutes passed, watch what
the kubelet watches (its node, its pods, the profile's cluster-wide informers, and each
secret or configmap its pods reference), and run its pods through `pods.PodLifecycle`.
Where releases differ (streaming lists, where the status check reads the Node, what is
cleaned up at start) the profile says which (`pykubemark.profiles`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from pykubemark import telemetry
from pykubemark.hollow import objects
from pykubemark.hollow.ipam import Ipam
from pykubemark.hollow.objects import NodeIdentity
from pykubemark.hollow.pods import PodLifecycle
from pykubemark.hollow.profile import Profile
from pykubemark.kube.client import NETWORK_ERRORS, ApiError, Client, answer
from pykubemark.kube.types import MetaOnly, Node, Pod
from pykubemark.kube.watch import MIN_WATCH_TIMEOUT, Backoff, Reflector, cancel_all

log = logging.getLogger(__name__)
LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
CSINODES = "/apis/storage.k8s.io/v1/csinodes"
LEASE_UPDATE_RETRIES = 5  # the lease controller's maxUpdateRetries
NODE_STATUS_UPDATE_RETRIES = 5  # the kubelet's nodeStatusUpdateRetry


class Ignore:
    """Handler for watches whose contents a hollow node does not use."""

    def on_list(self, items: list[Any]) -> None:
        pass

    def on_event(self, kind: str, obj: Any) -> None:
        pass


IGNORE = Ignore()


class ObjectWatches:
    """Per-object watches of referenced secrets and configmaps, as kubelet 1.20's
    watch-based manager keeps them: opened on first reference, closed on the last."""

    def __init__(self, client: Client, min_timeout: float = MIN_WATCH_TIMEOUT,
                 stream_list: bool = False) -> None:
        self.client = client
        self.min_timeout = min_timeout
        self.stream_list = stream_list
        self.active: dict[tuple[str, str, str], tuple[int, asyncio.Task[None]]] = {}

    def update(self, added: set[tuple[str, str, str]], removed: set[tuple[str, str, str]]) -> None:
        for key in added:
            count, task = self.active.get(key, (0, None))
            if task is None:
                kind, namespace, name = key
                reflector = Reflector(self.client, f"/api/v1/namespaces/{namespace}/{kind}",
                                      MetaOnly, IGNORE,
                                      params={"fieldSelector": f"metadata.name={name}"},
                                      min_timeout=self.min_timeout,
                                      stream_list=self.stream_list)
                task = asyncio.get_running_loop().create_task(reflector.run())
            self.active[key] = (count + 1, task)
        for key in removed:
            if key not in self.active:
                continue
            count, task = self.active[key]
            if count <= 1:
                task.cancel()
                del self.active[key]
            else:
                self.active[key] = (count - 1, task)

    async def close(self) -> None:
        await cancel_all([task for _, task in self.active.values()])
        self.active.clear()


class HollowKubelet:
    def __init__(self, identity: NodeIdentity, client: Client, profile: Profile, *,
                 heartbeat: Client | None = None, events: Client | None = None,
                 shared: bool = False) -> None:
        self.identity = identity
        self.name = identity.name
        self.client = client
        #: Lease and node status go through an unthrottled client, as in kubelet 1.20.
        self.heartbeat = heartbeat or client
        self.profile = profile
        self.shared = shared
        self.node_uid = ""
        #: Registered onto a Node that was already Ready (a restart), not a new one.
        self.adopted = False
        self.transition = objects.now_seconds()
        self.heartbeat_time = self.transition
        self.last_report = float("-inf")
        #: What the last node-status check that found nothing to write was made of (see
        #: `_check`): most checks repeat it, and need not decode the Node again.
        self.settled: tuple[object, str, str, str, int] | None = None
        self.images: list[str] = []
        self.registered = asyncio.Event()
        self.lease: dict[str, Any] | None = None
        #: time.monotonic() of the last renewal the apiserver accepted (or of the start).
        self.renewed = time.monotonic()
        #: Renewals the apiserver accepted (the gaps between them are in /metrics).
        self.lease_renewals = 0
        self.object_watches = ObjectWatches(client, profile.min_watch_timeout,
                                            profile.stream_list)
        #: The Node as the kubelet's own watch last saw it (`node_status_read: informer`).
        self.watched_node: Node | None = None
        self.pods = PodLifecycle(
            self.name, identity.ip, Ipam(identity.pod_cidr), client, profile, events=events,
            on_refs=None if shared else self.object_watches.update, on_image=self._saw_image,
        )
        self.reflectors: list[Reflector[Any]] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._reregister = asyncio.Event()
        self.node_gone = False
        #: Set while the node is up; cleared by a node failure (heartbeats cease).
        self.up = asyncio.Event()
        self.up.set()
        #: Extra seconds before each heartbeat (a "slow" node failure).
        self.heartbeat_delay = 0.0

    def set_failure(self, down: bool, delay: float) -> None:
        """A node failure starts or ends: heartbeats and pod statuses stop or resume."""
        self.heartbeat_delay = delay
        if down == (not self.up.is_set()):
            return
        log.info("%s: %s", self.name, "heartbeats stop" if down else "heartbeats resume")
        if down:
            self.up.clear()
            self.pods.up.clear()
        else:
            self.up.set()
            self.pods.up.set()

    # -- run --------------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        steps = self.profile.register
        lease = loop.create_task(self._lease_loop()) if steps.lease_first else None
        for path in steps.probes:
            try:
                await self.client.request("GET", path.replace("{node}", self.name),
                                          as_json=False)
            except (ApiError, *NETWORK_ERRORS) as exc:
                log.debug("%s: %s: %r", self.name, path, exc)
        await self.register()
        self._tasks = [
            lease or loop.create_task(self._lease_loop()),
            loop.create_task(self._status_loop()),
            loop.create_task(self.pods.run_status_manager()),
            loop.create_task(self._reregister_loop()),
        ]
        if self.profile.startup_deletes:
            self._tasks.append(loop.create_task(self._startup_deletes()))
        if self.pods.events is not None and self.profile.node_events:
            self._tasks.append(loop.create_task(self._node_events()))
        if not self.shared:
            timeout = self.profile.min_watch_timeout
            stream = self.profile.stream_list
            self.reflectors = [
                Reflector(self.client, "/api/v1/nodes", Node, NodeHandler(self),
                          params={"fieldSelector": f"metadata.name={self.name}"},
                          min_timeout=timeout, stream_list=stream),
                Reflector(self.client, "/api/v1/pods", Pod, self.pods,
                          params={"fieldSelector": f"spec.nodeName={self.name}"},
                          min_timeout=timeout, stream_list=stream),
                *(Reflector(self.client, watch.path, MetaOnly, IGNORE,
                            params=watch.params(self.name), min_timeout=timeout,
                            stream_list=stream)
                  for watch in self.profile.kubelet_watches),
            ]
            self._tasks += [loop.create_task(r.run()) for r in self.reflectors]
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.close()

    async def close(self) -> None:
        await cancel_all(self._tasks)
        await self.object_watches.close()
        await self.pods.close()

    async def _node_events(self) -> None:
        """The Node's start-up events, repeats as patches of their count."""
        events = self.pods.events
        assert events is not None
        involved = {"kind": "Node", "name": self.name, "uid": self.name, "namespace": ""}
        for spec in self.profile.node_events:
            body = objects.event("default", involved, spec.reason,
                                 spec.message.replace("{node}", self.name), "kubelet",
                                 self.name)
            path = "/api/v1/namespaces/default/events"
            try:
                await events.create(path, body, as_json=False)
                for count in range(2, spec.count + 1):
                    await events.patch(f"{path}/{body['metadata']['name']}",
                                       {"count": count, "lastTimestamp": objects.now_seconds()},
                                       as_json=False)
            except (ApiError, *NETWORK_ERRORS) as exc:
                log.debug("%s: node event: %r", self.name, exc)

    async def _startup_deletes(self) -> None:
        """Collections the kubelet wipes once it starts (its node's ResourceSlices)."""
        await self.registered.wait()
        for spec in self.profile.startup_deletes:
            try:
                await self.client.request("DELETE", spec.path, params=spec.params(self.name),
                                          as_json=False)
            except (ApiError, *NETWORK_ERRORS) as exc:
                log.debug("%s: delete %s: %r", self.name, spec.path, exc)

    def _saw_image(self, image: str) -> None:
        if image and image not in self.images:
            self.images.append(image)

    # -- registration ------------------------------------------------------------------
    async def register(self) -> None:
        """Create the Node (adopting an existing one), then its CSINode; retry until done."""
        backoff = Backoff(initial=0.2, cap=7.0)
        while True:
            try:
                await self._register_once()
                self.registered.set()
                return
            except (ApiError, *NETWORK_ERRORS) as exc:
                log.debug("%s: register: %r", self.name, exc)
                await asyncio.sleep(backoff.next())

    async def _register_once(self) -> None:
        self.transition = objects.now_seconds()
        body = self.identity.node(self.transition, self.images)
        try:
            node = await self.client.object("POST", "/api/v1/nodes", body=body)
        except ApiError as exc:
            if exc.status != 409:
                raise
            node = await self.client.object("GET", f"/api/v1/nodes/{self.name}")
            cidr = node.get("spec", {}).get("podCIDR")
            if cidr and cidr != self.identity.pod_cidr:
                self.identity.pod_cidr = cidr
                self.pods.ipam = Ipam(cidr)
            self._adopt_status(node.get("status", {}))
        self.node_uid = node["metadata"]["uid"]
        self.last_report = float("-inf")
        self.lease = None
        await self._ensure_csinode()

    def _adopt_status(self, status: dict[str, Any]) -> None:
        """A restarted kubelet keeps a condition's lastTransitionTime while its status
        is unchanged, and finds the images still in the runtime: so do we, else a
        restart would look like a node that was NotReady and lost its images."""
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"),
                     {})
        if ready.get("status") == "True" and ready.get("lastTransitionTime"):
            self.transition = ready["lastTransitionTime"]
            self.adopted = True
        if not self.images:
            self.images = [image["names"][0] for image in status.get("images") or []
                           if image.get("names")]

    async def _ensure_csinode(self) -> None:
        """Create the CSINode; when the Node was re-created, replace the old one by a new
        object owned by the new Node. (Re-owning it in place races the garbage
        collector, whose delete of the old one checks only its uid.)"""
        path = f"{CSINODES}/{self.name}"
        if self.profile.register.csinode_reads_node:
            await self.client.request("GET", f"/api/v1/nodes/{self.name}", as_json=False)
        try:
            csinode = await self.client.object("GET", path)
        except ApiError as exc:
            if not exc.not_found:
                raise
            csinode = None
        if csinode is not None:
            if _owner_uid(csinode) == self.node_uid:
                return
            try:
                await self.client.delete(path, {"preconditions": {
                    "uid": csinode["metadata"]["uid"]}}, as_json=False)
            except ApiError as exc:
                if exc.status not in (404, 409):
                    raise
        try:
            await self.client.create(CSINODES, self.identity.csinode(self.node_uid),
                                     as_json=False)
        except ApiError as create_exc:
            if create_exc.status != 409:
                raise

    def node_deleted(self) -> None:
        """Our Node is gone (a DELETED event or a 404). kubelet 1.20 registers only once
        per process, so by default nothing happens: status and lease keep failing as the
        kubelet's do. The profile's `reregister_deleted_node` registers it again."""
        if self.profile.reregister_deleted_node:
            self._reregister.set()
        elif not self.node_gone:
            self.node_gone = True
            log.warning("%s: Node deleted; not registering again (as the kubelet)", self.name)

    async def _reregister_loop(self) -> None:
        while True:
            await self._reregister.wait()
            self._reregister.clear()
            self.registered.clear()
            await self.register()

    # -- lease -------------------------------------------------------------------------
    async def _lease_loop(self) -> None:
        renew = self.profile.lease_renew
        while True:
            await self.up.wait()
            await self._renew_lease()
            # A node that goes down meanwhile waits above, and renews as soon as it is up.
            await asyncio.sleep(
                renew * (1 + self.profile.lease_jitter * random.random()) + self.heartbeat_delay)

    async def _renew_lease(self) -> None:
        """The lease controller's sync (component-helpers/apimachinery/lease, 1.20):
        update from the last written copy, up to 5 times; on conflict read it again
        and go on; when all 5 fail, read or create it (with backoff) and update once more."""
        if self.lease is not None and await self._retry_update_lease(self.lease):
            return
        self.lease, created = await self._backoff_ensure_lease()
        if not created and self.lease is not None:
            await self._retry_update_lease(self.lease)

    async def _retry_update_lease(self, base: dict[str, Any] | None) -> bool:
        path = f"{LEASES}/{self.name}"
        for _attempt in range(LEASE_UPDATE_RETRIES):
            lease, _owned = await self._new_lease(base)  # an owner is not required here
            try:
                started = time.monotonic()
                self.lease = await self.heartbeat.object("PUT", path, body=lease)
                now = time.monotonic()
                telemetry.LEASE_RENEWAL.observe(now - started)
                if self.lease_renewals:
                    telemetry.LEASE_GAP.observe(now - self.renewed)
                self.lease_renewals += 1
                self.renewed = now
                return True
            except ApiError as exc:
                log.debug("%s: lease: %s", self.name, exc)
                if exc.conflict:
                    # May be None (no Node to own a new one): the next try then PUTs a
                    # fresh Lease, which the apiserver creates — as the kubelet's does.
                    base, _ = await self._backoff_ensure_lease()
            except NETWORK_ERRORS as exc:
                log.debug("%s: lease: %r", self.name, exc)
        return False

    async def _backoff_ensure_lease(self) -> tuple[dict[str, Any] | None, bool]:
        """GET the lease, or create it when there is a Node to own it; retry every
        0.2 s doubling to 7 s while requests fail."""
        path = f"{LEASES}/{self.name}"
        sleep = 0.1
        while True:
            try:
                try:
                    return await self.heartbeat.object("GET", path), False
                except ApiError as exc:
                    if not exc.not_found:
                        raise
                lease, owned = await self._new_lease(None)
                if not owned:
                    return None, False
                created = await self.heartbeat.object("POST", LEASES, body=lease)
                self.renewed = time.monotonic()
                return created, True
            except (ApiError, *NETWORK_ERRORS) as exc:
                log.debug("%s: ensure lease: %r", self.name, exc)
                sleep = min(2 * sleep, 7.0)
                await asyncio.sleep(sleep)

    async def _new_lease(self, base: dict[str, Any] | None) -> tuple[dict[str, Any], bool]:
        """newLease with the kubelet's SetNodeOwnerFunc: a copy of ``base`` (or a new
        Lease) renewed now; without an owner yet, a GET of the Node supplies one.
        Returns whether the lease has its owner."""
        if base is None:
            lease = self.identity.lease("")
            lease["metadata"].pop("ownerReferences", None)
        else:
            lease = {**base, "metadata": {**base.get("metadata", {})},
                     "spec": {**base.get("spec", {})}}
        lease["spec"]["renewTime"] = objects.now_micro()
        if lease["metadata"].get("ownerReferences"):
            return lease, True
        try:
            node = await self.heartbeat.object("GET", f"/api/v1/nodes/{self.name}",
                                               fields=("metadata.uid",))
        except (ApiError, *NETWORK_ERRORS) as exc:
            log.debug("%s: lease owner: %r", self.name, exc)
            return lease, False
        lease["metadata"]["ownerReferences"] = objects.owner_ref(self.name,
                                                                 node["metadata"]["uid"])
        return lease, True

    # -- node status -------------------------------------------------------------------
    async def _status_loop(self) -> None:
        period = self.profile.status_check
        if self.profile.register.status_at_once:
            await self._sync_status()
        if self.profile.register.ready_write:
            await asyncio.sleep(0.2)
            self.last_report = float("-inf")  # due: written whatever changed
            await self._sync_status()
        await asyncio.sleep(random.random() * period)
        while True:
            await self.up.wait()
            started = time.monotonic()
            await self._sync_status()
            await asyncio.sleep(
                max(0.0, period - (time.monotonic() - started)) + self.heartbeat_delay)

    async def _sync_status(self) -> None:
        """updateNodeStatus: up to 5 tries; the first reads the Node from the
        apiserver's cache (resourceVersion=0), the retries from etcd."""
        for attempt in range(NODE_STATUS_UPDATE_RETRIES):
            try:
                await self._try_update_status(attempt)
                return
            except ApiError as exc:
                log.debug("%s: node status: %s", self.name, exc)
                # Only a read from etcd proves it gone: the first one is the apiserver's
                # cache or the kubelet's informer, which lag a Node just registered.
                if exc.not_found and attempt > 0:
                    self.node_deleted()
                    if self.profile.reregister_deleted_node:
                        return
            except NETWORK_ERRORS as exc:
                log.debug("%s: node status: %r", self.name, exc)

    async def _try_update_status(self, attempt: int) -> None:
        path = f"/api/v1/nodes/{self.name}"
        if attempt == 0 and self.profile.node_status_read == "informer":
            # The node lister: the kubelet's own watch of its Node, no request.
            watched = self.watched_node
            if watched is None:
                raise ApiError(404, b"", "GET", f"{path} (not in the informer's cache)")
            key: object = watched.metadata.resourceVersion
            due = time.monotonic() - self.last_report >= self.profile.status_report
            if not due and self._check(key) == self.settled:
                return
            node: dict[str, Any] = {"metadata": {"uid": watched.metadata.uid},
                                    "status": watched.status_dict()}
        else:
            params = ({"resourceVersion": "0"}
                      if attempt == 0 and self.profile.node_status_read == "get" else None)
            raw = await self.heartbeat.request("GET", path, params=params, as_json=False)
            key = hash(raw)
            due = time.monotonic() - self.last_report >= self.profile.status_report
            if not due and self._check(key) == self.settled:
                return
            node = answer(raw, fields=("metadata.uid", "status"))
        if node.get("metadata", {}).get("uid") != self.node_uid:
            return
        current = node.get("status", {})
        if any(c.get("status") != s for c in current.get("conditions") or []
               for t, s, _, _ in objects.CONDITIONS if c.get("type") == t):
            # The node-lifecycle controller marked them Unknown (or someone else changed
            # them): the kubelet's setters give a changed condition a new transition time.
            self.transition = objects.now_seconds()
        desired = self.identity.status(self.transition, self.heartbeat_time, self.images)
        if not due and not objects.status_patch(current, desired):
            self.settled = self._check(key)
            return
        self.heartbeat_time = objects.now_seconds()
        desired = self.identity.status(self.transition, self.heartbeat_time, self.images,
                                       None if current.get("capacity") else
                                       self.identity.capacity())
        patch = objects.status_patch(current, desired)
        await self.heartbeat.patch(f"{path}/status", {"status": patch}, as_json=False)
        self.last_report = time.monotonic()

    def _check(self, key: object) -> tuple[object, str, str, str, int]:
        """Everything a node-status check's outcome depends on: the Node as the apiserver
        answered it (its bytes' hash, or the watched resourceVersion) and what this
        kubelet would write."""
        return key, self.node_uid, self.transition, self.heartbeat_time, len(self.images)


def _owner_uid(obj: dict[str, Any]) -> str:
    refs = obj.get("metadata", {}).get("ownerReferences") or [{}]
    return refs[0].get("uid", "")


class NodeHandler:
    """The kubelet's watch of its own Node: a deletion means registering again."""

    def __init__(self, kubelet: HollowKubelet) -> None:
        self.kubelet = kubelet

    def on_list(self, items: list[Node]) -> None:
        """Keep the Node for status checks. A LIST served from the apiserver's cache may
        lag a Node just created, so an empty one proves nothing; a DELETED event or a 404
        does."""
        if items:
            self.kubelet.watched_node = items[0]

    def on_event(self, kind: str, obj: Node) -> None:
        if kind == "DELETED":
            if self.kubelet.watched_node is not None and \
                    self.kubelet.watched_node.metadata.uid == obj.metadata.uid:
                self.kubelet.watched_node = None
            if obj.metadata.uid == self.kubelet.node_uid:
                self.kubelet.node_deleted()
        else:
            self.kubelet.watched_node = obj


