"""Create, inspect and remove a deployment of shard pods on a base cluster.

Objects are created in the order of `manifests.manifests` and, on any failure (a
rejected object, shard pods that cannot pull their image, Ctrl-C), the ones this call
created are deleted again in reverse order: nothing half-created stays behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from pykubemark.deploy import manifests as m
from pykubemark.errors import UserError
from pykubemark.kube.client import NETWORK_ERRORS, ApiError, Client
from pykubemark.kube.config import KubeConfig
from pykubemark.kube.nodes import is_ready
from pykubemark.waiting import ReadyCount

FOREGROUND = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"}
#: Waiting reasons of a container that will not start by waiting longer.
STUCK = {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
         "CreateContainerConfigError", "CreateContainerError"}


def path_of(obj: dict, *, collection: bool = False) -> str:
    kind = obj["kind"]
    meta = obj["metadata"]
    ns = meta.get("namespace")
    base = {"Namespace": "/api/v1/namespaces",
            "ServiceAccount": f"/api/v1/namespaces/{ns}/serviceaccounts",
            "Secret": f"/api/v1/namespaces/{ns}/secrets",
            "StatefulSet": f"/apis/apps/v1/namespaces/{ns}/statefulsets"}[kind]
    return base if collection else f"{base}/{meta['name']}"


@dataclass
class Created:
    """What this call created, to delete in reverse order when it fails."""

    objects: list[dict] = field(default_factory=list)

    async def rollback(self, client: Client) -> None:
        for obj in reversed(self.objects):
            with contextlib.suppress(ApiError, *NETWORK_ERRORS):
                await client.delete(path_of(obj), FOREGROUND)
        for obj in self.objects:
            if obj["kind"] == "Namespace":
                await _gone(client, path_of(obj), 120)
        self.objects.clear()


async def _gone(client: Client, path: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await client.get(path)
        except ApiError as exc:
            if exc.not_found:
                return True
        except NETWORK_ERRORS:
            pass
        await asyncio.sleep(1)
    return False


def _pod_problem(pod: dict) -> str | None:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK:
            return f"{waiting['reason']}: {waiting.get('message', '')}".strip().rstrip(":")
    return None


async def _wait_ready(client: Client, spec: m.DeploySpec, timeout: float,
                      on_progress: Callable[[str], None]) -> None:
    path = f"/api/v1/namespaces/{spec.namespace}/pods"
    selector = f"app.kubernetes.io/instance={spec.name},{m.PART_OF}={m.NAME}"
    waiting = ReadyCount("shard pods ready", timeout=timeout, progress=on_progress)
    while True:
        pods = orjson.loads(await client.get(path, {"labelSelector": selector}))["items"]
        for pod in pods:
            if problem := _pod_problem(pod):
                raise UserError(f"shard pod {pod['metadata']['name']} cannot start "
                                f"(image {spec.image}): {problem}")
        if waiting.done(sum(map(is_ready, pods)), spec.shards):
            return
        if line := waiting.overdue():
            raise UserError(f"{line}{await _last_warning(client, spec)}")
        await asyncio.sleep(1)


async def _last_warning(client: Client, spec: m.DeploySpec) -> str:
    """The newest Warning event of the namespace (a sandbox or volume failure), if any."""
    try:
        events = orjson.loads(await client.get(
            f"/api/v1/namespaces/{spec.namespace}/events",
            {"fieldSelector": "type=Warning"}))["items"]
    except (ApiError, *NETWORK_ERRORS):
        return ""
    if not events:
        return ""
    last = max(events, key=lambda e: e.get("lastTimestamp") or "")
    return f"; last warning: {last.get('reason', '')}: {last.get('message', '')[:200]}"


async def deploy(base: KubeConfig, spec: m.DeploySpec, target_kubeconfig: str, *,
                 wait: float | None, on_progress: Callable[[str], None]) -> None:
    """Create everything; with ``wait``, until every shard pod is Ready."""
    created = Created()
    async with Client(base, user_agent="pykubemark-deploy") as client:
        try:
            for obj in m.manifests(spec, target_kubeconfig):
                try:
                    await client.create(path_of(obj, collection=True), obj)
                except ApiError as exc:
                    if exc.conflict and obj["kind"] == "Namespace":
                        continue  # the user's own namespace: use it, never delete it
                    if exc.conflict:
                        raise UserError(f"{obj['kind']} {spec.namespace}/"
                                        f"{obj['metadata']['name']} already exists on "
                                        f"{base.server}: `pykubemark undeploy` first") from None
                    raise UserError(f"base cluster {base.server} refused {obj['kind']} "
                                    f"{obj['metadata']['name']}: {exc.status} "
                                    f"{exc.message}") from None
                created.objects.append(obj)
                on_progress(f"created {obj['kind']} {obj['metadata']['name']}")
            if wait:
                await _wait_ready(client, spec, wait, on_progress)
        except BaseException:
            on_progress("deleting what was created")
            await asyncio.shield(created.rollback(client))
            raise


@dataclass
class Deployed:
    """What `status` reads back: the spec from the StatefulSet's annotations and pods."""

    spec: m.DeploySpec
    pods: dict[int, dict]
    target_kubeconfig: str


async def read_deployed(base: KubeConfig, namespace: str, name: str = m.NAME) -> Deployed | None:
    async with Client(base, user_agent="pykubemark-deploy") as client:
        try:
            sts = orjson.loads(await client.get(
                f"/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}"))
        except ApiError as exc:
            if exc.not_found:
                return None
            raise
        notes = sts["metadata"].get("annotations") or {}
        try:
            spec = m.DeploySpec(nodes=int(notes[f"{m.ANNOTATIONS}nodes"]),
                                nodes_per_pod=int(notes[f"{m.ANNOTATIONS}nodes-per-pod"]),
                                prefix=notes[f"{m.ANNOTATIONS}prefix"], namespace=namespace,
                                name=name)
        except (KeyError, ValueError):
            raise UserError(f"StatefulSet {namespace}/{name} was not made by pykubemark "
                            "deploy") from None
        pods = orjson.loads(await client.get(
            f"/api/v1/namespaces/{namespace}/pods",
            {"labelSelector": f"app.kubernetes.io/instance={name},{m.PART_OF}={m.NAME}"}))
        by_ordinal = {}
        for pod in pods["items"]:
            with contextlib.suppress(ValueError):
                by_ordinal[m.shard_prefix("", pod["metadata"]["name"])[1]] = pod
        kubeconfig = ""
        with contextlib.suppress(ApiError):
            import base64

            secret = orjson.loads(await client.get(
                f"/api/v1/namespaces/{namespace}/secrets/{name}-target"))
            kubeconfig = base64.b64decode(secret["data"]["kubeconfig"]).decode()
        return Deployed(spec, by_ordinal, kubeconfig)


async def ready_nodes(target: KubeConfig, spec: m.DeploySpec) -> dict[int, int]:
    """Ready Nodes on the target per shard ordinal."""
    async with Client(target, user_agent="pykubemark-deploy") as client:
        nodes = orjson.loads(await client.get("/api/v1/nodes"))["items"]
    wanted = {name: ordinal for ordinal in range(spec.shards)
              for name in spec.node_names(ordinal)}
    counts = dict.fromkeys(range(spec.shards), 0)
    for node in nodes:
        ordinal = wanted.get(node["metadata"]["name"])
        if ordinal is None:
            continue
        if is_ready(node):
            counts[ordinal] += 1
    return counts


async def undeploy(base: KubeConfig, namespace: str, name: str, *,
                   on_progress: Callable[[str], None], timeout: float = 180) -> list[str]:
    """Delete the StatefulSet (and wait for its pods to stop), the Secret, the
    ServiceAccount and, when pykubemark made it, the namespace. What was deleted."""
    deleted = []
    async with Client(base, user_agent="pykubemark-deploy") as client:
        spec = m.DeploySpec(nodes=1, namespace=namespace, name=name)
        for obj in reversed(m.manifests(spec, "")):
            path = path_of(obj)
            if obj["kind"] == "Namespace":
                try:
                    ns = orjson.loads(await client.get(path))
                except ApiError as exc:
                    if exc.not_found:
                        continue
                    raise
                if (ns["metadata"].get("labels") or {}).get(m.MANAGED_BY) != m.NAME:
                    continue  # not ours: leave the namespace, its other objects
            try:
                await client.delete(path, FOREGROUND)
            except ApiError as exc:
                if exc.not_found:
                    continue
                raise
            deleted.append(f"{obj['kind']} {obj['metadata']['name']}")
            on_progress(f"deleting {obj['kind']} {obj['metadata']['name']}")
            if obj["kind"] == "StatefulSet":
                await _pods_gone(client, spec, timeout)
            if not await _gone(client, path, timeout):
                raise UserError(f"{obj['kind']} {obj['metadata']['name']} still exists "
                                f"after {timeout:.0f}s")
    return deleted


async def _pods_gone(client: Client, spec: m.DeploySpec, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    selector = f"app.kubernetes.io/instance={spec.name},{m.PART_OF}={m.NAME}"
    while time.monotonic() < deadline:
        pods = orjson.loads(await client.get(f"/api/v1/namespaces/{spec.namespace}/pods",
                                             {"labelSelector": selector}))["items"]
        if not pods:
            return
        await asyncio.sleep(1)
    raise UserError(f"shard pods still running after {timeout:.0f}s")


async def delete_nodes(target: KubeConfig, spec: m.DeploySpec) -> int:
    async with Client(target, user_agent="pykubemark-deploy") as client:
        nodes = orjson.loads(await client.get("/api/v1/nodes"))["items"]
        ours = {n for o in range(spec.shards) for n in spec.node_names(o)}
        count = 0
        for node in nodes:
            if node["metadata"]["name"] in ours:
                with contextlib.suppress(ApiError):
                    await client.delete(f"/api/v1/nodes/{node['metadata']['name']}")
                    count += 1
        return count
