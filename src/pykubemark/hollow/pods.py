"""The pod lifecycle of a hollow kubelet, and its status manager.

A pod bound to the node goes Pending (ContainerCreating) at once, its containers start
once its volumes are "mounted", it turns Running after the next runtime relist (the Go
kubelet's sequence and delays: ``StartProfile``), and — for Job-like pods — Succeeded
after its run time. A pod being deleted is killed, reported Terminated, re-synced while
its volumes are "reclaimed", then deleted with grace period 0 and a uid precondition.

Each step is a `Stage` (as in KWOK): its delay and the pod state it applies to are data,
in one table below; its method writes the status and asks for the steps that follow:

    seen:      first_sync; request_tokens; [sandbox_ready →] containers_started → running
    running:   → exited (a Job's, a crashing pod's) → finished, or → crash_sync (again
               while backing off) → restarted → exited ...; unready: → flap → flap ...
    imagepull: pull → pull_failed → pull_sync (again while backing off) → pull ...
    deleted:   resync; regenerate; killed; reclaimed

Statuses reach the apiserver through a status manager modelled on kubelet 1.20's: a
channel of (pod, version, status) synced in order with GET + strategic-merge PATCH, and a
10-second batch that drains the channel and syncs only the latest versions. Under the
client's QPS limit this coalesces updates exactly where the real kubelet does.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from operator import attrgetter
from typing import Any, NamedTuple

from pykubemark.hollow import failures, objects
from pykubemark.hollow.failures import Plan
from pykubemark.hollow.ipam import Ipam
from pykubemark.hollow.objects import ContainerView, Exited
from pykubemark.hollow.profile import Distribution, Profile
from pykubemark.hollow.runtime import QueuedRuntime, RuntimeJob, SharedRuntime
from pykubemark.kube.client import NETWORK_ERRORS, ApiError, Client
from pykubemark.kube.types import Pod

log = logging.getLogger(__name__)
BATCH_PERIOD = 10.0
TERMINAL = ("Succeeded", "Failed")
#: The pod conditions a kubelet owns (kubetypes.PodConditionsByKubelet).
KUBELET_CONDITIONS = frozenset(("PodScheduled", "Ready", "Initialized", "ContainersReady",
                                "PodReadyToStartContainers"))
#: How long the updates of a deleted pod still on their way are ignored: far beyond the
#: lag between a DELETE and its watch event. A tombstone is dropped then, or at a relist.
GONE_TTL = 120.0


#: The volume manager's retry of a failed mount (nestedpendingoperations: 500 ms
#: doubling to 2 min 2 s), which is how a refused TokenRequest is tried again.
TOKEN_RETRY_INITIAL, TOKEN_RETRY_CAP = 0.5, 122.0
#: The kubelet's token manager refreshes a token older than this, whatever its expiry.
TOKEN_MAX_TTL = 24 * 3600.0


def token_refresh_delay(expiration_seconds: int, expires: str,
                        now: dt.datetime | None = None) -> float:
    """Seconds until the kubelet would ask again: when less than 20 % of the requested
    lifetime is left before the token's expiry, and at most 24 h after issue."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        expiry = dt.datetime.fromisoformat(expires.replace("Z", "+00:00"))
    except ValueError:
        expiry = now + dt.timedelta(seconds=expiration_seconds)
    refresh = (expiry - now).total_seconds() - 0.2 * expiration_seconds
    return max(1.0, min(refresh, TOKEN_MAX_TTL))


class PodRecord:
    __slots__ = (
        "backoff",
        "deletable",
        "exit_code",
        "exit_reason",
        "exited_at",
        "holds_ip",
        "ip",
        "last_ready",
        "phase",
        "plan",
        "pod",
        "ready_changed",
        "reason",
        "status",
        "terminating",
        "timers",
        "times",
        "uid",
        "version",
        "view",
    )

    def __init__(self, pod: Pod) -> None:
        self.pod = pod
        self.uid = pod.metadata.uid
        self.phase = "Pending"
        bound = next((c.lastTransitionTime for c in pod.status.conditions
                      if c.type == "PodScheduled"), "")
        self.times = objects.PodTimes(objects.now_seconds(), bound)
        self.ip = ""
        self.holds_ip = False  # the address stays in the status after it is released
        self.version = 0
        self.status: dict[str, Any] = {}
        self.terminating = False
        self.deletable = False
        self.exit_code = 0
        self.exit_reason = ""
        self.timers: list[asyncio.TimerHandle | RuntimeJob] = []
        self.plan = Plan()
        #: Set once the pod fails: the containers as the runtime would report them.
        self.view: ContainerView | None = None
        #: The pod worker's reason cache: the error of its last sync, shown by the next.
        self.reason: tuple[str, str] | None = None
        self.backoff: failures.Backoff | None = None
        self.exited_at = 0.0
        self.last_ready = False
        self.ready_changed = ""

    @property
    def path(self) -> str:
        meta = self.pod.metadata
        return f"/api/v1/namespaces/{meta.namespace}/pods/{meta.name}"

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()


def referenced_objects(pod: Pod) -> set[tuple[str, str, str]]:
    """(kind, namespace, name) of every secret and configmap the kubelet would fetch."""
    ns = pod.metadata.namespace
    refs: set[tuple[str, str, str]] = set()
    for volume in pod.spec.volumes:
        if volume.secret and volume.secret.secretName:
            refs.add(("secrets", ns, volume.secret.secretName))
        if volume.configMap and volume.configMap.name:
            refs.add(("configmaps", ns, volume.configMap.name))
        if volume.projected:
            for source in volume.projected.sources:
                if source.secret and source.secret.name:
                    refs.add(("secrets", ns, source.secret.name))
                if source.configMap and source.configMap.name:
                    refs.add(("configmaps", ns, source.configMap.name))
    for container in pod.spec.containers + pod.spec.initContainers:
        for env in container.env:
            ref = env.valueFrom
            if ref and ref.secretKeyRef and ref.secretKeyRef.name:
                refs.add(("secrets", ns, ref.secretKeyRef.name))
            if ref and ref.configMapKeyRef and ref.configMapKeyRef.name:
                refs.add(("configmaps", ns, ref.configMapKeyRef.name))
        for source in container.envFrom:
            if source.secretRef and source.secretRef.name:
                refs.add(("secrets", ns, source.secretRef.name))
            if source.configMapRef and source.configMapRef.name:
                refs.add(("configmaps", ns, source.configMapRef.name))
    for secret in pod.spec.imagePullSecrets:
        if secret.name:
            refs.add(("secrets", ns, secret.name))
    return refs


def pull_error(image: str) -> str:
    """What dockershim reports for an image that does not exist."""
    repository = image.rsplit(":", 1)[0] if "/" not in image.rsplit(":", 1)[-1] else image
    return (f"rpc error: code = Unknown desc = Error response from daemon: pull access "
            f"denied for {repository}, repository does not exist or may require "
            f"'docker login': denied: requested access to the resource is denied")


def is_job_like(pod: Pod) -> bool:
    return pod.spec.restartPolicy in ("Never", "OnFailure")


# -- the stages of a pod's life -----------------------------------------------------------
class Stage(NamedTuple):
    """One step of a pod's life, as KWOK's stages are: it comes ``after`` a delay, counted
    from the step that asks for it (a profile field, or one of the delays
    `PodLifecycle._delay` names), and applies then only to a pod its selector still
    matches: one of ``phases`` (any, if none), not being deleted unless ``deleting``, and
    what ``needs`` says. A pod that has moved on is left alone. What the step writes, and
    which steps it asks for next, is its method: ``PodLifecycle._<name>``."""

    name: str
    after: str
    phases: tuple[str, ...] = ()
    deleting: bool = False
    #: "no status" (none written yet), "view" (a failing pod's containers), "running"
    #: (one of them runs), "backoff" (the image pull's).
    needs: str = ""

    def applies(self, record: PodRecord) -> bool:
        if record.terminating and not self.deleting:
            return False
        if self.phases and record.phase not in self.phases:
            return False
        match self.needs:
            case "no status":
                return not record.status
            case "view":
                return record.view is not None
            case "running":
                return record.view is not None and bool(record.view.running_since)
            case "backoff":
                return record.backoff is not None
        return True


# The start, as the Go kubelet does it (the delays: StartProfile).
#: The pod worker's first sync writes the Pending status (startTime, Initialized).
FIRST_SYNC = Stage("first_sync", "start.first_sync", ("Pending",), needs="no status")
#: The volume manager asks for the pod's service-account tokens.
TOKENS = Stage("request_tokens", "start.token_delay")
#: Later kubelets: the sandbox is ready (a Pending status of its own); the containers
#: start after ``start.containers_delay``.
SANDBOX_READY = Stage("sandbox_ready", "volumes + sandbox", ("Pending",))
#: The runtime starts the containers (startedAt) once the volumes are mounted (and the
#: runtime has made the sandbox and them: without a sandbox status, their delays add up).
STARTED = Stage("containers_started", "volumes + sandbox + containers", ("Pending",))
#: Later kubelets: the runtime starts them after the sandbox is ready.
STARTED_AFTER_SANDBOX = STARTED._replace(after="start.containers_delay")
#: The next relist sees them running (a relist of the pod asked for by the sync that
#: started them, in later kubelets): the Running (and Ready) status.
RUNNING = Stage("running", "relist after start", ("Pending",))
#: The containers of a Job's pod, or crashing ones, exit: Succeeded or Failed at once, or
#: (a failing pod's view) at the next relist, or restarted.
EXITED = Stage("exited", "run", ("Running",))
FINISHED = Stage("finished", "relist")
# Failures (FailureProfile: the kubelet's back-off, the pod worker's retries).
#: A sync of a pod whose containers exited: restart them, or back off and sync again.
CRASH_SYNC = Stage("crash_sync", "relist", ("Pending", "Running"), needs="view")
CRASH_RETRY = CRASH_SYNC._replace(after="retry")
#: The relist after a restart: Running (and Ready) again.
RESTARTED = Stage("restarted", "relist after start", needs="running")
#: A readiness probe that fails and recovers every period.
FLAP = Stage("flap", "flap", needs="running")
#: An image pull that fails, and the syncs that retry it once the back-off allows.
PULL = Stage("pull", "volumes", ("Pending",))
PULL_FAILED = Stage("pull_failed", "failures.pull_seconds", ("Pending",), needs="backoff")
PULL_SYNC = Stage("pull_sync", "retry", ("Pending",), needs="view")
# Deletion, timed from when the kubelet sees it (StopProfile).
#: A sync that finds the status unchanged (each of ``stop.resyncs``, by its chance).
RESYNC = Stage("resync", "stop.resyncs", deleting=True)
#: Later kubelets write the deletion's new generation.
REGENERATED = Stage("regenerate", "stop.generation_write", deleting=True)
#: The containers are killed: Terminated.
KILLED = Stage("killed", "stop.kill_delay", deleting=True)
#: The volumes are reclaimed: the status manager may delete the pod. One that no longer
#: runs has nothing to kill: reclaimed when it would have been killed.
RECLAIMED = Stage("reclaimed", "stop.delete_after", deleting=True)
RECLAIMED_AT_ONCE = RECLAIMED._replace(after="stop.kill_delay")
#: The stages whose delay is the runtime's work, and which of its delays make it up: on
#: a node whose runtime is shared (``start.runtime_slots``) they wait their turn.
RUNTIME_WORK = {
    "volumes + sandbox": ("sandbox_delay",),
    "volumes + sandbox + containers": ("sandbox_delay", "containers_delay"),
    "start.containers_delay": ("containers_delay",),
    "relist after start": ("relist_work",),
}
#: What waits its turn in a queued runtime (``runtime_order: queue``); the rest of a
#: stage's work follows, in parallel with the other pods'.
QUEUED_WORK = frozenset({"sandbox_delay"})


class PodLifecycle:
    """All pods of one hollow node: their state machine and status manager."""

    def __init__(self, node_name: str, host_ip: str, ipam: Ipam, client: Client,
                 profile: Profile, *, events: Client | None = None,
                 on_refs: Callable[[set[tuple[str, str, str]], set[tuple[str, str, str]]], None]
                 | None = None,
                 on_image: Callable[[str], None] | None = None) -> None:
        self.node_name = node_name
        self.host_ip = host_ip
        self.ipam = ipam
        self.client = client
        self.profile = profile
        self.events = events
        self.on_refs = on_refs
        self.on_image = on_image
        self.pods: dict[str, PodRecord] = {}
        self.refs: dict[str, set[tuple[str, str, str]]] = {}
        self.synced_versions: dict[str, int] = {}
        self.channel: deque[tuple[str, int, dict[str, Any]]] = deque()
        self._wake = asyncio.Event()
        #: Cleared while the node's heartbeats are down: no status is written then.
        self.up = asyncio.Event()
        self.up.set()
        self._relist_phase = random.random() * profile.start.relist_period
        self._fields = frozenset(profile.pod_status_fields)
        self.rng = random.Random()
        self._background: set[asyncio.Task[Any]] = set()
        #: The node's runtime, when its pods share it (made at the first pod's start).
        self.runtime: SharedRuntime | QueuedRuntime | None = None
        #: Pods found already started (after a restart) and adopted as they were.
        self.adopted = 0
        #: Deleted pods (our DELETE, a 404, a DELETED event) and when their tombstones
        #: expire (time.monotonic), oldest first.
        self.gone: dict[str, float] = {}

    # -- informer callbacks --------------------------------------------------------------
    def on_list(self, pods: list[Pod]) -> None:
        seen = set()
        adopted = self.adopted
        for pod in pods:
            seen.add(pod.metadata.uid)
            self.on_event("ADDED", pod)
        for uid in [u for u in self.pods if u not in seen]:
            self._forget(uid)
        self.gone = {uid: expiry for uid, expiry in self.gone.items() if uid in seen}
        if self.adopted > adopted:
            log.info("%s: adopted %d pods already started (IPs kept, containers not "
                     "restarted)", self.node_name, self.adopted - adopted)

    def on_event(self, kind: str, pod: Pod) -> None:
        uid = pod.metadata.uid
        if kind == "DELETED":
            self._forget(uid)
            self._tombstone(uid)
            return
        if uid in self.gone:
            # an update from before our DELETE (the GC's graceful delete, our own last
            # status) or after the DELETED event (out of order): the pod is not started
            # again, nor adopted as found Running
            return
        if pod.spec.nodeName != self.node_name:
            return
        record = self.pods.get(uid)
        if record is None:
            record = self._admit(pod)
        else:
            record.pod = pod
            if self._needs_reconcile(record):
                # the status manager's needsReconcile: written again at the next batch
                self.synced_versions.pop(uid, None)
        if pod.metadata.deletionTimestamp and not record.terminating:
            self._terminate(record)

    def _needs_reconcile(self, record: PodRecord) -> bool:
        """Whether someone else changed what this kubelet last wrote of the pod's status:
        its phase or a condition the kubelet owns (the node-lifecycle controller sets
        Ready to False on the pods of a node it marks NotReady, and a kubelet sets it back
        once it sees that)."""
        written = record.status
        if not written or record.terminating or self.needs_update(record.uid, record.version):
            return False
        status = record.pod.status
        if status.phase != written.get("phase", status.phase):
            return True
        seen = {c.type: (c.status, c.reason, c.message) for c in status.conditions}
        return any(seen.get(c["type"]) != (c.get("status", ""), c.get("reason", ""),
                                           c.get("message", ""))
                   for c in written.get("conditions") or () if c["type"] in KUBELET_CONDITIONS)

    def _adopt_status(self, record: PodRecord) -> None:
        """What this kubelet would say of a running pod it adopts: the status it found,
        except that Ready follows ContainersReady (no readiness gates here), as the
        kubelet's status generation has it; written if that differs (the pods of a node
        marked NotReady while its kubelet was down)."""
        found = record.pod.status
        conditions = [objects.condition(c.type, c.status, c.lastTransitionTime, c.reason,
                                        c.message) for c in found.conditions]
        containers = next((c for c in conditions if c["type"] == "ContainersReady"), None)
        changed = False
        for i, c in enumerate(conditions):
            if containers is not None and c["type"] == "Ready" \
                    and c["status"] != containers["status"]:
                conditions[i] = objects.condition(
                    "Ready", containers["status"], objects.now_seconds(),
                    containers.get("reason", ""), containers.get("message", ""))
                changed = True
        record.status = {"phase": found.phase, "conditions": conditions}
        if changed:
            self._bump(record)

    # -- state machine -------------------------------------------------------------------
    def _admit(self, pod: Pod) -> PodRecord:
        record = PodRecord(pod)
        self.pods[record.uid] = record
        phase = pod.status.phase
        if phase in TERMINAL or (phase == "Running" and pod.status.podIP):
            self._register_refs(record)
            # Already started before we (re)started: adopt it, do not restart it.
            self.adopted += 1
            record.phase = phase
            record.ip = pod.status.podIP
            if phase == "Running" and not pod.spec.hostNetwork:
                self.ipam.reserve(record.ip)
                record.holds_ip = True
            record.times.scheduled = pod.status.startTime or record.times.scheduled
            self.synced_versions[record.uid] = 0
            if phase == "Running":
                self._adopt_status(record)
            if phase == "Running" and is_job_like(pod):
                record.plan = failures.plan_for(pod, self.profile.failures, self.rng)
                self._next(record, EXITED)
            return record
        if pod.spec.hostNetwork:
            record.ip = self.host_ip
        else:
            record.ip = self.ipam.allocate()
            record.holds_ip = True
        record.plan = plan = failures.plan_for(pod, self.profile.failures, self.rng)
        if plan.failure == "imagepull":
            view = record.view = ContainerView()
            view.image_known = False
            record.ready_changed = record.times.scheduled
            record.backoff = self._backoff()
            self._next(record, FIRST_SYNC)
            self._next(record, TOKENS)
            self._next(record, PULL)
            return record
        self._next(record, FIRST_SYNC)
        for container in pod.spec.containers:
            if self.on_image:
                self.on_image(container.image)
            self._event(record, "Pulled",
                        f'Container image "{container.image}" already present on machine',
                        container.name)
            self._event(record, "Created", f"Created container {container.name}", container.name)
        self._next(record, TOKENS)
        self._next(record, SANDBOX_READY if self.profile.start.sandbox_status else STARTED)
        return record

    def _first_sync(self, record: PodRecord) -> None:
        self._set_status(record, "Pending")
        self._register_refs(record)

    def _register_refs(self, record: PodRecord) -> None:
        """Watch what the pod references, from its first sync on, as the kubelet's
        syncPod registers it after generating the first status: not on the pod's first
        sight, where the watch can reach the apiserver before the Node authorizer's graph
        has the binding (a 403)."""
        if record.uid in self.refs or record.terminating:
            return
        refs = self.refs[record.uid] = referenced_objects(record.pod)
        if refs and self.on_refs:
            self.on_refs(refs, set())

    def _sandbox_ready(self, record: PodRecord) -> None:
        record.times.sandbox = objects.now_seconds()
        self._set_status(record, "Pending")
        self._next(record, STARTED_AFTER_SANDBOX)

    def _mount_delay(self, pod: Pod) -> float:
        """Until the pod worker's volume poll finds the volumes mounted: at once, then
        every retry period (``WaitForAttachAndMount``); no wait without volumes."""
        start = self.profile.start
        if not pod.spec.volumes or start.mount_time <= 0:
            return 0.0
        if start.mount_retry_period <= 0:
            return start.mount_time
        return math.ceil(start.mount_time / start.mount_retry_period) * start.mount_retry_period

    def _containers_started(self, record: PodRecord) -> None:
        """``startedAt`` is now; the status says so only after the next relist."""
        record.times.started = objects.now_seconds()
        # Without a status write of its own, the sandbox is ready with the containers.
        record.times.sandbox = record.times.sandbox or record.times.started
        self._next(record, RUNNING)

    def _start_delay(self) -> float:
        period = self.profile.start.relist_period
        until_relist = period - ((time.monotonic() - self._relist_phase) % period) if period else 0
        return until_relist + self.profile.start.status_delay

    def _running(self, record: PodRecord) -> None:
        record.times.ready_since = objects.now_seconds()
        plan = record.plan
        if plan.failure == "unready":
            view = record.view = ContainerView()
            view.running_since = record.times.started
            record.ready_changed = record.times.scheduled
            self._set_status(record, "Running")
            if plan.flap_period > 0:
                self._next(record, FLAP)
        else:
            self._set_status(record, "Running")
        for container in record.pod.spec.containers:
            self._event(record, "Started", f"Started container {container.name}", container.name)
        if plan.crashes or is_job_like(record.pod):
            self._next(record, EXITED)

    def _run_seconds(self, record: PodRecord) -> float:
        if record.plan.run_seconds is not None:
            return record.plan.run_seconds
        if record.plan.crashes:
            return self.profile.failures.run_seconds
        return self.profile.start.job_run_seconds

    def _exited(self, record: PodRecord) -> None:
        """A terminal phase, or a restart as the restart policy says."""
        code = record.plan.code()
        reason = record.plan.exit_reason(code)
        policy = record.pod.spec.restartPolicy
        restart = policy == "Always" or (policy == "OnFailure" and code != 0)
        now = objects.now_seconds()
        if record.view is None and not restart:
            record.exit_code = code
            record.exit_reason = reason
            record.times.finished = now
            self._release_ip(record)
            self._set_status(record, "Succeeded" if code == 0 else "Failed")
            return
        view = record.view
        if view is None:
            view = record.view = ContainerView()
            view.running_since = record.times.started
            view.ready = True
            record.last_ready = True
            record.ready_changed = record.times.ready_since
        view.exited = [*view.exited[-1:], Exited(code, reason, view.running_since, now,
                                                 view.restart_count)]
        view.running_since = ""
        record.exit_code = code
        record.exited_at = asyncio.get_running_loop().time()
        if restart:
            self._next(record, CRASH_SYNC)
        else:
            record.times.finished = now
            self._release_ip(record)
            self._next(record, FINISHED)

    def _finished(self, record: PodRecord) -> None:
        self._publish(record, "Succeeded" if record.exit_code == 0 else "Failed")

    # -- failures: the pod worker's syncs and the kubelet's back-off ---------------------
    def _backoff(self) -> failures.Backoff:
        return failures.Backoff(self.profile.failures.backoff_initial,
                                self.profile.failures.backoff_max)

    def _retry_delay(self) -> float:
        """A failed sync is requeued after ``backOffPeriod`` with jitter (pod_workers.go)."""
        f = self.profile.failures
        return f.retry_period * (1 + self.rng.random() * f.retry_jitter)

    def _crash_sync(self, record: PodRecord) -> None:
        """Write the status the last sync left, then restart the containers unless the
        back-off since their exit still runs."""
        view = record.view
        assert view is not None
        view.waiting = record.reason
        self._publish(record, "Running")
        if record.backoff is None:
            record.backoff = self._backoff()
        now = asyncio.get_running_loop().time()
        if record.backoff.in_backoff_since(record.exited_at, now):
            record.reason = ("CrashLoopBackOff",
                             f"back-off {failures.go_duration(record.backoff.delay)} "
                             f"restarting failed container={{container}} "
                             f"pod={failures.pod_desc(record.pod)}")
            for container in record.pod.spec.containers:
                self._event(record, "BackOff", "Back-off restarting failed container",
                            container.name, "Warning")
            self._next(record, CRASH_RETRY)
            return
        record.backoff.next(record.exited_at, now)
        record.reason = None
        view.restart_count += 1
        view.running_since = objects.now_seconds()
        for container in record.pod.spec.containers:
            self._event(record, "Pulled",
                        f'Container image "{container.image}" already present on machine',
                        container.name)
            self._event(record, "Created", f"Created container {container.name}", container.name)
            self._event(record, "Started", f"Started container {container.name}", container.name)
        self._next(record, RESTARTED)

    def _restarted(self, record: PodRecord) -> None:
        assert record.view is not None
        record.view.waiting = None
        self._publish(record, "Running")
        self._next(record, EXITED)

    def _flap(self, record: PodRecord) -> None:
        view = record.view
        assert view is not None
        view.ready = not view.ready
        if not view.ready:
            for container in record.pod.spec.containers:
                self._event(record, "Unhealthy",
                            "Readiness probe failed: HTTP probe failed with statuscode: 503",
                            container.name, "Warning")
        self._publish(record, "Running")
        self._next(record, FLAP)

    def _pull(self, record: PodRecord) -> None:
        for container in record.pod.spec.containers:
            self._event(record, "Pulling", f'Pulling image "{container.image}"', container.name)
        self._next(record, PULL_FAILED)

    def _pull_failed(self, record: PodRecord) -> None:
        assert record.backoff is not None
        now = asyncio.get_running_loop().time()
        record.backoff.next(now, now)
        image = record.pod.spec.containers[0].image if record.pod.spec.containers else ""
        error = pull_error(image)
        for container in record.pod.spec.containers:
            self._event(record, "Failed",
                        f'Failed to pull image "{container.image}": {pull_error(container.image)}',
                        container.name, "Warning")
            self._event(record, "Failed", "Error: ErrImagePull", container.name, "Warning")
        record.reason = ("ErrImagePull", error)
        self._next(record, PULL_SYNC)

    def _pull_sync(self, record: PodRecord) -> None:
        """Pull again once the back-off since the last failed pull has passed."""
        assert record.view is not None and record.backoff is not None
        record.view.waiting = record.reason
        self._publish(record, "Pending")
        if not record.backoff.in_backoff_since_update(asyncio.get_running_loop().time()):
            self._enter(record, PULL)
            return
        for container in record.pod.spec.containers:
            message = f'Back-off pulling image "{container.image}"'
            self._event(record, "BackOff", message, container.name)
            self._event(record, "Failed", "Error: ImagePullBackOff", container.name, "Warning")
        image = record.pod.spec.containers[0].image if record.pod.spec.containers else ""
        record.reason = ("ImagePullBackOff", f'Back-off pulling image "{image}"')
        self._next(record, PULL_SYNC)

    def _terminate(self, record: PodRecord) -> None:
        """Deletion observed: the Go kubelet's sequence, each step timed from now."""
        record.terminating = True
        record.cancel_timers()
        stop = self.profile.stop
        if record.phase in TERMINAL:
            self._next(record, RECLAIMED_AT_ONCE)
            return
        for container in record.pod.spec.containers:
            self._event(record, "Killing", f"Stopping container {container.name}",
                        container.name)
        for offset in stop.resyncs:
            self._later(record, offset, RESYNC)
        if stop.generation_write is not None:
            self._next(record, REGENERATED)
        self._next(record, KILLED)
        self._next(record, RECLAIMED)

    def _killed(self, record: PodRecord) -> None:
        record.times.finished = objects.now_seconds()
        self._release_ip(record)
        view = record.view
        if view is not None:
            # A deleted pod is not restarted: no reason from the last sync is shown.
            view.waiting = record.reason = None
            if view.running_since:
                view.exited = [*view.exited[-1:], Exited(
                    0, "Completed", view.running_since, record.times.finished,
                    view.restart_count)]
                view.running_since = ""
                record.exit_code = 0
        self._set_status(record, "Terminated")

    def _regenerate(self, record: PodRecord) -> None:
        """The status again, for the pod's new generation (its deletion bumped it)."""
        if record.view is not None:
            self._publish(record, record.phase, force=True)
        else:
            self._set_status(record, record.phase)

    def _resync(self, record: PodRecord) -> None:
        """The pod worker syncs a terminating pod again: same status, new version."""
        self._bump(record)

    def _reclaimed(self, record: PodRecord) -> None:
        """Volumes are gone: the status manager may now delete the pod."""
        record.deletable = True
        self.channel.append((record.uid, record.version, record.status))
        self._wake.set()

    def deleted(self, uid: str) -> None:
        """The pod is gone from the apiserver (our DELETE, or a 404): forget it, and
        ignore its events still on their way. Tombstones expire (``GONE_TTL``): one that
        waited for a DELETED event already past (an update after it had re-admitted the
        pod, whose next status write found it gone) stayed for the life of the node."""
        if uid in self.pods:
            self._forget(uid)
            self._tombstone(uid)

    def _tombstone(self, uid: str) -> None:
        now = time.monotonic()
        self.gone.pop(uid, None)  # renewed at the end: the dict stays in expiry order
        self.gone[uid] = now + GONE_TTL
        self._expire_tombstones(now)

    def _expire_tombstones(self, now: float) -> None:
        expired = [uid for uid, _ in itertools.takewhile(lambda item: item[1] <= now,
                                                         self.gone.items())]
        for uid in expired:
            del self.gone[uid]

    def _forget(self, uid: str) -> None:
        record = self.pods.pop(uid, None)
        self.synced_versions.pop(uid, None)
        if record is None:
            return
        record.cancel_timers()
        self._release_ip(record)
        refs = self.refs.pop(uid, set())
        if refs and self.on_refs:
            self.on_refs(set(), refs)

    def _release_ip(self, record: PodRecord) -> None:
        if record.holds_ip:
            record.holds_ip = False
            self.ipam.release(record.ip)

    # -- stages: when they come, and whether they apply ----------------------------------
    def _next(self, record: PodRecord, stage: Stage) -> None:
        """Ask for ``stage`` after its delay (at once, if it has none)."""
        if self._in_shared_runtime(stage):
            self._in_runtime(record, stage)
            return
        delay = self._delay(stage, record)
        if delay is None:
            self._enter(record, stage)
        else:
            self._later(record, delay, stage)

    def _later(self, record: PodRecord, delay: float, stage: Stage) -> None:
        if delay != delay:  # NaN: never
            return
        loop = asyncio.get_running_loop()
        record.timers.append(loop.call_later(max(0.0, delay), self._enter, record, stage))

    def _in_shared_runtime(self, stage: Stage) -> bool:
        """Whether ``stage`` waits for a shared runtime: the start's work does; the relist
        after a start only when the sync asks for it and it costs the runtime time."""
        start = self.profile.start
        if not start.runtime_slots or stage.after not in RUNTIME_WORK:
            return False
        if stage.after == "relist after start":
            return start.relist_on_sync and start.relist_work is not None
        return True

    def _in_runtime(self, record: PodRecord, stage: Stage) -> None:
        """A runtime stage on a node whose runtime is shared: the pod waits for its volumes
        (and its plan's slow start), then its work joins the runtime's other pods, and
        ``stage`` comes when the work is done (in a queue, what follows the queued part
        once that is done)."""
        start = self.profile.start
        wait = self._volumes_wait(record) if stage.after.startswith("volumes") else 0.0
        queued = start.runtime_order == "queue"
        delays = RUNTIME_WORK[stage.after]
        work = self._runtime_work(d for d in delays if not queued or d in QUEUED_WORK)
        then = self._runtime_work(d for d in delays if queued and d not in QUEUED_WORK)
        if stage.after == "relist after start":  # the relist, then the status write
            then += start.status_delay
        if queued and not any(d in QUEUED_WORK for d in delays):
            self._later(record, wait + then, stage)
            return
        runtime = self._shared_runtime(start.runtime_slots or 1, start.runtime_order)
        done = partial(self._later, record, then, stage) if then else \
            partial(self._enter, record, stage)

        def submit() -> None:
            record.timers.append(runtime.submit(work, done))
        record.timers.append(asyncio.get_running_loop().call_later(wait, submit))

    def _shared_runtime(self, slots: int, order: str) -> SharedRuntime | QueuedRuntime:
        kind = QueuedRuntime if order == "queue" else SharedRuntime
        if not isinstance(self.runtime, kind) or self.runtime.slots != slots:
            self.runtime = kind(slots)
        return self.runtime

    def _enter(self, record: PodRecord, stage: Stage) -> None:
        """``stage`` has come: it runs if it applies to the pod (a pod forgotten meanwhile
        is left alone too)."""
        if self.pods.get(record.uid) is record and stage.applies(record):
            getattr(self, "_" + stage.name)(record)

    def _delay(self, stage: Stage, record: PodRecord) -> float | None:
        """Seconds until ``stage`` (None: at once), as its ``after`` says: a field of the
        profile (``stop.kill_delay``), or one of these."""
        start = self.profile.start
        match stage.after:
            case "start.first_sync" | "start.containers_delay":  # without one, at once
                delay = attrgetter(stage.after)(self.profile)
                return None if delay is None else self._sample(delay)
            case "volumes":
                return self._volumes_wait(record)
            case "volumes + sandbox" | "volumes + sandbox + containers":  # then the runtime
                return self._volumes_wait(record) + self._runtime_work(RUNTIME_WORK[stage.after])
            case "relist":  # the next runtime relist, then the status write
                return self._start_delay()
            case "relist after start":  # the same, or a relist of this pod at once
                return start.status_delay if start.relist_on_sync else self._start_delay()
            case "run":  # how long the containers run
                return self._run_seconds(record)
            case "retry":  # a failed sync, requeued with jitter
                return self._retry_delay()
            case "flap":
                return record.plan.flap_period
        return attrgetter(stage.after)(self.profile)

    def _volumes_wait(self, record: PodRecord) -> float:
        """The volume poll finds the volumes mounted; then the plan's slow start."""
        return self._mount_delay(record.pod) + record.plan.start_delay

    def _runtime_work(self, delays: Iterable[str]) -> float:
        """The runtime's seconds for these of its delays (``RUNTIME_WORK``), drawn."""
        start = self.profile.start
        return sum(self._sample(getattr(start, delay)) for delay in delays)

    def _sample(self, delay: float | Distribution | None) -> float:
        """Seconds of a profile's delay: none, a number, or drawn from a distribution."""
        if delay is None:
            return 0.0
        return failures.sample(delay, self.rng) if isinstance(delay, Distribution) else delay

    def _set_status(self, record: PodRecord, phase: str) -> None:
        record.phase = phase
        if record.view is not None:
            self._publish(record, phase, force=True)
            return
        record.status = objects.pod_status(record.pod, phase, record.times, self.host_ip,
                                           record.ip, exit_code=record.exit_code,
                                           exit_reason=record.exit_reason,
                                           fields=self._fields,
                                           terminal=self.profile.stop.terminal_phase)
        self._bump(record)

    def _publish(self, record: PodRecord, phase: str, *, force: bool = False) -> None:
        """A failing pod's status from its view; a new version only when it changed, as
        the status manager ignores an equal status."""
        view = record.view
        assert view is not None
        record.phase = phase
        if phase == "Terminated":
            policy = record.pod.spec.restartPolicy
            phase = "Running" if policy == "Always" and not self.profile.stop.terminal_phase \
                else ("Succeeded" if record.exit_code == 0 else "Failed")
        ready = view.ready and bool(view.running_since)
        if ready != record.last_ready:
            record.last_ready = ready
            record.ready_changed = objects.now_seconds()
        status = objects.pod_status(record.pod, phase, record.times, self.host_ip, record.ip,
                                    view=view, ready_changed=record.ready_changed,
                                    fields=self._fields)
        if force or status != record.status:
            record.status = status
            self._bump(record)

    def _bump(self, record: PodRecord) -> None:
        record.version += 1
        self.channel.append((record.uid, record.version, record.status))
        self._wake.set()

    # -- status manager ------------------------------------------------------------------
    def needs_update(self, uid: str, version: int) -> bool:
        record = self.pods.get(uid)
        if record is None:
            return False
        # no synced version: never written, or forgotten by a reconcile (an adopted pod's
        # version is 0)
        return self.synced_versions.get(uid, -1) < version or record.deletable

    async def run_status_manager(self) -> None:
        loop = asyncio.get_running_loop()
        next_batch = loop.time() + BATCH_PERIOD * random.random()
        while True:
            await self.up.wait()
            if not self.channel:
                self._wake.clear()
                # a timeout scope, not wait_for: no task per wait, and this waits once
                # for every status a pod goes through
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(next_batch):
                        await self._wake.wait()
            if loop.time() >= next_batch:
                next_batch = loop.time() + BATCH_PERIOD
                self.channel.clear()
                self._expire_tombstones(time.monotonic())
                for record in list(self.pods.values()):
                    if self.needs_update(record.uid, record.version):
                        await self._sync(record.uid, record.version, record.status)
            elif self.channel:
                await self._sync(*self.channel.popleft())

    def _mark_synced(self, record: PodRecord, version: int) -> None:
        """Only for a pod still known: one forgotten while its status was being written
        (a DELETED event during the GET or PATCH) would otherwise leave its entry behind
        for the life of the node."""
        if self.pods.get(record.uid) is record:
            self.synced_versions[record.uid] = max(version,
                                                   self.synced_versions.get(record.uid, 0))

    async def _sync(self, uid: str, version: int, status: dict[str, Any]) -> None:
        if not self.needs_update(uid, version):
            return
        record = self.pods[uid]
        try:
            current = await self.client.object("GET", record.path,
                                               fields=("metadata.uid", "status"))
            if current.get("metadata", {}).get("uid") != uid:
                return
            patch = objects.status_patch(current.get("status") or {}, status) if status else {}
            if patch:
                await self.client.patch(record.path + "/status",
                                        {"metadata": {"uid": uid}, "status": patch},
                                        as_json=False)
            self._mark_synced(record, version)
            if record.deletable and uid in self.pods:
                await self.client.delete(record.path, {
                    "apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                    "preconditions": {"uid": uid},
                }, as_json=False)
                self.deleted(uid)
                if self.profile.stop.confirm_after is not None:
                    asyncio.get_running_loop().call_later(
                        self.profile.stop.confirm_after,
                        lambda: self._spawn(self._confirm_gone(record)))
        except ApiError as exc:
            if exc.not_found or exc.conflict:
                if exc.not_found:
                    self.deleted(uid)
                return
            log.debug("%s: status of %s: %s", self.node_name, record.path, exc)
        except (*NETWORK_ERRORS, ValueError) as exc:  # ValueError: an answer not decodable
            log.debug("%s: status of %s: %r", self.node_name, record.path, exc)

    async def _confirm_gone(self, record: PodRecord) -> None:
        """The Go kubelet reads a deleted pod once more (and gets 404)."""
        try:
            await self.client.get(record.path)
        except (ApiError, *NETWORK_ERRORS):
            pass

    # -- side requests: events and service-account tokens ---------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _event(self, record: PodRecord, reason: str, message: str, container: str,
               kind: str = "Normal") -> None:
        if self.events is None:
            return
        meta = record.pod.metadata
        involved = {"apiVersion": "v1", "kind": "Pod", "namespace": meta.namespace,
                    "name": meta.name, "uid": meta.uid,
                    "fieldPath": f"spec.containers{{{container}}}"}
        body = objects.event(meta.namespace, involved, reason, message, "kubelet",
                             self.node_name, kind)
        self._spawn(self._post(self.events, f"/api/v1/namespaces/{meta.namespace}/events", body))

    def _request_tokens(self, record: PodRecord) -> None:
        pod = record.pod
        for volume in pod.spec.volumes:
            if not volume.projected:
                continue
            for source in volume.projected.sources:
                token = source.serviceAccountToken
                if token is None:
                    continue
                account = pod.spec.serviceAccountName or "default"
                body = {
                    "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                    "spec": {
                        "audiences": [token.audience] if token.audience else [],
                        "expirationSeconds": token.expirationSeconds,
                        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                           "name": pod.metadata.name, "uid": pod.metadata.uid},
                    },
                }
                path = (f"/api/v1/namespaces/{pod.metadata.namespace}/serviceaccounts/"
                        f"{account}/token")
                self._spawn(self._request_token(record, path, body))

    async def _request_token(self, record: PodRecord, path: str, body: dict[str, Any]) -> None:
        """POST a TokenRequest; renew it as the kubelet's token manager does, once 80 %
        of the requested lifetime is left behind (or after 24 h). A refusal is retried
        as the volume manager retries a failed mount (0.5 s doubling to ~2 min): the
        Node authorizer may not yet link a just-bound pod's service account to us."""
        delay = TOKEN_RETRY_INITIAL
        while True:
            try:
                answer = await self.client.object("POST", path, body=body)
                break
            except (ApiError, *NETWORK_ERRORS, ValueError) as exc:
                log.debug("%s: POST %s: %r", self.node_name, path, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, TOKEN_RETRY_CAP)
            if record.terminating or self.pods.get(record.uid) is not record:
                return
        if record.terminating or self.pods.get(record.uid) is not record:
            return
        expires = (answer.get("status") or {}).get("expirationTimestamp", "")
        delay = token_refresh_delay(body["spec"]["expirationSeconds"], expires)
        record.timers.append(asyncio.get_running_loop().call_later(
            delay, lambda: self._spawn(self._request_token(record, path, body))))

    async def _post(self, client: Client, path: str, body: dict[str, Any]) -> None:
        try:
            await client.create(path, body, as_json=False)
        except (ApiError, *NETWORK_ERRORS) as exc:
            log.debug("%s: POST %s: %r", self.node_name, path, exc)

    async def close(self) -> None:
        for record in self.pods.values():
            record.cancel_timers()
        for task in list(self._background):
            task.cancel()
