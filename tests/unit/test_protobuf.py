"""The protobuf codec on bytes captured from a real 1.20 apiserver (scripts/capture_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from pykubemark.kube import protobuf as pb
from pykubemark.kube import types
from pykubemark.kube.client import ApiError, Client
from pykubemark.kube.config import KubeConfig
from pykubemark.kube.proto.api.core.v1 import generated_pb2 as core
from pykubemark.kube.watch import Reflector

FIXTURES = Path(__file__).parent / "fixtures"


def _bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_pod_envelope_decodes_to_the_same_view_as_json() -> None:
    envelope = pb.unwrap(_bytes("pod.pb"))
    assert (envelope.typeMeta.apiVersion, envelope.typeMeta.kind) == ("v1", "Pod")
    from_json = msgspec.json.decode(_bytes("pod.json"), type=types.Pod)
    view = pb.pod(envelope.raw)
    assert view == from_json
    # Field by field as the kubelet reads it, before anything is materialized.
    assert (view.metadata.uid, view.spec.nodeName, view.status.phase) == (
        from_json.metadata.uid, from_json.spec.nodeName, from_json.status.phase)
    assert view.spec.containers == from_json.spec.containers
    assert view.spec.volumes == from_json.spec.volumes
    assert view.status.conditions == from_json.status.conditions
    assert view.metadata.labels == from_json.metadata.labels
    assert pb.meta_only(envelope.raw).metadata.resourceVersion == from_json.metadata.resourceVersion


def test_body_without_magic_is_refused() -> None:
    with pytest.raises(pb.CodecError):
        pb.unwrap(_bytes("pod.json"))


def test_truncated_pod_is_a_codec_error() -> None:
    raw = pb.unwrap(_bytes("pod.pb")).raw
    with pytest.raises(pb.CodecError):
        pb.pod(raw[:len(raw) // 2])


def test_view_fields_read_once_are_kept() -> None:
    view = pb.pod(pb.unwrap(_bytes("pod.pb")).raw)
    assert view.spec.containers is view.spec.containers


def test_typed_envelope_reads_the_same_pod_in_one_parse() -> None:
    from_json = msgspec.json.decode(_bytes("pod.json"), type=types.Pod)
    assert pb.DECODERS[types.Pod].decode(_bytes("pod.pb")) == from_json
    assert pb.DECODERS[types.MetaOnly].decode(_bytes("pod.pb")).metadata.resourceVersion == (
        from_json.metadata.resourceVersion)
    with pytest.raises(pb.CodecError):
        pb.DECODERS[types.Pod].decode(_bytes("pod.json"))


def test_list_gives_items_and_resource_version() -> None:
    items, rv, cont = pb.DECODERS[types.Pod].decode_list(_bytes("podlist.pb"))
    assert [p.metadata.name for p in items] == ["web-0"]
    assert rv.isdigit() and int(rv) >= int(items[0].metadata.resourceVersion)
    assert cont == ""
    metas, meta_rv, _ = pb.DECODERS[types.MetaOnly].decode_list(_bytes("podlist.pb"))
    assert meta_rv == rv
    assert [m.metadata.resourceVersion for m in metas] == [
        p.metadata.resourceVersion for p in items]


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


# -- the reflector's protobuf dispatch, on the same captured streams ----------------------
class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def on_list(self, items: list) -> None:
        pass

    def on_event(self, kind: str, obj: types.Pod) -> None:
        self.events.append((kind, obj.metadata.name))


def _reflector() -> tuple[Reflector, _Recorder]:
    config = KubeConfig(server="https://127.0.0.1:1", ssl_context=None)
    recorder = _Recorder()
    return Reflector(Client(config, content_type="protobuf"), "/api/v1/pods", types.Pod,
                     recorder), recorder


def test_reflector_dispatches_protobuf_frames_and_tracks_resource_version() -> None:
    reflector, recorder = _reflector()
    buffer = bytearray(_bytes("watch.pb"))
    last_rv = ""
    for frame in pb.frames(buffer):
        reflector._dispatch_frame(frame)
        last_rv = pb.pod(pb.watch_event(frame)[1].raw).metadata.resourceVersion
    assert [k for k, _ in recorder.events][::len(recorder.events) - 1] == ["ADDED", "DELETED"]
    assert {name for _, name in recorder.events} == {"web-0"}
    assert reflector.resource_version == last_rv


def test_reflector_raises_gone_on_an_error_frame() -> None:
    reflector, recorder = _reflector()
    (frame,) = list(pb.frames(bytearray(_bytes("gone.pb"))))
    with pytest.raises(ApiError) as caught:
        reflector._dispatch_frame(frame)
    assert caught.value.gone and recorder.events == []


def test_json_client_keeps_json_reflectors() -> None:
    config = KubeConfig(server="https://127.0.0.1:1", ssl_context=None)
    reflector = Reflector(Client(config), "/api/v1/pods", types.Pod, _Recorder())
    assert reflector._pb_item is None
