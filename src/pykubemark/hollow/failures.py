"""Which pods of a hollow node fail, and the kubelet's back-off that paces their retries.

A pod's behaviour comes from its annotations (`pykubemark.contract`: what `load` and users
write) or else from the profile's weighted rules. The back-off is client-go's
``flowcontrol.Backoff`` as kubelet 1.20 uses it for container restarts and image pulls:
the first failure is retried at once, then the delay doubles from ``backoff_initial`` to
``backoff_max``, and an entry not updated for twice the maximum starts over.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from dataclasses import dataclass

from pykubemark.contract import (
    EXIT_CODE_ANNOTATION,
    FAILURE_ANNOTATION,
    FAILURE_WEIGHT_ANNOTATION,
    FLAP_ANNOTATION,
    NO_FAILURE,
    RUN_SECONDS_ANNOTATION,
    START_DELAY_ANNOTATION,
)
from pykubemark.hollow.profile import FAILURES, Distribution, FailureProfile, FailureRule
from pykubemark.kube.types import Pod

log = logging.getLogger(__name__)
OOM_EXIT_CODE = 137
#: z of the 99th percentile of the standard normal distribution.
Z99 = 2.3263478740408408


def sample(dist: Distribution, rng: random.Random) -> float:
    if dist.fixed is not None:
        return dist.fixed
    if dist.uniform is not None:
        return rng.uniform(*dist.uniform)
    assert dist.lognormal is not None
    p50, p99 = dist.lognormal["p50"], dist.lognormal["p99"]
    return rng.lognormvariate(math.log(p50), (math.log(p99) - math.log(p50)) / Z99)


@dataclass
class Plan:
    """What happens to one pod's containers."""

    failure: str = NO_FAILURE
    exit_code: int | None = None
    run_seconds: float | None = None
    start_delay: float = 0.0
    flap_period: float = 0.0

    @property
    def crashes(self) -> bool:
        return self.failure in ("crashloop", "oomkilled")

    def exit_reason(self, code: int) -> str:
        if self.failure == "oomkilled":
            return "OOMKilled"
        return "Completed" if code == 0 else "Error"

    def code(self) -> int:
        if self.exit_code is not None:
            return self.exit_code
        return {"oomkilled": OOM_EXIT_CODE, "crashloop": 1}.get(self.failure, 0)


def _chosen(uid: str, index: int, weight: float) -> bool:
    if weight >= 1:
        return True
    digest = hashlib.blake2b(f"{uid}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) / 2**64 < weight


def _matches(rule: FailureRule, pod: Pod) -> bool:
    meta = pod.metadata
    if rule.namespaces and meta.namespace not in rule.namespaces:
        return False
    return all(meta.labels.get(k) == v for k, v in rule.labels.items())


def _number(pod: Pod, key: str) -> float | None:
    value = pod.metadata.annotations.get(key)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        log.warning("%s/%s: ignoring %s=%r (not a number)", pod.metadata.namespace,
                    pod.metadata.name, key, value)
        return None
    return number if number >= 0 and math.isfinite(number) else None


def plan_for(pod: Pod, failures: FailureProfile, rng: random.Random) -> Plan:
    """The first rule that matches and chooses the pod, then the pod's annotations."""
    plan = Plan()
    for index, rule in enumerate(failures.rules):
        if _matches(rule, pod) and _chosen(pod.metadata.uid, index, rule.weight):
            plan = Plan(rule.failure, rule.exit_code,
                        sample(rule.run_seconds, rng) if rule.run_seconds else None,
                        sample(rule.start_delay, rng) if rule.start_delay else 0.0,
                        rule.flap_period)
            break
    annotations = pod.metadata.annotations
    weight = _number(pod, FAILURE_WEIGHT_ANNOTATION)
    if weight is not None and not _chosen(pod.metadata.uid, -1, weight):
        # Not one of the failing share: only the run time (a Job's) applies.
        run = _number(pod, RUN_SECONDS_ANNOTATION)
        plan.run_seconds = run if run is not None else plan.run_seconds
        return plan
    failure = annotations.get(FAILURE_ANNOTATION)
    if failure is not None:
        if failure in FAILURES:
            plan.failure = failure
        else:
            log.warning("%s/%s: ignoring %s=%r (one of %s)", pod.metadata.namespace,
                        pod.metadata.name, FAILURE_ANNOTATION, failure, ", ".join(FAILURES))
    code = annotations.get(EXIT_CODE_ANNOTATION)
    if code is not None:
        try:
            plan.exit_code = int(code)
        except ValueError:
            plan.exit_code = 1
    run = _number(pod, RUN_SECONDS_ANNOTATION)
    plan.run_seconds = run if run is not None else plan.run_seconds
    delay = _number(pod, START_DELAY_ANNOTATION)
    plan.start_delay = delay if delay is not None else plan.start_delay
    flap = _number(pod, FLAP_ANNOTATION)
    plan.flap_period = flap if flap is not None else plan.flap_period
    return plan


class Backoff:
    """One item of client-go's flowcontrol.Backoff; times are the caller's clock."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.delay = 0.0
        self.last_update: float | None = None

    def _expired(self, event_time: float) -> bool:
        assert self.last_update is not None
        return event_time - self.last_update > 2 * self.maximum

    def next(self, event_time: float, now: float) -> None:
        if self.last_update is None or self._expired(event_time):
            self.delay = self.initial
        else:
            self.delay = min(self.delay * 2, self.maximum)
        self.last_update = now

    def in_backoff_since(self, event_time: float, now: float) -> bool:
        """Container restarts: still waiting after an exit at ``event_time``?"""
        if self.last_update is None or self._expired(event_time):
            return False
        return now - event_time < self.delay

    def in_backoff_since_update(self, now: float) -> bool:
        """Image pulls: still waiting since the last failed pull?"""
        if self.last_update is None or self._expired(now):
            return False
        return now - self.last_update < self.delay


def go_duration(seconds: float) -> str:
    """A duration as Go's time.Duration.String() prints it: 10s, 1m20s, 5m0s, 500ms."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{round(secs, 9):g}s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{int(minutes)}m{text}"
    return text


def pod_desc(pod: Pod) -> str:
    """kubelet's format.Pod: name_namespace(uid)."""
    meta = pod.metadata
    return f"{meta.name}_{meta.namespace}({meta.uid})"
