"""The protobuf codec on bytes captured from a real 1.20 apiserver (scripts/capture_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from pykubemark.kube import protobuf as pb
from pykubemark.kube import types
from pykubemark.kube.proto.api.core.v1 import generated_pb2 as core

FIXTURES = Path(__file__).parent / "fixtures"


def _bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_pod_envelope_decodes_to_the_same_view_as_json() -> None:
    envelope = pb.unwrap(_bytes("pod.pb"))
    assert (envelope.typeMeta.apiVersion, envelope.typeMeta.kind) == ("v1", "Pod")
    from_json = msgspec.json.decode(_bytes("pod.json"), type=types.Pod)
    assert pb.pod(envelope.raw) == from_json
    assert pb.meta_only(envelope.raw).metadata.resourceVersion == from_json.metadata.resourceVersion


def test_body_without_magic_is_refused() -> None:
    with pytest.raises(pb.CodecError):
        pb.unwrap(_bytes("pod.json"))


def test_list_gives_items_and_resource_version() -> None:
    items, rv, cont = pb.list_items(_bytes("podlist.pb"), pb.pod)
    assert [p.metadata.name for p in items] == ["web-0"]
    assert rv.isdigit() and int(rv) >= int(items[0].metadata.resourceVersion)
    assert cont == ""


def test_watch_stream_frames_in_any_chunking() -> None:
    stream = _bytes("watch.pb")
    expected = None
    for step in (1, 3, 7, 64, len(stream)):
        buffer, kinds = bytearray(), []
        for start in range(0, len(stream), step):
            buffer += stream[start:start + step]
            for frame in pb.frames(buffer):
                kind, envelope = pb.watch_event(frame)
                kinds.append((kind, pb.pod(envelope.raw).metadata.resourceVersion))
        assert buffer == b""
        expected = expected or kinds
        assert kinds == expected
    assert expected[0][0] == "ADDED" and expected[-1][0] == "DELETED"
    assert "MODIFIED" in {k for k, _ in expected}


def test_incomplete_frame_stays_in_the_buffer() -> None:
    stream = _bytes("watch.pb")
    buffer = bytearray(stream[:-1])
    frames = list(pb.frames(buffer))
    assert len(buffer) > 0 and stream.endswith(bytes(buffer) + stream[-1:])
    assert frames


def test_expired_watch_is_an_error_frame_with_410() -> None:
    buffer = bytearray(_bytes("gone.pb"))
    (frame,) = list(pb.frames(buffer))
    kind, envelope = pb.watch_event(frame)
    assert kind == "ERROR" and envelope.typeMeta.kind == "Status"
    status = pb.status(envelope.raw)
    assert (status.code, status.reason) == (410, "Expired")


def test_wrap_is_what_unwrap_reads() -> None:
    pod = core.Pod()
    pod.metadata.name = "x"
    envelope = pb.unwrap(pb.wrap("v1", "Pod", pod))
    assert envelope.typeMeta.kind == "Pod" and pb.pod(envelope.raw).metadata.name == "x"
