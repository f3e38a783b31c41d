"""JSON shape <-> protobuf for the objects the hollow kubelet writes and reads, checked
against bytes a real 1.20 apiserver produced (scripts/capture_fixtures.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from pykubemark.hollow.objects import NodeIdentity
from pykubemark.hollow.profile import Profile
from pykubemark.kube import protobuf as pb
from pykubemark.kube import protojson

FIXTURES = Path(__file__).parent / "fixtures"


def _without_empty(value: Any) -> Any:
    """JSON omits empty fields that protobuf writes (gogo marshals every scalar)."""
    if isinstance(value, dict):
        kept = {k: _without_empty(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ("", 0, False, None, {}, [])}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return value


def test_apiserver_protobuf_pod_reads_as_its_json() -> None:
    from_pb = orjson.loads(protojson.decode((FIXTURES / "pod.pb").read_bytes()))
    from_json = json.loads((FIXTURES / "pod.json").read_text())
    # Inlined structs (volumeSource, localObjectReference), times, quantities, FieldsV1.
    assert _without_empty(from_pb) == _without_empty(from_json)


def test_status_answer_reads_as_json() -> None:
    (frame,) = list(pb.frames(bytearray((FIXTURES / "gone.pb").read_bytes())))
    _kind, envelope = pb.watch_event(frame)
    body = pb.wrap(envelope.typeMeta.apiVersion, envelope.typeMeta.kind,
                   pb.meta.Status.FromString(envelope.raw))
    status = orjson.loads(protojson.decode(body))
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")


@pytest.mark.parametrize("build", ["node", "lease", "csinode"])
def test_hollow_kubelet_objects_round_trip(build: str) -> None:
    identity = NodeIdentity("hollow-7", 7, Profile())
    body = {"node": lambda: identity.node("2026-11-23T05:21:36Z", ["k8s.gcr.io/pause:3.2"]),
            "lease": lambda: identity.lease("uid-7"),
            "csinode": lambda: identity.csinode("uid-7")}[build]()
    data = protojson.encode(body)
    assert data.startswith(pb.MAGIC) and len(data) < len(orjson.dumps(body))
    assert _without_empty(orjson.loads(protojson.decode(data))) == _without_empty(body)


def test_token_request_keeps_the_json_name_of_api_version() -> None:
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": ["a"], "expirationSeconds": 3607,
                     "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "p",
                                        "uid": "u"}}}
    assert orjson.loads(protojson.decode(protojson.encode(body))) == body


def test_micro_time_keeps_microseconds() -> None:
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "x"}, "spec": {"renewTime": "2026-11-23T05:21:36.123456Z"}}
    back = orjson.loads(protojson.decode(protojson.encode(body)))
    assert back["spec"]["renewTime"] == "2026-11-23T05:21:36.123456Z"


def test_only_generated_group_versions_ask_for_protobuf() -> None:
    assert protojson.generated_for("/api/v1/nodes/x")
    assert protojson.generated_for("/apis/coordination.k8s.io/v1/namespaces/n/leases/x")
    assert not protojson.generated_for("/apis/certificates.k8s.io/v1/certificatesigningrequests")
    assert not protojson.generated_for("/version")


def test_unknown_field_is_an_error_and_unknown_kind_stays_json() -> None:
    with pytest.raises(ValueError, match="nosuchfield"):
        protojson.encode({"apiVersion": "v1", "kind": "Node", "metadata": {"nosuchfield": 1}})
    with pytest.raises(protojson.UnknownKind):
        protojson.encode({"apiVersion": "example.com/v1", "kind": "Widget"})


def test_selected_fields_of_a_pod_answer_match_its_json() -> None:
    from_json = json.loads((FIXTURES / "pod.json").read_text())
    selected = protojson.to_dict_answer((FIXTURES / "pod.pb").read_bytes(),
                                        ("metadata.uid", "status"))
    assert set(selected) == {"kind", "apiVersion", "metadata", "status"}
    assert selected["metadata"] == {"uid": from_json["metadata"]["uid"]}
    assert _without_empty(selected["status"]) == _without_empty(from_json["status"])
