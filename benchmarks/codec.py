"""CPU per decoded Pod: the msgspec JSON path against the apiserver's protobuf.

Decodes the same realistic pod (captured from a real 1.20 apiserver by
scripts/capture_fixtures.py, one resourceVersion in both encodings) many times and reports
process CPU time per decode. Per object: msgspec typed JSON (kube.types.Pod); protobuf
envelope + upb Pod parse only (two parses); the view the Reflector gets (envelope and Pod
in one typed parse, kube.protobuf.PodView, nothing lazy read yet); ``materialize`` (every field
of the view copied into a msgspec Pod, generic, for tests: the eager copy the view replaced
cost 17.6 us with a hand-written copy); and the resourceVersion-only view
kube-proxy's no-op watches need, in both encodings. Per watch event, as the Reflector
dispatches it (frame or line -> object -> fields read): ``event_modified`` reads what the
kubelet's pod worker reads of a pod it already knows (uid, resourceVersion, nodeName,
deletionTimestamp), ``event_added`` reads every field (a pod seen for the first time).
Per Node (the hollow kubelet's own, 20 images): its GET answer to the dict the kubelet
code reads (metadata and status), and its create body, in both encodings
(kube/protojson.py); and the check of an answer identical to the last one, which the
kubelet's node-status loop does not decode again.

    python benchmarks/codec.py [--n 20000] [--out benchmarks/results/codec.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import orjson
from google.protobuf.internal import api_implementation

from pykubemark.kube import protobuf as pb
from pykubemark.kube import types
from pykubemark.kube.proto.api.core.v1 import generated_pb2 as core
from pykubemark.kube.proto.apimachinery.pkg.apis.meta.v1 import generated_pb2 as meta

HERE = Path(__file__).resolve().parent
#: What the hollow kubelet's node-status check reads of its Node's GET answer.
NODE_FIELDS = ("metadata", "status")
FIXTURES = HERE.parent / "tests" / "unit" / "fixtures"


def per_call(cases: dict[str, Callable[[], object]], n: int,
             rounds: int = 7) -> dict[str, float]:
    """Best of ``rounds`` of process CPU time per call, in microseconds. The cases take
    turns within each round, so that the load of a shared machine falls on all alike."""
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(rounds):
        for name, fn in cases.items():
            start = time.process_time()
            for _ in range(n):
                fn()
            best[name] = min(best[name], (time.process_time() - start) / n)
    return {name: round(value * 1e6, 2) for name, value in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "codec.json")
    parser.add_argument("--machine", default="this machine, quiet",
                        help="What else ran on the machine, for the result file.")
    args = parser.parse_args()
    js = (FIXTURES / "pod.json").read_bytes()
    proto = (FIXTURES / "pod.pb").read_bytes()
    pod_decoder = msgspec.json.Decoder(types.Pod)
    meta_decoder = msgspec.json.Decoder(types.MetaOnly)
    assert pod_decoder.decode(js) == pb.materialize(pb.pod(pb.unwrap(proto).raw)), "differ"

    def parse_only() -> None:
        core.Pod().ParseFromString(pb.unwrap(proto).raw)

    def eager_copy() -> None:
        pb.materialize(pb.pod(pb.unwrap(proto).raw))

    line = b'{"type":"MODIFIED","object":' + js + b"}"
    event = meta.WatchEvent(type="MODIFIED")
    event.object.raw = proto
    frame = event.SerializeToString()
    event_decoder = msgspec.json.Decoder(types.WatchEvent[types.Pod])

    def known(pod: types.Pod | pb.PodView) -> tuple[object, ...]:
        return (pod.metadata.uid, pod.metadata.resourceVersion, pod.spec.nodeName,
                pod.metadata.deletionTimestamp)

    def read_all(obj: object) -> None:
        """Every field, as a pod seen for the first time is read (struct or view alike)."""
        struct = obj.STRUCT if isinstance(obj, pb.View) else type(obj)
        for field in struct.__struct_fields__:
            value = getattr(obj, field)
            for item in value if isinstance(value, list) else (value,):
                if isinstance(item, msgspec.Struct | pb.View):
                    read_all(item)

    def json_event() -> types.Pod:
        obj = event_decoder.decode(line).object
        known(obj)
        return obj

    pod_codec = pb.DECODERS[types.Pod]
    meta_codec = pb.DECODERS[types.MetaOnly]

    def pb_event() -> pb.PodView:
        _kind, body = pb.watch_body(frame)
        obj = pod_codec.decode(body)
        known(obj)
        return obj

    # The hollow kubelet's own Node, as its GET every 10 s answers it and as it writes it.
    from pykubemark.hollow.objects import NodeIdentity
    from pykubemark.hollow.profile import Profile
    from pykubemark.kube import protojson
    from pykubemark.kube.client import answer

    identity = NodeIdentity("hollow-1", 1, Profile())
    stamp = "2026-11-23T05:21:36Z"
    node = identity.node(stamp, ["k8s.gcr.io/pause:3.2"])
    node["status"] = identity.status(stamp, stamp, [f"example.com/image-{i}:1" for i in range(20)])
    node_json, node_pb = orjson.dumps(node), protojson.encode(node)

    cases = {
        "json_msgspec_pod": lambda: pod_decoder.decode(js),
        "protobuf_parse_only": parse_only,
        "protobuf_view_pod": lambda: pod_codec.decode(proto),
        "protobuf_materialize_pod": eager_copy,
        "json_msgspec_meta_only": lambda: meta_decoder.decode(js),
        "protobuf_meta_only": lambda: meta_codec.decode(proto),
        "json_event_modified": json_event,
        "protobuf_event_modified": pb_event,
        "json_event_added": lambda: read_all(json_event()),
        "protobuf_event_added": lambda: read_all(pb_event()),
        "json_node_answer_to_dict": lambda: answer(node_json, NODE_FIELDS),
        "protobuf_node_answer_to_dict": lambda: answer(node_pb, NODE_FIELDS),
        # the kubelet's check of an answer identical to the last one's: no decoding, a
        # hash of the new answer (sliced: a bytes object caches its hash)
        "protobuf_node_answer_unchanged": lambda: hash(node_pb[1:]),
        "json_node_body_encode": lambda: orjson.dumps(node),
        "protobuf_node_body_encode": lambda: protojson.encode(node),
    }
    result = {
        "what": "process CPU microseconds per decoded Pod, watch event or Node (best of 7 rounds)",
        "command": "python benchmarks/codec.py",
        "pod_bytes": {"json": len(js), "protobuf": len(proto)},
        "protobuf_backend": api_implementation.Type(),
        "python": platform.python_version(),
        "machine": f"{os.cpu_count()} cores: {args.machine}",
        "n": args.n,
        "us_per_pod": per_call(cases, args.n),
    }
    us = result["us_per_pod"]
    result["ratio_protobuf_to_json"] = {
        "pod": round(us["protobuf_view_pod"] / us["json_msgspec_pod"], 2),
        "meta_only": round(us["protobuf_meta_only"] / us["json_msgspec_meta_only"], 2),
        "event_modified": round(us["protobuf_event_modified"] / us["json_event_modified"], 2),
        "event_added": round(us["protobuf_event_added"] / us["json_event_added"], 2),
        "node_answer": round(us["protobuf_node_answer_to_dict"]
                             / us["json_node_answer_to_dict"], 2),
    }
    result["node_bytes"] = {"json": len(node_json), "protobuf": len(node_pb)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
