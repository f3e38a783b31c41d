"""Request counting from a hand-written apiserver audit log."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from pykubemark.measure.audit import Request, count_rows, read_audit, watch_set

KUBELET = "pykubemark:hollow-kubelet"
PROXY = "system:kube-proxy"
NODES = ["hollow-1", "hollow-10", "hollow-2"]


def ev(audit_id: str, stage: str, verb: str, uri: str, *, user: str = KUBELET,
       resource: str = "", subresource: str = "", name: str = "", namespace: str = "",
       at: str = "2026-11-22T10:00:00.000000Z", code: int | None = 200,
       done: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": audit_id, "stage": stage, "requestURI": uri, "verb": verb,
        "user": {"username": user, "groups": ["system:masters", "system:authenticated"]},
        "sourceIPs": ["127.0.0.1"], "userAgent": "kubelet/v1.20.2 (linux/amd64) kubernetes",
        "requestReceivedTimestamp": at, "stageTimestamp": done or at,
    }
    if resource:
        ref: dict[str, Any] = {"resource": resource, "apiVersion": "v1"}
        if subresource:
            ref["subresource"] = subresource
        if name:
            ref["name"] = name
        if namespace:
            ref["namespace"] = namespace
        event["objectRef"] = ref
    if code is not None:
        event["responseStatus"] = {"metadata": {}, "code": code}
    return event


EVENTS = [
    # a watch: logged when the response starts and again when it completes
    ev("w1", "ResponseStarted", "watch",
       "/api/v1/pods?allowWatchBookmarks=true&fieldSelector=spec.nodeName%3Dhollow-1"
       "&resourceVersion=5&timeoutSeconds=412&watch=true",
       resource="pods", at="2026-11-22T10:00:01.000000Z"),
    ev("w1", "ResponseComplete", "watch",
       "/api/v1/pods?allowWatchBookmarks=true&fieldSelector=spec.nodeName%3Dhollow-1"
       "&resourceVersion=5&timeoutSeconds=412&watch=true",
       resource="pods", at="2026-11-22T10:00:01.000000Z"),
    ev("l1", "ResponseComplete", "list",
       "/api/v1/pods?fieldSelector=spec.nodeName%3Dhollow-10&limit=500&resourceVersion=0",
       resource="pods", at="2026-11-22T10:00:02.000000Z"),
    ev("p1", "ResponseComplete", "patch", "/api/v1/nodes/hollow-1/status",
       resource="nodes", subresource="status", name="hollow-1",
       at="2026-11-22T10:00:03.000000Z"),
    ev("p2", "ResponseComplete", "patch", "/api/v1/nodes/hollow-2/status",
       resource="nodes", subresource="status", name="hollow-2",
       at="2026-11-22T10:00:04.000000Z"),
    ev("s1", "ResponseStarted", "watch",
       "/api/v1/namespaces/default/secrets?fieldSelector=metadata.name%3Ddefault-token-x7"
       "&watch=true", resource="secrets", namespace="default",
       at="2026-11-22T10:00:05.000000Z"),
    ev("s2", "ResponseComplete", "list",
       "/api/v1/namespaces/kube-system/configmaps?fieldSelector=metadata.name%3Dkube-proxy"
       "&resourceVersion=0", resource="configmaps", namespace="kube-system",
       at="2026-11-22T10:00:06.000000Z"),
    ev("e1", "ResponseStarted", "watch",
       "/api/v1/endpoints?labelSelector=%21service.kubernetes.io%2Fheadless"
       "&resourceVersion=1&watch=true", user=PROXY, resource="endpoints",
       at="2026-11-22T10:00:07.000000Z"),
    ev("h1", "ResponseComplete", "get", "/healthz", user="system:anonymous", code=None,
       at="2026-11-22T10:00:08.000000Z"),
    ev("late", "ResponseComplete", "get", "/api/v1/nodes/hollow-2",
       resource="nodes", name="hollow-2", at="2026-11-22T10:01:00.000000Z", code=404),
]


@pytest.fixture
def audit_log(tmp_path: Path) -> Path:
    path = tmp_path / "audit.log"
    lines = [orjson.dumps(e) for e in EVENTS]
    # a rotation can leave a cut line; it is skipped
    cut = ev("cut", "ResponseComplete", "get", "/api/v1/nodes/hollow-1", resource="nodes")
    lines.insert(4, orjson.dumps(cut)[:-20])
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def utc(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.UTC)


def test_each_audit_id_counted_once(audit_log: Path) -> None:
    requests = list(read_audit(audit_log))
    assert len(requests) == 10 - 1  # w1's two stages are one request; the cut line is skipped
    assert "cut" not in {r.uri for r in requests}
    ids = Counter((r.verb, r.uri) for r in requests)
    assert max(ids.values()) == 1
    watch = requests[0]
    assert watch.verb == "watch"
    assert watch.resource == "pods"
    assert watch.user == KUBELET
    assert watch.code == 200
    assert watch.time == utc("2026-11-22T10:00:01")
    assert watch.user_agent.startswith("kubelet/")


def test_request_fields(audit_log: Path) -> None:
    by_uri = {r.uri: r for r in read_audit(audit_log)}
    patch = by_uri["/api/v1/nodes/hollow-1/status"]
    assert (patch.resource, patch.subresource, patch.name) == ("nodes", "status", "hollow-1")
    assert patch.row == (KUBELET, "patch", "nodes/status")
    health = by_uri["/healthz"]
    assert health.resource == ""
    assert health.code == 0
    assert by_uri["/api/v1/nodes/hollow-2"].code == 404
    secret = next(r for r in by_uri.values() if r.resource == "secrets")
    assert secret.namespace == "default"


def test_apiserver_time_of_a_request(tmp_path: Path) -> None:
    """How long the apiserver held a request is its completion less its receipt; a watch's
    first logged stage is when its response started, which says nothing of that."""
    path = tmp_path / "audit.log"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in [
        ev("u1", "ResponseComplete", "update", "/apis/coordination.k8s.io/v1/leases/a",
           resource="leases", name="a", at="2026-11-22T10:00:00.250000Z",
           done="2026-11-22T10:00:01.500000Z"),
        ev("w1", "ResponseStarted", "watch", "/api/v1/pods?watch=true", resource="pods",
           at="2026-11-22T10:00:00.000000Z", done="2026-11-22T10:00:00.010000Z"),
        ev("w1", "ResponseComplete", "watch", "/api/v1/pods?watch=true", resource="pods",
           at="2026-11-22T10:00:00.000000Z", done="2026-11-22T10:07:00.000000Z"),
    ]) + b"\n")
    update, watch = read_audit(path)
    assert update.seconds == pytest.approx(1.25)
    assert watch.seconds is None


def test_window_is_half_open(audit_log: Path) -> None:
    since = utc("2026-11-22T10:00:02")
    until = utc("2026-11-22T10:00:06")
    got = [r.uri for r in read_audit(audit_log, since=since, until=until)]
    assert len(got) == 4  # l1 (at since), p1, p2, s1; s2 sits at until and is excluded
    assert got[0].startswith("/api/v1/pods?fieldSelector")
    assert all("kube-proxy" not in uri for uri in got)
    assert len(list(read_audit(audit_log, since=utc("2026-11-22T10:00:30")))) == 1
    assert len(list(read_audit(audit_log, until=utc("2026-11-22T10:00:01")))) == 0


def test_user_filter(audit_log: Path) -> None:
    proxy = list(read_audit(audit_log, users=[PROXY]))
    assert [r.resource for r in proxy] == ["endpoints"]
    both = list(read_audit(audit_log, users={PROXY, "system:anonymous"}))
    assert len(both) == 2
    assert list(read_audit(audit_log, users=[])) == []


def test_count_rows(audit_log: Path) -> None:
    rows = count_rows(read_audit(audit_log))
    assert rows == Counter({
        (KUBELET, "watch", "pods"): 1,
        (KUBELET, "list", "pods"): 1,
        (KUBELET, "patch", "nodes/status"): 2,
        (KUBELET, "watch", "secrets"): 1,
        (KUBELET, "list", "configmaps"): 1,
        (PROXY, "watch", "endpoints"): 1,
        ("system:anonymous", "get", ""): 1,
        (KUBELET, "get", "nodes"): 1,
    })


def test_watch_set_folds_node_and_object_names(audit_log: Path) -> None:
    assert watch_set(read_audit(audit_log), NODES) == {
        (KUBELET, "pods", "fieldSelector=spec.nodeName=<node>"),
        (KUBELET, "secrets", "fieldSelector=metadata.name=<name>"),
        (KUBELET, "configmaps", "fieldSelector=metadata.name=<name>"),
        (PROXY, "endpoints", "labelSelector=!service.kubernetes.io/headless"),
    }


def test_watch_set_longest_node_name_wins(audit_log: Path) -> None:
    # hollow-10 must not become "<node>0" because hollow-1 is a prefix of it
    got = watch_set(read_audit(audit_log), ["hollow-1", "hollow-10"])
    assert (KUBELET, "pods", "fieldSelector=spec.nodeName=<node>") in got
    assert not any("<node>0" in sel for _, _, sel in got)


def test_watch_set_without_node_names_keeps_them() -> None:
    def req(uri: str, resource: str = "pods") -> Request:
        return Request(user="u", verb="list", resource=resource, subresource="", name="",
                       namespace="", uri=uri, user_agent="", time=utc("2026-11-22T10:00:00"),
                       code=200)
    got = watch_set([req("/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&limit=500"),
                     req("/api/v1/pods?fieldSelector=spec.nodeName%3Dn2"),
                     req("/api/v1/pods")], [])
    assert got == {("u", "pods", "fieldSelector=spec.nodeName=n1"),
                   ("u", "pods", "fieldSelector=spec.nodeName=n2"),
                   ("u", "pods", "")}


def test_request_selectors_only_selectors() -> None:
    r = Request(user="u", verb="watch", resource="pods", subresource="", name="",
                namespace="", time=utc("2026-11-22T10:00:00"), code=200, user_agent="",
                uri="/api/v1/pods?labelSelector=app%3Dweb&fieldSelector=a%3Db"
                    "&resourceVersion=7&watch=true")
    assert r.selectors() == {"labelSelector": "app=web", "fieldSelector": "a=b"}
