"""CPU per decoded Pod: today's msgspec JSON path against the apiserver's protobuf.

Decodes the same realistic pod (captured from a real 1.20 apiserver by
scripts/capture_fixtures.py, one resourceVersion in both encodings) many times and reports
process CPU time per decode, for: msgspec typed JSON (kube.types.Pod, today's hot path);
protobuf envelope + upb parse only; protobuf parse + copy into the same msgspec Pod the
hollow kubelet reads (the full path); and the resourceVersion-only view kube-proxy's
no-op watches need, in both encodings.

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
from google.protobuf.internal import api_implementation

from pykubemark.kube import protobuf as pb
from pykubemark.kube import types
from pykubemark.kube.proto.api.core.v1 import generated_pb2 as core

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "tests" / "unit" / "fixtures"


def per_call(fn: Callable[[], object], n: int) -> float:
    """Best of 5 rounds of process CPU time per call, in microseconds."""
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - start) / n)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "codec.json")
    args = parser.parse_args()
    js = (FIXTURES / "pod.json").read_bytes()
    proto = (FIXTURES / "pod.pb").read_bytes()
    pod_decoder = msgspec.json.Decoder(types.Pod)
    meta_decoder = msgspec.json.Decoder(types.MetaOnly)
    assert pod_decoder.decode(js) == pb.pod(pb.unwrap(proto).raw), "fixtures differ"

    def parse_only() -> None:
        core.Pod().ParseFromString(pb.unwrap(proto).raw)

    cases = {
        "json_msgspec_pod": lambda: pod_decoder.decode(js),
        "protobuf_parse_only": parse_only,
        "protobuf_to_msgspec_pod": lambda: pb.pod(pb.unwrap(proto).raw),
        "json_msgspec_meta_only": lambda: meta_decoder.decode(js),
        "protobuf_meta_only": lambda: pb.meta_only(pb.unwrap(proto).raw),
    }
    result = {
        "what": "process CPU microseconds per decoded Pod (best of 5 rounds)",
        "command": "python benchmarks/codec.py",
        "pod_bytes": {"json": len(js), "protobuf": len(proto)},
        "protobuf_backend": api_implementation.Type(),
        "python": platform.python_version(),
        "machine": "shared: 2 cores, other helpers running real clusters at the same time",
        "n": args.n,
        "us_per_pod": {name: round(per_call(fn, args.n), 2) for name, fn in cases.items()},
    }
    us = result["us_per_pod"]
    result["ratio_protobuf_full_to_json"] = round(
        us["protobuf_to_msgspec_pod"] / us["json_msgspec_pod"], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
