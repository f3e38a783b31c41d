"""How a hollow node behaves, as data: periods, capacities, delays, fidelity.

Defaults are the kubelet 1.20 / Go kubemark values measured in the reference
(`shared/reference/kubemark-go-1.20.md`); every field can be overridden from the
command line or a YAML file, so other kubelet versions or behaviours need no code.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import yaml

from pykubemark.errors import UserError

KUBE_VERSION = "v1.20.2"


class Capacity(msgspec.Struct, forbid_unknown_fields=True):
    cpu: str = "1"
    memory: str = "3840Mi"
    pods: str = "110"
    ephemeral_storage: str = msgspec.field(default="0", name="ephemeral-storage")


class StartProfile(msgspec.Struct, forbid_unknown_fields=True):
    """Pending status at once, Running after the next runtime relist plus a delay.

    The Go kubelet notices a started container on its next PLEG relist (every second)
    and writes status a little later; ``relist_period`` and ``status_delay`` reproduce
    the reference's scheduled→Running distribution (p50 0.88 s, p99 1.75 s).
    """

    relist_period: float = 1.0
    status_delay: float = 0.3
    #: Seconds a pod with restartPolicy Never/OnFailure runs before it succeeds;
    #: the annotation ``pykubemark.io/run-seconds`` overrides it per pod.
    job_run_seconds: float = 5.0


class StopProfile(msgspec.Struct, forbid_unknown_fields=True):
    """Deletion as the kubelet 1.20 does it, measured: kill, a terminated status
    (GET+PATCH), the pod worker's re-syncs while volumes are reclaimed (a GET each,
    status unchanged), then GET + DELETE with grace period 0 and a uid precondition."""

    kill_delay: float = 0.5
    resyncs: list[float] = msgspec.field(default_factory=lambda: [1.0, 3.0, 9.0])
    delete_after: float = 15.0


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
    kubelet_qps: float = 5.0
    kubelet_burst: int = 10
    proxy_qps: float = 5.0
    proxy_burst: int = 10
    #: "endpoints" (kube-proxy 1.20) or "endpointslices" (1.21+)
    proxy_endpoints: str = "endpoints"
    events: bool = False
    start: StartProfile = msgspec.field(default_factory=StartProfile)
    stop: StopProfile = msgspec.field(default_factory=StopProfile)
    pod_cidr_base: str = "10.64.0.0/10"
    node_ip_base: str = "198.18.0.0/15"

    def __post_init__(self) -> None:
        if self.fidelity not in ("kubelet", "lite"):
            raise ValueError(f"fidelity must be 'kubelet' or 'lite', not '{self.fidelity}'")
        if self.proxy_endpoints not in ("endpoints", "endpointslices"):
            raise ValueError("proxy_endpoints must be 'endpoints' or 'endpointslices'")


def load_profile(path: Path | None, **overrides: object) -> Profile:
    """The default profile, a YAML file on top, then command-line overrides."""
    data: dict[str, object] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise UserError(f"profile {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0]
            raise UserError(f"profile {path} is not valid YAML: {first}") from None
        if not isinstance(loaded, dict):
            raise UserError(f"profile {path} must be a mapping")
        data.update(loaded)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(data, Profile)
    except (msgspec.ValidationError, ValueError) as exc:
        raise UserError(f"invalid hollow-node profile: {exc}") from None
