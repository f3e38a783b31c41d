"""The few pod fields the pod measurements read, decoded without the rest of the pod."""

from __future__ import annotations

import datetime as dt

import msgspec

from pykubemark.kube import Client
from pykubemark.kube.types import ObjectList


class Meta(msgspec.Struct):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    resourceVersion: str = ""
    creationTimestamp: str = ""


class ContainerName(msgspec.Struct):
    name: str = ""


class Spec(msgspec.Struct):
    nodeName: str = ""
    containers: list[ContainerName] = []


class Running(msgspec.Struct):
    startedAt: str = ""


class State(msgspec.Struct):
    running: Running | None = None


class ContainerStatus(msgspec.Struct):
    name: str = ""
    state: State = msgspec.field(default_factory=State)


class Condition(msgspec.Struct):
    type: str = ""
    status: str = ""
    lastTransitionTime: str = ""


class Status(msgspec.Struct):
    phase: str = ""
    conditions: list[Condition] = []
    containerStatuses: list[ContainerStatus] = []


class Pod(msgspec.Struct):
    metadata: Meta = msgspec.field(default_factory=Meta)
    spec: Spec = msgspec.field(default_factory=Spec)
    status: Status = msgspec.field(default_factory=Status)

    @property
    def key(self) -> str:
        return f"{self.metadata.namespace}/{self.metadata.name}"

    def scheduled_at(self) -> float | None:
        """When the PodScheduled condition turned True (apiserver's stamp, 1 s)."""
        for cond in self.status.conditions:
            if cond.type == "PodScheduled" and cond.status == "True":
                return timestamp(cond.lastTransitionTime)
        return None

    def started(self) -> bool:
        """Running, with every container of the spec running."""
        if self.status.phase != "Running":
            return False
        running = {c.name for c in self.status.containerStatuses if c.state.running}
        return all(c.name in running for c in self.spec.containers)

    def run_at(self) -> float | None:
        """The last container's start (the kubelet's stamp, 1 s)."""
        stamps = [timestamp(c.state.running.startedAt) for c in self.status.containerStatuses
                  if c.state.running and c.state.running.startedAt]
        return max(stamps) if stamps else None


def timestamp(stamp: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 time as the apiserver writes them."""
    if not stamp:
        return None
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


_uid_list = msgspec.json.Decoder(ObjectList[Pod])


async def existing_uids(client: Client, selector: str) -> set[str]:
    """UIDs of the selected pods as etcd has them now (a consistent LIST, paged)."""
    uids: set[str] = set()
    params = {"labelSelector": selector, "limit": "500"}
    while True:
        page = _uid_list.decode(await client.get("/api/v1/pods", params))
        uids.update(p.metadata.uid for p in page.items)
        cont = page.metadata.get("continue")
        if not cont:
            return uids
        params = {**params, "continue": str(cont)}
