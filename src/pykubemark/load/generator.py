"""Drive a scenario's phases against a cluster: create, scale and delete objects at a
pace counted in pods, and wait until the cluster says they are Running (or gone).

Waiting reads the workloads' own status (Deployment readyReplicas, DaemonSet
numberReady, Job active/succeeded) with LISTs served from the apiserver's cache, so
60 000 pods cost a few thousand small objects per check, not 60 000 pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from pykubemark import contract
from pykubemark.errors import UserError
from pykubemark.kube.client import NETWORK_ERRORS, ApiError, Client
from pykubemark.load import templates
from pykubemark.load.scenario import (
    MAX_OBJECTS,
    POD_KINDS,
    SECONDS_PER_POD,
    ObjectSpec,
    Phase,
    Scenario,
    Values,
)
from pykubemark.load.templates import GROUP_LABEL, RUN_LABEL, SPEC_LABEL
from pykubemark.waiting import ReadyCount

log = logging.getLogger(__name__)
MAX_IN_FLIGHT = 64
POLL = 2.0


class LoadError(Exception):
    """The load could not be applied (an API call refused, a wait timed out)."""


# -- what the cluster says ---------------------------------------------------------------
class _Meta(msgspec.Struct):
    name: str = ""
    namespace: str = ""
    generation: int = 0
    labels: dict[str, str] = {}


class _Spec(msgspec.Struct):
    replicas: int | None = None
    completions: int | None = None
    parallelism: int | None = None


class _WorkloadStatus(msgspec.Struct):
    observedGeneration: int = 0
    replicas: int = 0
    readyReplicas: int = 0
    updatedReplicas: int = 0
    desiredNumberScheduled: int = 0
    numberReady: int = 0
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    phase: str = ""


class _Workload(msgspec.Struct):
    metadata: _Meta = msgspec.field(default_factory=_Meta)
    spec: _Spec = msgspec.field(default_factory=_Spec)
    status: _WorkloadStatus = msgspec.field(default_factory=_WorkloadStatus)


class _List(msgspec.Struct):
    items: list[_Workload] = []
    metadata: dict[str, Any] = {}


_list_decoder = msgspec.json.Decoder(_List)
LIST_PATHS = {
    "Deployment": "/apis/apps/v1/deployments",
    "DaemonSet": "/apis/apps/v1/daemonsets",
    "Job": "/apis/batch/v1/jobs",
    "Pod": "/api/v1/pods",
}


def pods_ready(kind: str, obj: _Workload) -> tuple[int, int]:
    """(pods wanted Running, pods Running) of one workload, from its status."""
    status = obj.status
    if kind == "Deployment":
        wanted = obj.spec.replicas if obj.spec.replicas is not None else 1
        current = status.observedGeneration >= obj.metadata.generation
        ready = status.readyReplicas if current and status.replicas == wanted else min(
            status.readyReplicas, wanted - 1)
        return wanted, max(0, min(ready, wanted))
    if kind == "DaemonSet":
        wanted = status.desiredNumberScheduled
        return wanted, min(status.numberReady, wanted) if wanted else 0
    if kind == "Job":
        wanted = obj.spec.parallelism or 1
        return wanted, min(wanted, status.active + status.succeeded + status.failed)
    return 1, int(status.phase in ("Running", "Succeeded"))


def job_done(obj: _Workload) -> tuple[int, int]:
    wanted = obj.spec.completions or 1
    return wanted, min(wanted, obj.status.succeeded + obj.status.failed)


# -- bookkeeping -------------------------------------------------------------------------
@dataclass
class Progress:
    """What the terminal shows: counted in pods, like the pace."""

    phase: str = ""
    pods_to_create: int = 0
    pods_created: int = 0
    pods_running: int = 0
    pods_wanted: int = 0
    to_delete: int = 0
    deleted: int = 0
    waiting: str = ""
    objects: dict[str, int] = field(default_factory=dict)


@dataclass
class Planned:
    kind: str
    namespace: str
    name: str
    body: dict[str, Any]
    pods: int


class Pacer:
    """A uniform pace in pods per second: an object of ``weight`` pods may go once the
    ones before it have had their share of time; objects without pods go at once."""

    def __init__(self, qps: float) -> None:
        self.qps = qps
        self._next = time.monotonic()

    async def wait(self, weight: int) -> None:
        if self.qps <= 0 or weight <= 0:
            return
        now = time.monotonic()
        self._next = max(self._next, now)
        delay = self._next - now
        self._next += weight / self.qps
        if delay > 0:
            await asyncio.sleep(delay)


class LoadGenerator:
    def __init__(self, client: Client, scenario: Scenario, values: Values, *, run_id: str,
                 test: str, node_selector: dict[str, str] | None = None,
                 nodes: int = 0) -> None:
        self.client = client
        self.scenario = scenario
        self.values = values
        self.run_id = run_id
        self.test = test
        self.node_selector = node_selector or {}
        self.nodes = nodes
        self.namespaces = [f"{test}-{run_id}-{i}"
                           for i in range(values.integer(values.names["namespaces"],
                                                         "namespaces"))]
        self.progress = Progress()
        #: (kind, namespace, name) -> pods, of every workload this run created
        self.created: dict[tuple[str, str, str], int] = {}
        #: (namespace, name) of the Deployments an HPA scales (a scale phase leaves them).
        self.autoscaled: set[tuple[str, str]] = set()
        self.namespaces_created: list[str] = []
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._errors: list[str] = []

    # -- namespaces --------------------------------------------------------------------
    async def create_namespaces(self) -> None:
        """Namespaces first, each ready for pods before any is created: its default
        service account (and, before 1.24, that account's token secret) and its
        ``kube-root-ca.crt``, which every pod's token volume mounts. Without them pods
        are refused or wait for their volumes, which would skew pod start-up."""
        for name in self.namespaces:
            await self._call("POST", "/api/v1/namespaces", templates.namespace(name, self.run_id))
            self.namespaces_created.append(name)
        token_secrets = await self._token_secrets()
        deadline = time.monotonic() + 120
        pending = list(self.namespaces)
        while pending:
            self.progress.waiting = f"service accounts of {len(pending)} namespaces"
            pending = [name for name in pending
                       if not await self._namespace_ready(name, token_secrets)]
            if pending:
                if time.monotonic() > deadline:
                    raise LoadError(f"namespaces {pending[:3]} not ready for pods in 120 s (no "
                                    "service account or root CA): is the controller-manager "
                                    "running?")
                await asyncio.sleep(0.5)
        self.progress.waiting = ""

    async def _token_secrets(self) -> bool:
        """Whether the cluster still gives service accounts token secrets (before 1.24)."""
        try:
            version = msgspec.json.decode(await self.client.get("/version"))
            minor = int("".join(c for c in str(version.get("minor", "99")) if c.isdigit()))
        except (ApiError, ValueError, msgspec.DecodeError):
            return False
        return minor < 24

    async def _namespace_ready(self, name: str, token_secrets: bool) -> bool:
        base = f"/api/v1/namespaces/{name}"
        try:
            account = msgspec.json.decode(await self.client.get(f"{base}/serviceaccounts/default"))
            if token_secrets:
                return bool(account.get("secrets"))
            await self.client.get(f"{base}/configmaps/kube-root-ca.crt")
        except ApiError as exc:
            if not exc.not_found:
                raise LoadError(f"GET {base}: {exc}") from None
            return False
        return True

    # -- phases ------------------------------------------------------------------------
    def plan(self, phase: Phase) -> list[Planned]:
        """The objects a phase creates, in creation order: for each entry, per namespace,
        its ConfigMap and Secret, its workload, its Service."""
        planned: list[Planned] = []
        for spec in phase.create:
            planned += self._plan_spec(phase, spec)
        return planned

    def _plan_spec(self, phase: Phase, spec: ObjectSpec) -> list[Planned]:
        where = f"phases.{phase.name}.create.{spec.name}"
        values = self.values
        count = values.integer(spec.count, f"{where}.count")
        limit = (values.integer(spec.namespaces, f"{where}.namespaces")
                 if spec.namespaces is not None else len(self.namespaces))
        fraction = values.number(spec.service, f"{where}.service")
        autoscaled = values.number(spec.hpa, f"{where}.hpa") if spec.kind == "Deployment" \
            else 0.0
        target = values.integer(spec.hpa_target, f"{where}.hpa_target")
        run_seconds = (values.number(spec.run_seconds, f"{where}.run_seconds")
                       if spec.run_seconds is not None else None)
        objects = max(0, count) * len(self.namespaces[:max(0, limit)]) * (1 + 3 * spec.config)
        if objects > MAX_OBJECTS:
            raise UserError(f"{values.where}: field '{where}.count': {objects} objects, more "
                            f"than {MAX_OBJECTS} in one phase")
        labels = {RUN_LABEL: self.run_id, GROUP_LABEL: spec.group, SPEC_LABEL: spec.name}
        out = []
        for namespace in self.namespaces[:max(0, limit)]:
            for i in range(max(0, count)):
                name = f"{spec.name}-{i}"
                replicas = max(0, values.integer(spec.replicas, f"{where}.replicas", i=i))
                with_hpa = math.floor((i + 1) * autoscaled) > math.floor(i * autoscaled)
                if spec.config:
                    out.append(Planned("ConfigMap", namespace, name,
                                       templates.config_map(name, labels), 0))
                    out.append(Planned("Secret", namespace, name,
                                       templates.secret(name, labels), 0))
                if spec.kind in POD_KINDS:
                    body = templates.workload(
                        spec.kind, name, replicas=replicas, labels=labels,
                        image=self.scenario.image, config=spec.config,
                        node_selector=self.node_selector, run_seconds=run_seconds,
                        annotations=self._failure_annotations(spec),
                        cpu_request=templates.HPA_CPU_REQUEST if with_hpa else None)
                    pods = {"DaemonSet": self.nodes, "Pod": 1}.get(spec.kind, replicas)
                    out.append(Planned(spec.kind, namespace, name, body, pods))
                    if with_hpa:
                        self.autoscaled.add((namespace, name))
                        out.append(Planned("HorizontalPodAutoscaler", namespace, name,
                                           templates.hpa(name, labels, replicas=replicas,
                                                         target=target), 0))
                elif spec.kind == "Service":
                    out.append(Planned("Service", namespace, name,
                                       templates.service(name, labels), 0))
                elif spec.kind == "ConfigMap" and not spec.config:
                    out.append(Planned(spec.kind, namespace, name,
                                       templates.config_map(name, labels), 0))
                elif spec.kind == "Secret" and not spec.config:
                    out.append(Planned(spec.kind, namespace, name,
                                       templates.secret(name, labels), 0))
                if spec.kind != "Service" and math.floor((i + 1) * fraction) > math.floor(
                        i * fraction):
                    out.append(Planned("Service", namespace, name,
                                       templates.service(name, labels), 0))
        return out

    def _failure_annotations(self, spec: ObjectSpec) -> dict[str, str]:
        """The scenario's failure for this entry's pods, as the hollow nodes read it."""
        for index, failure in enumerate(self.scenario.failures):
            if not failure.matches(spec):
                continue
            where = f"failures[{index}]"
            weight = self.values.number(failure.weight, f"{where}.weight")
            if not 0 <= weight <= 1:
                raise UserError(f"{self.values.where}: field '{where}.weight': {weight} is "
                                f"not between 0 and 1")
            out = {contract.FAILURE_ANNOTATION: failure.failure,
                   contract.FAILURE_WEIGHT_ANNOTATION: f"{weight:g}"}
            if failure.exit_code is not None:
                out[contract.EXIT_CODE_ANNOTATION] = str(failure.exit_code)
            for name, key in (("run_seconds", contract.RUN_SECONDS_ANNOTATION),
                               ("start_delay", contract.START_DELAY_ANNOTATION),
                               ("flap_period", contract.FLAP_ANNOTATION)):
                value = getattr(failure, name)
                if value is not None:
                    out[key] = f"{self.values.number(value, f'{where}.{name}'):g}"
            return out
        return {}

    def check(self) -> None:
        """Every expression of every phase evaluated once, as the run will evaluate it:
        a mistake anywhere is refused before anything is created."""
        for phase in self.scenario.phases:
            pods = sum(p.pods for p in self.plan(phase))
            self.qps(phase)
            self.values.number(phase.timeout, f"phases.{phase.name}.timeout", pods=pods)
            self.values.number(phase.hold, f"phases.{phase.name}.hold")
            for spec in phase.scale:
                self.values.number(spec.factor, f"phases.{phase.name}.scale.factor")

    def qps(self, phase: Phase) -> float:
        value = phase.qps if phase.qps is not None else self.values.names.get("qps", 0)
        return self.values.number(value, f"phases.{phase.name}.qps")

    async def run_phase(self, phase: Phase) -> dict[str, int]:
        """Apply one phase and wait as it says; return objects touched per kind."""
        self.progress = Progress(phase=phase.name)
        touched: dict[str, int] = {}
        pacer = Pacer(self.qps(phase))
        planned = self.plan(phase)
        self.progress.pods_to_create = sum(p.pods for p in planned)
        tasks: list[asyncio.Task[None]] = []
        for item in planned:
            await pacer.wait(item.pods)
            await self._in_flight.acquire()
            tasks.append(asyncio.create_task(self._create(item)))
            touched[item.kind] = touched.get(item.kind, 0) + 1
        # what this phase deletes counts for its wait as what it creates does: 60 000
        # pods take the control plane as long to remove as to start
        removed = pods_removed(self.created, phase)
        if phase.scale:
            touched["scaled"] = await self._scale(phase, pacer)
        if phase.delete:
            touched["deleted"] = await self._delete(phase, pacer)
        if tasks:
            await asyncio.gather(*tasks)
        self._raise_errors()
        if phase.delete_all:
            await self.delete_namespaces()
        pods = sum(p.pods for p in planned) + removed
        timeout = self.values.number(phase.timeout, f"phases.{phase.name}.timeout", pods=pods)
        if phase.wait == "running":
            await self.wait_running(timeout)
        elif phase.wait == "complete":
            await self.wait_running(timeout, complete=True)
        elif phase.wait == "gone":
            await self.wait_gone(phase, timeout)
        hold = self.values.number(phase.hold, f"phases.{phase.name}.hold")
        if hold > 0:
            self.progress.waiting = f"holding {hold:g} s"
            await asyncio.sleep(hold)
            self.progress.waiting = ""
        self.progress.objects = touched
        return touched

    async def _create(self, item: Planned) -> None:
        try:
            await self._call("POST", templates.collection(item.kind, item.namespace),
                             item.body)
            if item.kind in POD_KINDS:
                self.created[(item.kind, item.namespace, item.name)] = item.pods
                self.progress.pods_created += item.pods
        except LoadError as exc:
            self._errors.append(str(exc))
        finally:
            self._in_flight.release()

    async def _scale(self, phase: Phase, pacer: Pacer) -> int:
        scaled = 0
        for spec in phase.scale:
            for key, replicas in list(self.created.items()):
                kind, namespace, name = key
                if kind != "Deployment" or not name.startswith(spec.name):
                    continue
                if (namespace, name) in self.autoscaled:
                    continue  # its HPA sets its replicas
                factor = self.values.number(spec.factor, f"phases.{phase.name}.scale.factor")
                target = max(0, round(replicas * factor))
                await pacer.wait(abs(target - replicas))
                path = f"{templates.collection(kind, namespace)}/{name}"
                await self._call("PATCH", path, {"spec": {"replicas": target}},
                                 content_type="application/merge-patch+json")
                self.created[key] = target
                scaled += 1
        return scaled

    async def _delete(self, phase: Phase, pacer: Pacer) -> int:
        deleted = 0
        targets = [(key, pods) for key, pods in self.created.items()
                   if deletes(phase, key)]
        self.progress.to_delete = len(targets)
        for (kind, namespace, name), pods in targets:
            await pacer.wait(pods)
            path = f"{templates.collection(kind, namespace)}/{name}"
            with contextlib.suppress(LoadError):
                await self._call("DELETE", path, {"propagationPolicy": "Background"},
                                 missing_ok=True)
            del self.created[(kind, namespace, name)]
            deleted += 1
            self.progress.deleted = deleted
        return deleted

    # -- waiting -----------------------------------------------------------------------
    async def _workloads(self, kind: str) -> list[_Workload]:
        params = {"labelSelector": f"{RUN_LABEL}={self.run_id}", "resourceVersion": "0"}
        try:
            return _list_decoder.decode(await self.client.get(LIST_PATHS[kind], params)).items
        except (ApiError, *NETWORK_ERRORS) as exc:
            log.debug("LIST %s: %r", kind, exc)
            return []

    async def count_running(self, complete: bool = False) -> tuple[int, int]:
        wanted = ready = 0
        kinds = {key[0] for key in self.created}
        for kind in kinds:
            for obj in await self._workloads(kind):
                key = (kind, obj.metadata.namespace, obj.metadata.name)
                if key not in self.created:
                    continue
                w, r = job_done(obj) if complete and kind == "Job" else pods_ready(kind, obj)
                wanted += w
                ready += r
        return wanted, ready

    async def wait_running(self, timeout: float, complete: bool = False) -> None:
        self.progress.waiting = "pods complete" if complete else "pods Running"
        waiting = ReadyCount(self.progress.waiting, timeout=timeout)
        while True:
            wanted, ready = await self.count_running(complete)
            self.progress.pods_wanted, self.progress.pods_running = wanted, ready
            if waiting.done(ready, wanted):
                break
            if line := waiting.overdue():
                raise LoadError(f"phase {self.progress.phase}: {line}")
            await asyncio.sleep(POLL)
        self.progress.waiting = ""

    async def remaining_pods(self, selector: str) -> int:
        params = {"labelSelector": selector, "resourceVersion": "0"}
        try:
            body = await self.client.get("/api/v1/pods", params)
        except (ApiError, *NETWORK_ERRORS):
            return -1
        return len(_list_decoder.decode(body).items)

    async def pods_in(self, namespaces: list[str]) -> int:
        """Pods left in these namespaces, counted without listing them: a LIST with
        ``limit=1`` and no selector carries ``remainingItemCount`` (etcd counts the keys),
        where a label-selected LIST would send every pod of a 60 000-pod run each poll."""
        total = 0
        for name in namespaces:
            try:
                body = _list_decoder.decode(await self.client.get(
                    f"/api/v1/namespaces/{name}/pods", {"limit": "1"}))
            except (ApiError, *NETWORK_ERRORS):
                return -1
            total += len(body.items) + int(body.metadata.get("remainingItemCount") or 0)
        return total

    async def wait_gone(self, phase: Phase, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        names = ",".join(sorted({spec.name for spec in phase.delete}))
        selector = f"{RUN_LABEL}={self.run_id},{SPEC_LABEL} in ({names})"
        self.progress.waiting = "pods gone"
        while True:
            if phase.delete_all:
                # a namespace is gone only once its pods are; pods of the run outside
                # its own namespaces are listed once those are gone
                namespaces = await self.remaining_namespaces()
                left = (await self.pods_in(namespaces) if namespaces
                        else await self.remaining_pods(f"{RUN_LABEL}={self.run_id}"))
            else:
                namespaces, left = [], await self.remaining_pods(selector)
            self.progress.pods_running = max(0, left)
            if left == 0 and not namespaces:
                break
            if time.monotonic() > deadline:
                raise LoadError(f"phase {phase.name}: {left} pods and {len(namespaces)} "
                                f"namespaces still there after {timeout:.0f} s")
            await asyncio.sleep(POLL)
        self.progress.waiting = ""

    # -- cleanup -----------------------------------------------------------------------
    async def remaining_namespaces(self) -> list[str]:
        params = {"labelSelector": f"{RUN_LABEL}={self.run_id}"}
        body = msgspec.json.decode(await self.client.get("/api/v1/namespaces", params))
        return [item["metadata"]["name"] for item in body.get("items", [])]

    async def delete_namespaces(self) -> None:
        """Delete every namespace of the run, and with it everything the run made."""
        for name in await self.remaining_namespaces():
            await self._call("DELETE", f"/api/v1/namespaces/{name}",
                             {"propagationPolicy": "Background"}, missing_ok=True)
        self.created.clear()

    async def cleanup(self, timeout: float | None = None) -> list[str]:
        """Delete the run's namespaces and wait until they are gone (by default 300 s
        and 0.2 s per pod still in them); return what is still there when the time is
        up."""
        if timeout is None:
            timeout = 300.0 + sum(self.created.values()) * SECONDS_PER_POD
        await self.delete_namespaces()
        deadline = time.monotonic() + timeout
        self.progress = Progress(phase="cleanup", waiting="namespaces gone")
        while True:
            left = await self.remaining_namespaces()
            if not left or time.monotonic() > deadline:
                return left
            self.progress.pods_running = max(0, await self.pods_in(left))
            await asyncio.sleep(POLL)

    # -- plumbing ----------------------------------------------------------------------
    async def _call(self, method: str, path: str, body: Any, *,
                    content_type: str = "application/json", missing_ok: bool = False) -> None:
        for attempt in range(5):
            try:
                await self.client.request(method, path, body=body, content_type=content_type)
                return
            except ApiError as exc:
                if exc.status == 409 and method == "POST":
                    return  # already there (a retry of ours that had gone through)
                if exc.not_found and missing_ok:
                    return
                if exc.status < 500 and exc.status != 429:
                    raise LoadError(f"{method} {path}: {exc.status} {exc.message}") from None
                error: Exception = exc
            except NETWORK_ERRORS as exc:
                error = exc
            await asyncio.sleep(0.5 * 2 ** attempt)
        raise LoadError(f"{method} {path}: {error!r}")

    def _raise_errors(self) -> None:
        if self._errors:
            first, more = self._errors[0], len(self._errors) - 1
            self._errors.clear()
            raise LoadError(first + (f" (and {more} more)" if more else ""))


def deletes(phase: Phase, key: tuple[str, str, str]) -> bool:
    """Whether the phase's ``delete`` entries name the object (kind, namespace, name)."""
    kind, _, name = key
    return any(kind == spec.kind and name.startswith(spec.name) for spec in phase.delete)


def pods_removed(created: dict[tuple[str, str, str], int], phase: Phase) -> int:
    """Pods of the run's objects that the phase deletes (all of them for ``delete_all``)."""
    if phase.delete_all:
        return sum(created.values())
    return sum(pods for key, pods in created.items() if deletes(phase, key))


def progress_line(progress: Progress) -> str:
    parts = [progress.phase]
    if progress.pods_to_create:
        parts.append(f"created {progress.pods_created}/{progress.pods_to_create} pods")
    if progress.pods_wanted:
        parts.append(f"Running {progress.pods_running}/{progress.pods_wanted}")
    if progress.waiting:
        parts.append(f"waiting for {progress.waiting}")
    return ", ".join(parts)


ProgressCallback = Callable[[Progress], None]
