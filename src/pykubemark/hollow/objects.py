"""The objects a hollow kubelet writes, shaped like the kubelet 1.20 writes them
(compare `shared/reference/objects/`): Node, CSINode, Lease, pod statuses, events."""

from __future__ import annotations

import datetime as dt
import ipaddress
import platform
import time
import uuid
from typing import Any

from pykubemark import __version__
from pykubemark.hollow.profile import Profile
from pykubemark.kube.types import Pod

RUNTIME = f"pykubemark://{__version__}"
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
CONDITIONS = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory",
     "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)
CONDITION_ORDER = [{"type": c[0]} for c in CONDITIONS]


_second: list[Any] = [None, ""]  # the last second formatted, and its text


def now_seconds() -> str:
    """metav1.Time's text, to the second: written into every status and event, and the
    same for a whole second, so formatted once per second."""
    second = int(time.time())
    if second != _second[0]:
        _second[:] = second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
    return _second[1]


def now_micro() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def nth_subnet(base: str, index: int, prefix: int) -> str:
    network = ipaddress.ip_network(base)
    size = 1 << (network.max_prefixlen - prefix)
    start = int(network.network_address) + index * size
    if start + size - 1 > int(network.broadcast_address):
        raise ValueError(f"node index {index} does not fit in {base} as /{prefix} subnets")
    return f"{ipaddress.ip_address(start)}/{prefix}"


def nth_address(base: str, index: int) -> str:
    network = ipaddress.ip_network(base)
    address = int(network.network_address) + 1 + index
    if address >= int(network.broadcast_address):
        raise ValueError(f"node index {index} does not fit in {base}")
    return str(ipaddress.ip_address(address))


def owner_ref(node_name: str, node_uid: str) -> list[dict[str, str]]:
    return [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}]


class NodeIdentity:
    """Everything fixed about one hollow node, derived from its name and index."""

    def __init__(self, name: str, index: int, profile: Profile, *, ip: str | None = None,
                 port: int = 10250) -> None:
        self.name = name
        self.index = index
        self.profile = profile
        #: InternalIP and kubelet port: where the apiserver reaches this node's API.
        self.ip = ip or nth_address(profile.node_ip_base, index)
        self.port = port
        self.pod_cidr = nth_subnet(profile.pod_cidr_base, index, 24)

    def labels(self) -> dict[str, str]:
        return {
            "beta.kubernetes.io/arch": ARCH,
            "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": ARCH,
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            **self.profile.extra_labels,
        }

    def conditions(self, transition: str, heartbeat: str) -> list[dict[str, str]]:
        return [
            {"type": t, "status": s, "reason": r, "message": m,
             "lastHeartbeatTime": heartbeat, "lastTransitionTime": transition}
            for t, s, r, m in CONDITIONS
        ]

    def node(self, transition: str, images: list[str]) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "labels": self.labels()}
        if self.profile.controller_attach_detach:
            metadata["annotations"] = {
                "volumes.kubernetes.io/controller-managed-attach-detach": "true"}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": metadata,
            "spec": {
                "providerID": f"kubemark://{self.name}",
                "podCIDR": self.pod_cidr,
                "podCIDRs": [self.pod_cidr],
            },
            "status": self.status(transition, transition, images, self.capacity()),
        }

    def capacity(self) -> dict[str, str]:
        """Capacity, also reported as allocatable (no reservations on a hollow node)."""
        capacity = self.profile.capacity
        return {"cpu": capacity.cpu, "ephemeral-storage": capacity.ephemeral_storage,
                "memory": capacity.memory, "pods": capacity.pods}

    def status(self, transition: str, heartbeat: str, images: list[str],
               capacity: dict[str, str] | None = None) -> dict[str, Any]:
        status: dict[str, Any] = {
            "conditions": self.conditions(transition, heartbeat),
            "addresses": [{"type": "InternalIP", "address": self.ip},
                          {"type": "Hostname", "address": self.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            "nodeInfo": {
                # Empty, as the Go hollow kubelet's fake cAdvisor reports them: every
                # node GET carries these bytes, and the apiserver's cost is the yardstick.
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": f"pykubemark hollow node {__version__}",
                "containerRuntimeVersion": RUNTIME,
                "kubeletVersion": self.profile.kubelet_version,
                # Deprecated: later kubelets leave it empty.
                "kubeProxyVersion": (self.profile.kubelet_version
                                     if self.profile.report_kube_proxy_version else ""),
                "operatingSystem": "linux",
                "architecture": ARCH,
            },
            # Equal sizes: the kubelet's sort by size keeps them in the order seen.
            "images": [{"names": [image], "sizeBytes": 682696}
                       for image in images[:max(0, self.profile.node_status_max_images)]],
        }
        if capacity is not None:
            status["capacity"] = capacity
            status["allocatable"] = dict(capacity)
        return status

    def csinode(self, node_uid: str) -> dict[str, Any]:
        return {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "CSINode",
            "metadata": {"name": self.name, "ownerReferences": owner_ref(self.name, node_uid)},
            "spec": {"drivers": []},
        }

    def lease(self, node_uid: str) -> dict[str, Any]:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": "kube-node-lease",
                         "ownerReferences": owner_ref(self.name, node_uid)},
            "spec": {"holderIdentity": self.name,
                     "leaseDurationSeconds": self.profile.lease_duration,
                     "renewTime": now_micro()},
        }


# -- pods -------------------------------------------------------------------------------
def qos_class(pod: Pod) -> str:
    """As GetPodQOS: only cpu and memory count, and zero quantities do not."""

    def compute(values: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in values.items()
                if k in ("cpu", "memory") and v.strip("0.") not in ("", "m")}

    containers = pod.spec.containers + pod.spec.initContainers
    requests = [compute(c.resources.requests) for c in containers]
    limits = [compute(c.resources.limits) for c in containers]
    if not any(requests) and not any(limits):
        return "BestEffort"
    guaranteed = all(
        lim.get(r) and (req.get(r) in (None, lim.get(r)))
        for req, lim in zip(requests, limits, strict=True) for r in ("cpu", "memory")
    )
    return "Guaranteed" if guaranteed else "Burstable"


def condition(kind: str, status: str, since: str, reason: str = "", message: str = "") -> dict:
    condition: dict[str, Any] = {"type": kind, "status": status, "lastProbeTime": None,
                                 "lastTransitionTime": since}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def container_id(pod: Pod, name: str, restart: int = 0) -> str:
    """One id per container instance: a restarted container is a new one."""
    meta = pod.metadata
    suffix = f"_{restart}" if restart else ""
    return (f"{RUNTIME.split(':')[0]}://{meta.namespace}_{meta.name}_{meta.uid[:8]}_{name}"
            f"{suffix}")


class Exited:
    """A container instance that exited, as its lastState/state.terminated reports it."""

    __slots__ = ("code", "finished", "reason", "restart", "started")

    def __init__(self, code: int, reason: str, started: str, finished: str,
                 restart: int) -> None:
        self.code = code
        self.reason = reason
        self.started = started
        self.finished = finished
        self.restart = restart

    def terminated(self, pod: Pod, name: str) -> dict[str, Any]:
        return {"terminated": {
            "exitCode": self.code, "reason": self.reason, "startedAt": self.started,
            "finishedAt": self.finished, "containerID": container_id(pod, name, self.restart),
        }}


class ContainerView:
    """The runtime's view of a failing pod's containers (all of them alike), rendered as
    kubelet 1.20's convertToAPIContainerStatuses does: the newest instance is the state,
    the one before it lastState; a reason from the last sync (CrashLoopBackOff,
    ErrImagePull, ...) replaces the state of a container that is not running."""

    __slots__ = ("exited", "image_known", "ready", "restart_count", "running_since",
                 "waiting")

    def __init__(self) -> None:
        self.restart_count = 0
        self.running_since = ""
        self.exited: list[Exited] = []
        #: (reason, message with {container} for the container's name)
        self.waiting: tuple[str, str] | None = None
        self.ready = False
        self.image_known = True

    def status(self, pod: Pod, name: str, image: str) -> dict[str, Any]:
        newest = self.exited[-1] if self.exited else None
        state: dict[str, Any]
        last: dict[str, Any] = {}
        cid = ""
        if self.running_since:
            state = {"running": {"startedAt": self.running_since}}
            cid = container_id(pod, name, self.restart_count)
            if newest:
                last = newest.terminated(pod, name)
        elif newest is not None:
            state = newest.terminated(pod, name)
            cid = state["terminated"]["containerID"]
            if len(self.exited) > 1:
                last = self.exited[-2].terminated(pod, name)
        else:
            state = {"waiting": {"reason": "ContainerCreating"}}
        if self.waiting and not self.running_since:
            if "terminated" in state:
                last = state
            reason, message = self.waiting
            state = {"waiting": {"reason": reason, "message": message.format(container=name)}}
        status: dict[str, Any] = {
            "name": name, "image": image, "imageID": image if cid else "",
            "ready": self.ready and bool(self.running_since),
            "restartCount": self.restart_count, "started": bool(self.running_since),
            "lastState": last, "state": state,
        }
        if cid:
            status["containerID"] = cid
        return status


class PodTimes:
    """When this pod was started, ran and stopped, as the status reports them."""

    __slots__ = ("bound", "finished", "ready_since", "sandbox", "scheduled", "started")

    def __init__(self, scheduled: str, bound: str = "") -> None:
        #: First sync: startTime, Initialized, the first not-ready conditions.
        self.scheduled = scheduled
        #: The scheduler's PodScheduled time, which the kubelet keeps unchanged.
        self.bound = bound
        #: The pod sandbox is ready (PodReadyToStartContainers, later releases).
        self.sandbox = ""
        self.started = ""
        self.ready_since = ""
        self.finished = ""


#: What later kubelets add to a pod's status (`Profile.pod_status_fields`).
READY_TO_START = "PodReadyToStartContainers"
SANDBOX_REASON = "PodSandboxReason"
OBSERVED_GENERATION = "observedGeneration"
HOST_IPS = "hostIPs"
VOLUME_MOUNTS = "volumeMounts"


def pod_status(pod: Pod, phase: str, times: PodTimes, host_ip: str, pod_ip: str,
               *, exit_code: int = 0, exit_reason: str = "",
               view: ContainerView | None = None, ready_changed: str = "",
               fields: frozenset[str] = frozenset(), terminal: bool = False) -> dict[str, Any]:
    """Status for one of: Pending (creating), Running, Terminated (after kill), Succeeded;
    with a ``view``, the containers and the Ready conditions are the view's. ``fields``
    are the later releases' additions (`POD_STATUS_FIELDS`); with ``terminal`` a killed pod
    ends Succeeded or Failed whatever its restartPolicy, as kubelets since 1.27 do."""
    if terminal and phase == "Terminated":
        phase = "Succeeded" if exit_code == 0 else "Failed"
    status = _pod_status(pod, phase, times, host_ip, pod_ip, exit_code=exit_code,
                         exit_reason=exit_reason, view=view, ready_changed=ready_changed)
    if fields:
        _later_fields(status, pod, times, host_ip, fields)
    return status


def _later_fields(status: dict[str, Any], pod: Pod, times: PodTimes, host_ip: str,
                  fields: frozenset[str]) -> None:
    """What a current kubelet writes beside 1.20's status (read off the real one's
    status patches): the sandbox condition first, every condition's and the status's
    observedGeneration, hostIPs, and each container's volume mounts."""
    conditions = status["conditions"]
    if status["phase"] == "Succeeded":
        for c in conditions:
            if c["type"] == "Initialized":
                c["reason"] = "PodCompleted"
    if READY_TO_START in fields:
        why = SANDBOX_REASON in fields
        if times.sandbox and not times.finished:
            ready = condition(READY_TO_START, "True", times.sandbox)
        elif times.finished:
            ready = condition(READY_TO_START, "False", times.finished,
                              *(("PodSandboxNotReady", "pod sandbox is not ready") if why
                                else ()))
        else:
            ready = condition(READY_TO_START, "False", times.scheduled,
                              *(("PodSandboxNotReady", "no pod sandbox exists") if why
                                else ()))
        conditions.insert(0, ready)
    if OBSERVED_GENERATION in fields:
        generation = pod.metadata.generation or 1
        for c in conditions:
            c["observedGeneration"] = generation
        status["observedGeneration"] = generation
    if HOST_IPS in fields:
        status["hostIPs"] = [{"ip": host_ip}]
    if VOLUME_MOUNTS in fields:
        mounts = {c.name: [_mount_status(m) for m in c.volumeMounts]
                  for c in pod.spec.containers}
        for container in status["containerStatuses"]:
            if mounts.get(container["name"]):
                container["volumeMounts"] = mounts[container["name"]]


def _mount_status(mount: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"mountPath": mount.mountPath, "name": mount.name}
    if mount.readOnly:
        out["readOnly"] = True
        out["recursiveReadOnly"] = mount.recursiveReadOnly or "Disabled"
    return out


def _pod_status(pod: Pod, phase: str, times: PodTimes, host_ip: str, pod_ip: str,
                *, exit_code: int = 0, exit_reason: str = "",
                view: ContainerView | None = None, ready_changed: str = "") -> dict[str, Any]:
    names = [c.name for c in pod.spec.containers]
    unready = f"containers with unready status: [{' '.join(names)}]"
    scheduled = times.scheduled
    conditions = [condition("Initialized", "True", scheduled)]
    statuses = []
    if view is not None:
        statuses = [view.status(pod, c.name, c.image) for c in pod.spec.containers]
        since = ready_changed or scheduled
        if all(s["ready"] for s in statuses):
            conditions += [condition("Ready", "True", since),
                           condition("ContainersReady", "True", since)]
        else:
            reason = "PodCompleted" if phase == "Succeeded" else "ContainersNotReady"
            message = "" if reason == "PodCompleted" else unready
            conditions += [condition("Ready", "False", since, reason, message),
                           condition("ContainersReady", "False", since, reason, message)]
    elif phase == "Pending":
        conditions += [
            condition("Ready", "False", scheduled, "ContainersNotReady", unready),
            condition("ContainersReady", "False", scheduled, "ContainersNotReady", unready),
        ]
        for c in pod.spec.containers:
            statuses.append({
                "name": c.name, "image": c.image, "imageID": "", "ready": False,
                "restartCount": 0, "started": False, "lastState": {},
                "state": {"waiting": {"reason": "ContainerCreating"}},
            })
    elif phase == "Running":
        conditions += [condition("Ready", "True", times.ready_since),
                       condition("ContainersReady", "True", times.ready_since)]
        for c in pod.spec.containers:
            statuses.append({
                "name": c.name, "image": c.image, "imageID": c.image,
                "containerID": container_id(pod, c.name), "ready": True, "restartCount": 0,
                "started": True, "lastState": {},
                "state": {"running": {"startedAt": times.started}},
            })
    else:  # Terminated (phase per restartPolicy) or Succeeded/Failed
        if phase == "Terminated":
            phase = "Running" if pod.spec.restartPolicy == "Always" else (
                "Succeeded" if exit_code == 0 else "Failed")
        # kubelet 1.20 (status/generate.go): only Succeeded pods say PodCompleted.
        reason = "PodCompleted" if phase == "Succeeded" else "ContainersNotReady"
        message = "" if reason == "PodCompleted" else unready
        conditions += [condition("Ready", "False", times.finished, reason, message),
                       condition("ContainersReady", "False", times.finished, reason, message)]
        for c in pod.spec.containers:
            statuses.append({
                "name": c.name, "image": c.image, "imageID": c.image,
                "containerID": container_id(pod, c.name), "ready": False, "restartCount": 0,
                "started": False, "lastState": {},
                "state": {"terminated": {
                    "exitCode": exit_code,
                    "reason": exit_reason or ("Completed" if exit_code == 0 else "Error"),
                    "startedAt": times.started or times.finished, "finishedAt": times.finished,
                    "containerID": container_id(pod, c.name),
                }},
            })
    conditions.append(condition("PodScheduled", "True", times.bound or scheduled))
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "startTime": scheduled,
        "containerStatuses": statuses,
        "qosClass": qos_class(pod),
    }
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return status


MERGE_LISTS = {"conditions": "type", "podIPs": "ip", "hostIPs": "ip"}


def _canon(value: Any) -> Any:
    """A value without its blank fields ("", 0, false, null, [], {}), recursively: Go
    compares structs, where an omitted field and a zero one are the same, and an answer
    in protobuf carries zero fields that its JSON omits. Of JSON's values exactly the
    blank ones are falsy."""
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            if isinstance(item, dict | list):
                item = _canon(item)
            if item:
                kept[key] = item
        return kept
    if isinstance(value, list):
        return [_canon(item) if isinstance(item, dict | list) else item for item in value]
    return value


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The strategic-merge patch of ``status`` from ``old`` to ``new``, as the kubelet's
    two-way merge computes it: changed fields only (an empty list or map equals an
    absent one, as the apiserver omits them); merge-keyed lists carry their
    ``$setElementOrder`` and only the changed elements, with removed fields as null.
    Each changed field is reduced to its non-blank parts once (the status manager
    computes this for every status it writes)."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if before == value:
            continue
        before_c = _canon(before)
        value_c = _canon(value)
        if before_c == value_c or (not before_c and not value_c):
            continue
        merge_key = MERGE_LISTS.get(key)
        if merge_key and isinstance(before, list):
            by_key = {item.get(merge_key): item_c
                      for item, item_c in zip(before, before_c, strict=True)}
            changed = []
            for item, now in zip(value, value_c, strict=True):
                previous = by_key.get(item[merge_key], {})
                diff = {k: v for k, v in item.items() if previous.get(k) != now.get(k)}
                diff.update({k: None for k in previous if k not in item})
                if diff:
                    changed.append({merge_key: item[merge_key], **diff})
            patch[f"$setElementOrder/{key}"] = [{merge_key: i[merge_key]} for i in value]
            if changed:
                patch[key] = changed
        else:
            patch[key] = value
    return patch


def event(namespace: str, involved: dict[str, str], reason: str, message: str,
          component: str, host: str, kind: str = "Normal") -> dict[str, Any]:
    stamp = now_seconds()
    return {
        "metadata": {"name": f"{involved['name']}.{uuid.uuid4().hex[:16]}",
                     "namespace": namespace},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "source": {"component": component, "host": host},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "type": kind,
    }


def events_v1(namespace: str, node: str, uid: str, action: str, reason: str,
              controller: str, host: str, note: str = "") -> dict[str, Any]:
    """An events.k8s.io/v1 Event about a Node, as client-go's new recorder posts it."""
    regarding = {"kind": "Node", "name": node}
    if uid:
        regarding["uid"] = uid
    return {
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": f"{node}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
        "eventTime": now_micro(), "reportingController": controller,
        "reportingInstance": f"{controller}-{host}", "action": action, "reason": reason,
        "regarding": regarding, "note": note, "type": "Normal",
    }
