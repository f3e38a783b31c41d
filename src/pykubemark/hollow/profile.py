"""How a hollow node behaves, as data: watches, periods, capacities, delays, fidelity.

The struct's defaults are kubelet 1.20's (measured against the Go kubemark 1.20); what a
later release does differently comes from its file in `pykubemark.profiles`, chosen by
the cluster's version; a YAML file (``--profile``) and command-line options go on top, so
another kubelet's behaviour needs data, not code.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from pykubemark.contract import NO_FAILURE, POD_FAILURES, NodeFailure
from pykubemark.errors import UserError, read_yaml_mapping
from pykubemark.profiles import merge, release_profile
from pykubemark.provision.releases import Release

KUBE_VERSION = "v1.20.2"
#: What later kubelets add to a pod's status (written by hollow/objects.py).
POD_STATUS_FIELDS = frozenset(("PodReadyToStartContainers", "PodSandboxReason",
                               "observedGeneration", "hostIPs", "volumeMounts"))


class WatchSpec(msgspec.Struct, forbid_unknown_fields=True):
    """One informer (or a collection request): a path and its selectors; ``{node}`` in a
    selector is the node's name."""

    path: str
    field_selector: str = ""
    label_selector: str = ""

    def params(self, node: str) -> dict[str, str]:
        params = {}
        if self.field_selector:
            params["fieldSelector"] = self.field_selector.replace("{node}", node)
        if self.label_selector:
            params["labelSelector"] = self.label_selector.replace("{node}", node)
        return params

    def shared_params(self) -> dict[str, str]:
        """For one watch shared by every node of a process (`lite`): the selectors that
        name a node are left out, so the one watch sees what all of them would."""
        params = {}
        if self.field_selector and "{node}" not in self.field_selector:
            params["fieldSelector"] = self.field_selector
        if self.label_selector and "{node}" not in self.label_selector:
            params["labelSelector"] = self.label_selector
        return params


#: kube-proxy's label selector on Services and Endpoints(Slices), 1.20.
PROXY_SELECTOR = "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name"


class Capacity(msgspec.Struct, forbid_unknown_fields=True):
    cpu: str = "1"
    memory: str = "3840Mi"
    pods: str = "110"
    ephemeral_storage: str = msgspec.field(default="0", name="ephemeral-storage")


RUNTIME_ORDERS = ("shared", "queue")


class StartProfile(msgspec.Struct, forbid_unknown_fields=True):
    """The Go kubelet's start sequence, with its delays (kubelet 1.20, kubemark's fake
    runtime), measured side by side by ``benchmarks/timestamps.py``:

    1. the first sync writes the Pending status: ``startTime``, ``Initialized`` and the
       not-ready conditions all carry the time the pod was seen;
    2. the pod worker waits for its volumes, polling every ``mount_retry_period``
       (``podAttachAndMountRetryInterval``, first poll at once) until they are mounted,
       ``mount_time`` after the pod was seen; a pod without volumes does not wait. The
       runtime then starts the containers: that instant is ``startedAt``;
    3. the next runtime relist (every ``relist_period``) notices the running container,
       and ``status_delay`` later the Running status is written: ``Ready`` and
       ``ContainersReady`` turn True at that instant.

    Measured on the Go kubemark (3 nodes, 30 pods, means of the second-precision
    fields): startTime − PodScheduled 0.13 s, startedAt − startTime 0.30 s (one volume
    poll: every pod has its service-account token volume), Ready − startedAt 0.70 s
    (half a relist period, then ``status_delay``).
    """

    relist_period: float = 1.0
    status_delay: float = 0.2
    #: Later kubelets (PLEGOnDemandRelist, on from 1.36): a sync that started containers
    #: asks the PLEG to relist that pod at once, so the Running status is written
    #: ``status_delay`` after the start rather than after the next periodic relist.
    relist_on_sync: bool = False
    mount_retry_period: float = 0.3
    mount_time: float = 0.1
    #: Later kubelets write the sandbox's readiness (PodReadyToStartContainers True) as a
    #: status of its own once it is ready, and start the containers then; False: no
    #: such status (1.20 to 1.35).
    sandbox_status: bool = False
    #: How long after the volumes are mounted the sandbox is ready (seconds, or a
    #: distribution: the runtime making the sandbox and its network); none: at once.
    sandbox_delay: float | Distribution | None = None
    #: After the sandbox, until the runtime has created and started the containers
    #: (``startedAt``): a real kubelet on containerd takes a while, the Go kubemark's
    #: fake runtime none. None: at once.
    containers_delay: Distribution | None = None
    #: How many pods the node's runtime makes at full speed at once; more share its time
    #: (processor sharing: with k pods in it, each advances at slots/k), and the two
    #: delays above are then each pod's work at full speed. None: each pod takes its
    #: delays as drawn, however many start at once (the Go kubemark's fake runtime).
    runtime_slots: int | None = None
    #: The runtime's own work for the relist of one pod that a sync asks for after
    #: starting its containers (``relist_on_sync``): on a shared runtime it waits its
    #: turn beside the pods still starting, so that Running is written late on a busy
    #: node and at once on an idle one, then ``status_delay`` after it. None: the relist
    #: takes no runtime time.
    relist_work: float | Distribution | None = None
    #: How the runtime's slots serve its pods (hollow/runtime.py): ``shared`` — the
    #: sandbox and the containers' work of every pod in it advance together (processor
    #: sharing); ``queue`` — the sandboxes one after another in the order the pods came
    #: (as the CNI plugins' lock makes them on a real node), the containers then started
    #: in parallel, each after its ``containers_delay``.
    runtime_order: str = "shared"
    #: Seconds from seeing a pod to its first sync and status write (admission, the pod
    #: worker's start): none by default. A node's GET of a pod it has just been handed
    #: races the Node authorizer's graph, which refuses it (403) until it links the pod.
    first_sync: Distribution | None = None
    #: When the volume manager asks for the pod's service-account tokens (TokenRequest),
    #: after the pod is seen. Asked too early, before the apiserver's Node authorizer
    #: links the pod to the node, it is refused (403) and retried.
    token_delay: float = 0.0
    #: Seconds a pod with restartPolicy Never/OnFailure runs before it succeeds;
    #: the annotation ``pykubemark.io/run-seconds`` overrides it per pod.
    job_run_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.runtime_slots is not None and self.runtime_slots < 1:
            raise ValueError("runtime_slots must be at least 1")
        if self.runtime_order not in RUNTIME_ORDERS:
            raise ValueError(f"runtime_order must be one of {', '.join(RUNTIME_ORDERS)}, "
                             f"not {self.runtime_order!r}")


class StopProfile(msgspec.Struct, forbid_unknown_fields=True):
    """Deletion as the Go kubemark 1.20 does it, measured side by side (seconds after
    the kubelet sees the deletion): a re-sync at once (GET, status unchanged), the
    containers killed and a terminated status written (GET + PATCH), another re-sync,
    volumes reclaimed and the pod deleted (GET + DELETE with grace period 0 and a uid
    precondition), then one last GET that finds it gone."""

    resyncs: list[float] = msgspec.field(default_factory=lambda: [0.0, 1.6])
    kill_delay: float = 0.6
    delete_after: float = 7.7
    confirm_after: float | None = 0.4
    #: Later kubelets write the deletion's new generation (observedGeneration) this long
    #: after they see it, before the kill; None: not written (1.20).
    generation_write: float | None = None
    #: A deleted pod ends Succeeded or Failed whatever its restartPolicy (since 1.27);
    #: False: a restartPolicy Always pod stays Running until deleted (1.20).
    terminal_phase: bool = False


class RegisterProfile(msgspec.Struct, forbid_unknown_fields=True):
    """What a kubelet does around registering its Node, beyond the POST itself (later
    releases, read off the real one's audit log): its components read the Node and the
    CSINode before they exist, its lease controller starts first, and its first status
    writes follow at once."""

    #: GETs (paths, ``{node}`` the node's name) made before the Node exists: each 404s.
    probes: list[str] = []
    #: The lease controller starts with the kubelet: its first try finds no Node to own
    #: the Lease (a GET of each, 404) and waits a renew period.
    lease_first: bool = False
    #: The first status sync right after registering; its informer does not have the
    #: Node yet, so it reads it with a GET before it writes.
    status_at_once: bool = False
    #: One more status write once the node is Ready (the kubelet's fast update).
    ready_write: bool = False
    #: The CSINode's creation starts with a GET of the Node.
    csinode_reads_node: bool = False


class NodeEvent(msgspec.Struct, forbid_unknown_fields=True):
    """An event about the Node at start-up; ``count`` > 1 is one create and then patches
    of its count, as the kubelet's event correlator sends repeats."""

    reason: str
    message: str
    count: int = 1


#: What a failure rule may say (pykubemark.contract's kinds, or that its pods do not fail).
FAILURES = (NO_FAILURE, *POD_FAILURES)


class Distribution(msgspec.Struct, forbid_unknown_fields=True):
    """Seconds drawn per pod: exactly one of ``fixed``, ``uniform: [low, high]`` or
    ``lognormal: {p50, p99}`` (the shape of measured start-up latencies)."""

    fixed: float | None = None
    uniform: list[float] | None = None
    lognormal: dict[str, float] | None = None

    def __post_init__(self) -> None:
        given = [k for k in ("fixed", "uniform", "lognormal") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a distribution takes exactly one of fixed, uniform, lognormal")
        if self.fixed is not None and self.fixed < 0:
            raise ValueError("fixed must be >= 0")
        if self.uniform is not None and (len(self.uniform) != 2
                                         or not 0 <= self.uniform[0] <= self.uniform[1]):
            raise ValueError("uniform must be [low, high] with 0 <= low <= high")
        if self.lognormal is not None:
            if set(self.lognormal) != {"p50", "p99"}:
                raise ValueError("lognormal takes exactly p50 and p99")
            if not 0 < self.lognormal["p50"] <= self.lognormal["p99"]:
                raise ValueError("lognormal needs 0 < p50 <= p99")


class FailureRule(msgspec.Struct, forbid_unknown_fields=True):
    """Which pods fail and how, KWOK-stages-like: pods matching ``namespaces`` (any, if
    empty) and every label in ``labels`` get this behaviour with probability ``weight``
    (chosen from the pod's uid, so a restarted fleet chooses the same pods)."""

    failure: str = NO_FAILURE
    weight: float = 1.0
    namespaces: list[str] = []
    labels: dict[str, str] = {}
    #: Exit code of a crashing container (default 1; 137 for oomkilled).
    exit_code: int | None = None
    #: How long a crashing container runs before it exits.
    run_seconds: Distribution | None = None
    #: Extra delay before the containers start (slow start), any failure kind.
    start_delay: Distribution | None = None
    #: unready: Ready flips every this many seconds (0: never Ready).
    flap_period: float = 0.0

    def __post_init__(self) -> None:
        if self.failure not in FAILURES:
            raise ValueError(f"failure must be one of {', '.join(FAILURES)}, "
                             f"not '{self.failure}'")
        if not 0 <= self.weight <= 1:
            raise ValueError(f"weight must be between 0 and 1, not {self.weight}")
        if self.flap_period < 0:
            raise ValueError("flap_period must be >= 0")


class FailureProfile(msgspec.Struct, forbid_unknown_fields=True):
    """Failures as data, with the kubelet 1.20 constants that shape them
    (pkg/kubelet/kubelet.go: ``backOffPeriod`` 10 s, ``MaxContainerBackOff`` 300 s; a
    failed pod worker is requeued after ``backOffPeriod`` with jitter 0.5)."""

    rules: list[FailureRule] = []
    backoff_initial: float = 10.0
    backoff_max: float = 300.0
    retry_period: float = 10.0
    retry_jitter: float = 0.5
    #: How long a failing image pull takes.
    pull_seconds: float = 1.0
    #: How long a crashing container runs by default.
    run_seconds: float = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.backoff_initial <= self.backoff_max:
            raise ValueError("failures need 0 < backoff_initial <= backoff_max")
        if self.retry_period <= 0 or self.retry_jitter < 0:
            raise ValueError("failures need retry_period > 0 and retry_jitter >= 0")


class UsageRule(msgspec.Struct, forbid_unknown_fields=True):
    """The usage of the pods matching ``namespaces`` (any, if empty) and every label in
    ``labels``: their requests times these factors. The first matching rule wins."""

    namespaces: list[str] = []
    labels: dict[str, str] = {}
    cpu_factor: float | None = None
    memory_factor: float | None = None

    def __post_init__(self) -> None:
        for name in ("cpu_factor", "memory_factor"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"usage: {name} must be >= 0")


class UsageProfile(msgspec.Struct, forbid_unknown_fields=True):
    """What a running container reports it uses, on the kubelet API's /metrics/resource
    (what metrics-server scrapes: `kubectl top`, HPAs) and /stats/summary. Nothing is
    measured: a hollow container uses what this says.

    A container's usage is its request times a factor: ``cpu_factor`` /
    ``memory_factor`` of the first of ``rules`` that matches the pod, else these; a factor
    of None is a share in [0.3, 0.9) stable per container (drawn from its pod's uid and
    its name). A container that requests nothing uses ``idle_cpu`` / ``idle_memory``
    divided by that share. The pod annotations ``pykubemark.io/cpu-usage`` and
    ``pykubemark.io/memory-usage`` (quantities, per container: ``250m``, ``64Mi``)
    override all of this for one pod.
    """

    cpu_factor: float | None = None
    memory_factor: float | None = None
    idle_cpu: str = "1m"
    idle_memory: str = "8Mi"
    rules: list[UsageRule] = []

    def __post_init__(self) -> None:
        for name in ("cpu_factor", "memory_factor"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"usage: {name} must be >= 0")

    def factors(self, namespace: str, labels: dict[str, str]
                ) -> tuple[float | None, float | None]:
        for rule in self.rules:
            if rule.namespaces and namespace not in rule.namespaces:
                continue
            if any(labels.get(k) != v for k, v in rule.labels.items()):
                continue
            return (rule.cpu_factor if rule.cpu_factor is not None else self.cpu_factor,
                    rule.memory_factor if rule.memory_factor is not None
                    else self.memory_factor)
        return self.cpu_factor, self.memory_factor


class Profile(msgspec.Struct, forbid_unknown_fields=True):
    fidelity: str = "kubelet"  # or "lite"
    kubelet_version: str = KUBE_VERSION
    capacity: Capacity = msgspec.field(default_factory=Capacity)
    extra_labels: dict[str, str] = {}
    lease_duration: int = 40
    lease_renew: float = 10.0
    lease_jitter: float = 0.04
    status_check: float = 10.0
    status_report: float = 300.0
    #: client-go's minWatchTimeout: each watch asks to end after 1–2× this (5 minutes).
    #: Shorter only for experiments (e.g. to reopen watches after an etcd compaction).
    min_watch_timeout: float = 300.0
    #: The kubelet's nodeStatusMaxImages: images reported in the Node's status.
    node_status_max_images: int = 50
    #: The Go hollow kubelet runs with enableControllerAttachDetach=false, so its Node has
    #: no ``volumes.kubernetes.io/controller-managed-attach-detach`` annotation; True
    #: adds it, as a real kubelet's default does.
    controller_attach_detach: bool = False
    #: kubelet 1.20 registers its Node once per process: a deleted Node stays deleted
    #: (status updates and lease renewals fail with 404 until the process restarts).
    #: True registers it again at once — a chaos-testing option, not kubelet behaviour.
    reregister_deleted_node: bool = False
    #: The Go hollow kubelet's client (10/20); its heartbeat client (lease and node
    #: status) is not limited, as in kubelet 1.20.
    kubelet_qps: float = 10.0
    kubelet_burst: int = 20
    proxy_qps: float = 5.0
    proxy_burst: int = 10
    #: The kubelet's event recorder (eventRecordQPS / eventBurst).
    event_qps: float = 5.0
    event_burst: int = 10
    #: "endpoints" (kube-proxy 1.20) or "endpointslices" (1.21+): which of the two the
    #: proxy watch of ``/api/v1/endpoints`` in `proxy_watches` reads.
    proxy_endpoints: str = "endpoints"
    #: client-go's WatchListClient (default since 1.35): informers start with a streaming
    #: list (a WATCH with sendInitialEvents) instead of a LIST.
    stream_list: bool = False
    #: The informers every kubelet opens besides its own Node and pods.
    kubelet_watches: list[WatchSpec] = msgspec.field(default_factory=lambda: [
        WatchSpec("/api/v1/services"), WatchSpec("/apis/storage.k8s.io/v1/csidrivers"),
        WatchSpec("/apis/node.k8s.io/v1/runtimeclasses")])
    register: RegisterProfile = msgspec.field(default_factory=RegisterProfile)
    #: Events about the Node when the kubelet starts (with ``events``).
    node_events: list[NodeEvent] = []
    #: Collections the kubelet deletes once at start (the DRA manager wipes its node's
    #: ResourceSlices).
    startup_deletes: list[WatchSpec] = []
    #: Where a node-status check reads the Node: "get" (a GET served from the apiserver's
    #: cache, kubelet 1.20) or "informer" (the kubelet's own watch of it; GETs only on
    #: retries).
    node_status_read: str = "get"
    #: Whether the Node reports a kubeProxyVersion (deprecated and left empty later).
    report_kube_proxy_version: bool = True
    #: What later kubelets add to a pod's status (hollow/objects.py POD_STATUS_FIELDS):
    #: PodReadyToStartContainers (and with PodSandboxReason, why it is False),
    #: observedGeneration, hostIPs, volumeMounts.
    pod_status_fields: list[str] = []
    #: kube-proxy: GET its Node once at start (1.20) — later releases watch it instead.
    proxy_get_node: bool = True
    #: The informers of kube-proxy.
    proxy_watches: list[WatchSpec] = msgspec.field(default_factory=lambda: [
        WatchSpec("/api/v1/services", label_selector=PROXY_SELECTOR),
        WatchSpec("/api/v1/endpoints", label_selector=PROXY_SELECTOR)])
    #: The API kube-proxy's "Starting" event is posted through: "core/v1" or
    #: "events.k8s.io/v1".
    proxy_event_api: str = "core/v1"
    events: bool = False
    start: StartProfile = msgspec.field(default_factory=StartProfile)
    stop: StopProfile = msgspec.field(default_factory=StopProfile)
    failures: FailureProfile = msgspec.field(default_factory=FailureProfile)
    #: What running pods report they use (kubelet API: metrics-server, `kubectl top`).
    usage: UsageProfile = msgspec.field(default_factory=UsageProfile)
    #: Node failures, timed from the fleet's start (``after``); see hollow/chaos.py.
    node_failures: list[NodeFailure[float]] = []
    pod_cidr_base: str = "10.64.0.0/10"
    #: Node InternalIPs: base + 1 + the node's index, unique over the shards of a fleet.
    #: Loopback, so each node's kubelet API can listen on its own address on this machine
    #: (never 127.0.0.1, where the apiserver listens): room for a million nodes.
    node_ip_base: str = "127.16.0.0/12"

    def __post_init__(self) -> None:
        if self.fidelity not in ("kubelet", "lite"):
            raise ValueError(f"fidelity must be 'kubelet' or 'lite', not '{self.fidelity}'")
        if self.proxy_endpoints not in ("endpoints", "endpointslices"):
            raise ValueError("proxy_endpoints must be 'endpoints' or 'endpointslices'")
        unknown = set(self.pod_status_fields) - POD_STATUS_FIELDS
        if unknown:
            raise ValueError(f"pod_status_fields: unknown {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(sorted(POD_STATUS_FIELDS))})")
        if self.node_status_read not in ("get", "informer"):
            raise ValueError("node_status_read must be 'get' or 'informer'")
        if self.proxy_event_api not in ("core/v1", "events.k8s.io/v1"):
            raise ValueError("proxy_event_api must be 'core/v1' or 'events.k8s.io/v1'")


def load_profile(path: Path | None, release: Release | None = None,
                 **overrides: object) -> Profile:
    """The release's profile (the struct's defaults without one), a YAML file on top
    (its sections merge into the release's: `start: {sandbox_delay: 2}` keeps the rest
    of ``start``), then command-line overrides."""
    data: dict[str, object] = {}
    if release is not None:
        data.update(release_profile(release).data)
    if path is not None:
        data = merge(data, read_yaml_mapping(path, "profile", empty_ok=True))
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(data, Profile)
    except (msgspec.ValidationError, ValueError) as exc:
        raise UserError(f"invalid hollow-node profile: {exc}") from None
