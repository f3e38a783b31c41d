"""What `load` and `hollow` agree on, in one place: both import it, neither imports the
other.

- **Pod annotations**: a scenario (`load`) writes them on its pod templates; a hollow node
  reads them to play the pod (a real kubelet ignores them and runs the container).
- **Pod failure kinds**: the values of ``pykubemark.io/failure``, of a scenario's
  ``failures`` and of a hollow profile's failure rules.
- **Node failures**: `NodeFailure`, one type for a scenario's ``node_failures`` (whose
  numbers may be expressions, evaluated per run), for `pykubemark chaos` and for the
  fleet that plays them (its profile's ``node_failures`` and its chaos file).
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

import msgspec

# -- pod annotations ----------------------------------------------------------------------
PREFIX = "pykubemark.io/"
#: One of `POD_FAILURES`: how the pod's containers fail.
FAILURE_ANNOTATION = PREFIX + "failure"
#: The share of pods (of one template) that play the annotated failure, chosen by uid.
FAILURE_WEIGHT_ANNOTATION = PREFIX + "failure-weight"
#: The exit code of a crashing container.
EXIT_CODE_ANNOTATION = PREFIX + "exit-code"
#: Seconds the containers run before they exit (a Job's pods, crashing containers).
RUN_SECONDS_ANNOTATION = PREFIX + "run-seconds"
#: Extra seconds before the containers start.
START_DELAY_ANNOTATION = PREFIX + "start-delay"
#: unready: Ready flips every this many seconds (0: never Ready).
FLAP_ANNOTATION = PREFIX + "ready-flap-seconds"

# -- pod failure kinds --------------------------------------------------------------------
#: crashloop: the containers exit (code 1) and restart with the kubelet's back-off;
#: oomkilled: the same with OOMKilled (137); imagepull: the image never pulls;
#: unready: Running but not Ready (or flapping).
POD_FAILURES = ("crashloop", "oomkilled", "imagepull", "unready")
#: A hollow profile's failure rule may also say that its pods do not fail.
NO_FAILURE = "none"

# -- node failures ------------------------------------------------------------------------
NODE_FAILURE_ACTIONS = ("stop", "flap", "slow", "restart", "chaosmonkey")
#: The numeric fields of `NodeFailure`, in order.
NODE_FAILURE_NUMBERS = ("fraction", "after", "duration", "period", "delay", "interval",
                        "jitter", "downtime")

#: A node failure's numbers: ``float`` where they are played (`pykubemark chaos`, the
#: fleet), `Num` in a scenario, where each may be an expression.
N = TypeVar("N")
Num = int | float | str


class Evaluator(Protocol):
    """What turns a scenario's expression into a number (load.scenario.Values)."""

    def number(self, value: Num | None, field: str) -> float: ...


class NodeFailure(msgspec.Struct, Generic[N], forbid_unknown_fields=True):
    """stop: heartbeats (lease, node status, pod statuses) cease; flap: down for
    ``period`` s, up for ``period`` s, again; slow: lease and node status late by
    ``delay`` s; restart: down for ``duration`` s (0: none), then a new kubelet that
    registers again and adopts its pods; chaosmonkey: each round (every ``interval`` s,
    plus up to ``jitter`` x ``interval``) a ``fraction`` of the nodes (of ``nodes`` if
    given) restarts after ``downtime`` s down. On ``nodes`` by name or on a ``fraction``
    of all nodes, from ``after`` s for ``duration`` s (0: until cleared, or until the
    run ends).

    Decode it as ``NodeFailure[float]`` where it is played, and as ``NodeFailure[Num]``
    in a scenario: there a number may be an expression over the cluster's size and the
    parameters, and a failure that selects no node once evaluated (fraction 0, no
    names) is no failure, so a parameter can switch it off. The numbers are checked
    once they are all numbers (at once, when no field is an expression)."""

    action: str
    nodes: list[str] = []
    fraction: N = 0.0  # type: ignore[assignment]
    after: N = 0.0  # type: ignore[assignment]
    duration: N = 0.0  # type: ignore[assignment]
    period: N = 0.0  # type: ignore[assignment]
    delay: N = 0.0  # type: ignore[assignment]
    interval: N = 0.0  # type: ignore[assignment]
    jitter: N = 0.0  # type: ignore[assignment]
    downtime: N = 0.0  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.action not in NODE_FAILURE_ACTIONS:
            raise ValueError(f"action must be one of {', '.join(NODE_FAILURE_ACTIONS)}, "
                             f"not '{self.action}'")
        if all(isinstance(getattr(self, name), int | float) for name in NODE_FAILURE_NUMBERS):
            self._check()

    def _check(self) -> None:
        if self.action == "chaosmonkey":
            if not 0 < self.fraction <= 1:
                raise ValueError("chaosmonkey needs a fraction in (0, 1] killed per round")
            if self.interval <= 0 or self.downtime <= 0:
                raise ValueError("chaosmonkey needs an interval > 0 and a downtime > 0")
            if self.jitter < 0:
                raise ValueError("jitter must be >= 0")
        if not self.nodes and not 0 < self.fraction <= 1:
            raise ValueError("a node failure needs nodes or a fraction in (0, 1]")
        if self.after < 0 or self.duration < 0:
            raise ValueError("after and duration must be >= 0")
        if self.action == "flap" and self.period <= 0:
            raise ValueError("flap needs a period > 0")
        if self.action == "slow" and self.delay <= 0:
            raise ValueError("slow needs a delay > 0")

    def evaluate(self, values: Evaluator, field: str) -> dict[str, Any] | None:
        """A scenario's failure: its fields with every number evaluated (what
        ``NodeFailure(**fields)`` takes), or None when it selects no node."""
        out: dict[str, Any] = {"action": self.action, "nodes": list(self.nodes)}
        for name in NODE_FAILURE_NUMBERS:
            out[name] = values.number(getattr(self, name), f"{field}.{name}")
        if not self.nodes and out["fraction"] <= 0:
            return None
        return out
