"""Node failures as data: which hollow nodes stop, flap or heartbeat late, and when.

A running fleet learns them from a small JSON file (its "chaos file") that it polls:
`pykubemark chaos` appends actions to it with absolute times, so every shard of every
process agrees on which node is down when, without any channel besides the file. The
profile's ``node_failures`` section gives the same actions relative to the fleet's start.
The actions and their fields are `pykubemark.contract.NodeFailure`, the one type of a
scenario's ``node_failures``, of `pykubemark chaos` and of the fleet. A node picked by
``fraction`` is chosen from a hash of its name and the action's id, so all shards choose
the same nodes.

``chaosmonkey`` is clusterloader2's ChaosMonkey (failureRate, interval, jitterFactor,
simulatedDowntime): every ``interval`` s, stretched by up to ``jitter`` times itself, a
``fraction`` of the nodes is killed (heartbeats cease) and comes back ``downtime`` s
later as a restarted kubelet, as `systemctl stop kubelet`, a pause, then `start` would.
Round times and each round's choice are hashes of the action's id too, so the shards
agree on them without talking.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import msgspec

from pykubemark.contract import NodeFailure
from pykubemark.errors import UserError
from pykubemark.files import write_atomic

log = logging.getLogger(__name__)


class Scheduled(msgspec.Struct, forbid_unknown_fields=True):
    """A node failure at absolute times (seconds since the epoch)."""

    id: str
    failure: NodeFailure[float]
    start: float
    end: float | None

    def applies(self, node: str) -> bool:
        if self.failure.action == "chaosmonkey":
            return not self.failure.nodes or node in self.failure.nodes
        if node in self.failure.nodes:
            return True
        if self.failure.fraction <= 0:
            return False
        return _unit(f"{self.id}/{node}") < self.failure.fraction

    # -- chaosmonkey -----------------------------------------------------------------
    def _times(self, until: float) -> list[float]:
        """The cached round start times, computed up to past ``until`` (the last one may
        lie beyond it, or beyond the end)."""
        failure = self.failure
        key = (self.id, self.start, failure.interval, failure.jitter)
        times = _ROUNDS.setdefault(key, [self.start])
        while times[-1] <= until and (self.end is None or times[-1] < self.end):
            stretch = 1 + failure.jitter * _unit(f"{self.id}/round/{len(times)}")
            times.append(times[-1] + failure.interval * stretch)
        return times

    def _began(self, times: list[float], k: int, until: float) -> bool:
        return times[k] <= until and (self.end is None or times[k] < self.end)

    def rounds(self, until: float) -> list[float]:
        """Start times of the rounds that began by ``until`` (and before the end)."""
        times = self._times(until)
        return [t for k, t in enumerate(times) if self._began(times, k, until)]

    def killed(self, node: str, round_index: int) -> bool:
        return self.applies(node) and \
            _unit(f"{self.id}/{round_index}/{node}") < self.failure.fraction

    def back_at(self, started: float) -> float:
        """When a node killed in the round that began at ``started`` restarts."""
        back = started + self.failure.downtime
        return back if self.end is None else min(back, self.end)

    def _recent(self, since: float, now: float) -> tuple[list[float], range]:
        """The rounds that began by ``now`` whose downtime had not ended by ``since``."""
        times = self._times(now)
        first = bisect.bisect_right(times, since - self.failure.downtime)
        last = bisect.bisect_right(times, now)
        return times, range(first, last)

    def _monkey_down(self, node: str, now: float) -> bool:
        times, recent = self._recent(now, now)
        return any(self._began(times, k, now) and now < self.back_at(times[k])
                   and self.killed(node, k) for k in recent)

    def _monkey_restarts(self, node: str, since: float, now: float) -> bool:
        times, recent = self._recent(since, now)
        return any(self._began(times, k, now) and since < self.back_at(times[k]) <= now
                   and self.killed(node, k) for k in recent)

    def active(self, now: float) -> bool:
        return self.start <= now and (self.end is None or now < self.end)

    def down(self, now: float, node: str = "") -> bool:
        if not self.active(now) or self.failure.action == "slow":
            return False
        if self.failure.action == "chaosmonkey":
            return self._monkey_down(node, now)
        if self.failure.action in ("stop", "restart"):
            return True
        return int((now - self.start) // self.failure.period) % 2 == 0


class ChaosPlan(msgspec.Struct, forbid_unknown_fields=True):
    actions: list[Scheduled] = []

    def state(self, node: str, now: float) -> tuple[bool, float]:
        """(heartbeats down, extra heartbeat delay) for one node at ``now``."""
        down = False
        delay = 0.0
        for action in self.actions:
            if not action.applies(node):
                continue
            down = down or action.down(now, node)
            if action.failure.action == "slow" and action.active(now):
                delay = max(delay, action.failure.delay)
        return down, delay

    def restarts(self, node: str, since: float, now: float) -> list[str]:
        """Ids of the restarts of ``node`` that completed in (since, now]."""
        return [a.id for a in self.actions
                if (a.failure.action == "restart" and a.end is not None
                    and since < a.end <= now and a.applies(node))
                or (a.failure.action == "chaosmonkey" and a.applies(node)
                    and a._monkey_restarts(node, since, now))]


#: Round start times of each chaosmonkey action (they never change), computed once.
_ROUNDS: dict[tuple[str, float, float, float], list[float]] = {}


def _unit(key: str) -> float:
    """A number in [0, 1) that every shard derives alike from ``key``."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest) / 2**64


def schedule(failure: NodeFailure[float], at: float, ident: str) -> Scheduled:
    start = at + failure.after
    if failure.action == "restart":
        return Scheduled(ident, failure, start, start + failure.duration)
    return Scheduled(ident, failure, start, start + failure.duration if failure.duration else None)


def read_plan(path: Path) -> ChaosPlan:
    try:
        return msgspec.json.decode(path.read_bytes(), type=ChaosPlan)
    except FileNotFoundError:
        return ChaosPlan()
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise UserError(f"invalid chaos file {path}: {exc}") from None


def add(path: Path, failure: NodeFailure[float], now: float | None = None) -> Scheduled:
    """Append one failure starting ``failure.after`` s from now; expired ones are dropped."""
    now = time.time() if now is None else now
    plan = read_plan(path)
    plan.actions = [a for a in plan.actions if a.end is None or a.end > now]
    action = schedule(failure, now, f"{now:.6f}-{len(plan.actions)}")
    plan.actions.append(action)
    write_atomic(path, msgspec.json.encode(plan))
    return action


def clear(path: Path) -> None:
    write_atomic(path, msgspec.json.encode(ChaosPlan()))


def request(path: Path, action: str, **failure: Any) -> Scheduled | None:
    """`pykubemark chaos ACTION`: "clear" ends every failure of the file; any other action
    is one more failure, or a `UserError` saying why it is none."""
    if action == "clear":
        clear(path)
        return None
    try:
        wanted = NodeFailure(action, **failure)
    except ValueError as exc:
        raise UserError(f"invalid node failure: {exc}") from None
    return add(path, wanted)


def remove(path: Path, ids: list[str]) -> None:
    """Drop these actions (a run's own), leaving the others: their nodes come back."""
    plan = read_plan(path)
    kept = [a for a in plan.actions if a.id not in set(ids)]
    if len(kept) != len(plan.actions):
        write_atomic(path, msgspec.json.encode(ChaosPlan(kept)))


class ChaosWatcher:
    """A fleet's view of its chaos file and its profile's node failures, re-read when
    the file changes; a bad file is reported and the previous plan kept."""

    def __init__(self, path: Path | None, planned: list[NodeFailure[float]],
                 started: float) -> None:
        self.path = path
        self.planned = [schedule(f, started, f"profile-{i}") for i, f in enumerate(planned)]
        self.plan = ChaosPlan(list(self.planned))
        self._stamp: int | None = None

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when the plan changed."""
        if self.path is None:
            return False
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            from_file = read_plan(self.path)
        except UserError as exc:
            log.warning("%s; keeping the previous node failures", exc)
            return False
        self.plan = ChaosPlan([*self.planned, *from_file.actions])
        log.info("node failures: %d scheduled", len(self.plan.actions))
        return True
