"""Typed views of Kubernetes objects for msgspec: decode only the fields we read.

Unknown fields are skipped by the decoder without building Python objects, which is
what makes watching thousands of pods per process affordable.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec


class ObjectMeta(msgspec.Struct, omit_defaults=True):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    resourceVersion: str = ""
    generation: int = 0
    deletionTimestamp: str | None = None
    deletionGracePeriodSeconds: int | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class RVMeta(msgspec.Struct):
    resourceVersion: str = ""


class BookmarkMeta(msgspec.Struct):
    resourceVersion: str = ""
    annotations: dict[str, str] | None = None


class Bookmark(msgspec.Struct):
    """A BOOKMARK event's object: its resourceVersion, and the annotation that ends the
    initial events of a streaming list (``k8s.io/initial-events-end``)."""

    metadata: BookmarkMeta = msgspec.field(default_factory=BookmarkMeta)

    @property
    def initial_events_end(self) -> bool:
        return (self.metadata.annotations or {}).get(INITIAL_EVENTS_END) == "true"


INITIAL_EVENTS_END = "k8s.io/initial-events-end"


class MetaOnly(msgspec.Struct):
    """An object of which only the resourceVersion matters (no-op proxier)."""

    metadata: RVMeta = msgspec.field(default_factory=RVMeta)


class Named(msgspec.Struct):
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)


class Status(msgspec.Struct):
    code: int = 0
    reason: str = ""
    message: str = ""


T = TypeVar("T")


class ObjectList(msgspec.Struct, Generic[T]):
    metadata: dict[str, object] = {}
    items: list[T] = []


class WatchEvent(msgspec.Struct, Generic[T]):
    type: str
    object: T


# -- pods, as the kubelet reads them ---------------------------------------------------
class OwnerReference(msgspec.Struct):
    kind: str = ""
    name: str = ""


class PodMeta(ObjectMeta):
    ownerReferences: list[OwnerReference] = []


class NameRef(msgspec.Struct):
    name: str = ""


class SecretVolume(msgspec.Struct):
    secretName: str = ""


class TokenProjection(msgspec.Struct):
    audience: str = ""
    expirationSeconds: int = 3600
    path: str = ""


class ProjectionSource(msgspec.Struct):
    secret: NameRef | None = None
    configMap: NameRef | None = None
    serviceAccountToken: TokenProjection | None = None


class Projected(msgspec.Struct):
    sources: list[ProjectionSource] = []


class Volume(msgspec.Struct):
    name: str = ""
    secret: SecretVolume | None = None
    configMap: NameRef | None = None
    projected: Projected | None = None


class KeyRef(msgspec.Struct):
    secretKeyRef: NameRef | None = None
    configMapKeyRef: NameRef | None = None


class EnvVar(msgspec.Struct):
    valueFrom: KeyRef | None = None


class EnvFrom(msgspec.Struct):
    secretRef: NameRef | None = None
    configMapRef: NameRef | None = None


class Resources(msgspec.Struct):
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}


class VolumeMount(msgspec.Struct, omit_defaults=True):
    name: str = ""
    mountPath: str = ""
    readOnly: bool = False
    recursiveReadOnly: str = ""


class Container(msgspec.Struct):
    name: str = ""
    image: str = ""
    env: list[EnvVar] = []
    envFrom: list[EnvFrom] = []
    resources: Resources = msgspec.field(default_factory=Resources)
    volumeMounts: list[VolumeMount] = []


class PodSpec(msgspec.Struct):
    nodeName: str = ""
    restartPolicy: str = "Always"
    serviceAccountName: str = ""
    hostNetwork: bool = False
    containers: list[Container] = []
    initContainers: list[Container] = []
    volumes: list[Volume] = []
    imagePullSecrets: list[NameRef] = []


class PodCondition(msgspec.Struct):
    type: str = ""
    lastTransitionTime: str = ""
    status: str = ""
    reason: str = ""
    message: str = ""


class PodStatus(msgspec.Struct):
    phase: str = ""
    podIP: str = ""
    startTime: str = ""
    #: Read for PodScheduled's time: the kubelet keeps the scheduler's, as it found it.
    conditions: list[PodCondition] = []


class Pod(msgspec.Struct):
    metadata: PodMeta = msgspec.field(default_factory=PodMeta)
    spec: PodSpec = msgspec.field(default_factory=PodSpec)
    status: PodStatus = msgspec.field(default_factory=PodStatus)


class NodeSpec(msgspec.Struct):
    podCIDR: str = ""
    providerID: str = ""


class Node(msgspec.Struct):
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: NodeSpec = msgspec.field(default_factory=NodeSpec)
    #: As the apiserver wrote it: a kubelet's status check compares it with its own.
    status: dict[str, Any] = {}

    def status_dict(self) -> dict[str, Any]:
        return self.status
