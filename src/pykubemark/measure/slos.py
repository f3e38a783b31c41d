"""What the SLOs are: a judged row, the verdicts, and the API call latency SLO.

One definition per SLO, used wherever a value is judged: the measurements write their
rows with it, the run's verdict is drawn from the rows, and the report's per-call API
table judges each call with the same function as the API call SLO rows, so that no call
is ever measured against two thresholds.

This module imports nothing heavy: the report and `compare` use it without the client.
"""

from __future__ import annotations

from typing import Final

import msgspec
from msgspec import UNSET, UnsetType

PASS: Final = "pass"
FAIL: Final = "fail"
NO_DATA: Final = "no data"


class Slo(msgspec.Struct):
    """One judged SLO: a row of summary.json's ``slos``, of the report and of the terminal.

    Every field has a default so that a row a foreign or hand-edited summary lacks a
    field of still reads."""

    measurement: str = ""                # the perfdata summary name of what measured it
    name: str = ""
    value: float | None = None           # None: nothing was measured
    threshold: float = 0.0
    unit: str = ""
    verdict: str = NO_DATA               # PASS | FAIL | NO_DATA
    #: Where the value came from: "prometheus" (measure/promql.py); absent: measured
    #: directly (the cluster's own /metrics, its API, its processes).
    source: str | UnsetType = UNSET

    @classmethod
    def judge(cls, measurement: str, name: str, value: float | None, threshold: float,
              unit: str) -> Slo:
        """An SLO met when the value is at most the threshold."""
        verdict = NO_DATA if value is None else PASS if value <= threshold else FAIL
        return cls(measurement, name, value, threshold, unit, verdict)


def overall_verdict(slos: list[Slo]) -> str:
    """The run's verdict: fail if any SLO fails, pass if one passes, else no data."""
    verdicts = {s.verdict for s in slos}
    return FAIL if FAIL in verdicts else PASS if PASS in verdicts else NO_DATA


# --- API call latency -------------------------------------------------------------------
#
# The official API call latency SLO (sig-scalability's api_call_latency.md), as
# clusterloader2's APIResponsivenessPrometheus applies it: p99 over the test of each
# (verb, resource, subresource, scope) within 1 s for mutating calls and calls on single
# objects, 5 s for LISTs in a namespace, 30 s for cluster-wide LISTs. A DELETE of a whole
# collection (scope namespace or cluster: the namespace controller's) is not a call on a
# single object: the SLO does not cover it and clusterloader2 judges every call not on a
# single object at 30 s, so it is a kind of its own at 30 s.

SINGLE_OBJECT: Final = "mutating and single-object calls"
NAMESPACE_LIST: Final = "namespace LIST calls"
CLUSTER_LIST: Final = "cluster LIST calls"
COLLECTION_DELETE: Final = "collection DELETE calls"
#: Each kind of call and its threshold in seconds, in the order the SLO rows come.
API_CALL_KINDS: Final[dict[str, float]] = {
    SINGLE_OBJECT: 1.0,
    NAMESPACE_LIST: 5.0,
    CLUSTER_LIST: 30.0,
    COLLECTION_DELETE: 30.0,
}
#: Kinds without calls in the window get no row: the SLO does not define them.
OPTIONAL_API_CALL_KINDS: Final = frozenset({COLLECTION_DELETE})
#: Scopes of a call on more than one object (the apiserver's ``scope`` label).
COLLECTION_SCOPES: Final = frozenset({"namespace", "cluster"})


def api_call_kind(verb: str, scope: str) -> str:
    """The kind of an API call by the apiserver's ``verb`` and ``scope`` labels (a LIST of
    a namespace is verb LIST, scope namespace; a DELETE of every event in one is verb
    DELETE, scope namespace)."""
    if verb == "LIST":
        return CLUSTER_LIST if scope == "cluster" else NAMESPACE_LIST
    if verb == "DELETE" and scope in COLLECTION_SCOPES:
        return COLLECTION_DELETE
    return SINGLE_OBJECT


def api_call_threshold(verb: str, scope: str) -> float:
    """The latency SLO of an API call, in seconds: the one threshold it is judged against,
    in its SLO row, in its SlowCount and in the report's table."""
    return API_CALL_KINDS[api_call_kind(verb, scope)]


def api_call_thresholds_text() -> str:
    """The thresholds as a sentence: "1 s for mutating and single-object calls, ..."."""
    return ", ".join(f"{seconds:g} s for {kind}" for kind, seconds in API_CALL_KINDS.items())
