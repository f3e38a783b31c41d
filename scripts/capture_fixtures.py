"""Capture the apiserver's own protobuf and JSON bytes for the codec's unit tests.

Creates one realistic pod (labels, env from a secret, resources, the service-account
volume admission adds) in a throw-away namespace, then saves under tests/unit/fixtures/:
the pod as JSON and as protobuf, a protobuf PodList, the raw protobuf watch stream of its
ADDED/MODIFIED/DELETED, and the stream of a watch from a resourceVersion older than the watch cache
(an ERROR frame carrying 410 Gone).

    python scripts/capture_fixtures.py KUBECONFIG
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import orjson

from pykubemark.kube import load_kubeconfig

OUT = Path(__file__).resolve().parent.parent / "tests" / "unit" / "fixtures"
NS = "wire-fixtures"
PB = "application/vnd.kubernetes.protobuf"
POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web-0", "labels": {"app": "web", "tier": "frontend"},
                 "annotations": {"example.com/owner": "pykubemark"}},
    "spec": {
        "containers": [{
            "name": "web", "image": "k8s.gcr.io/pause:3.2",
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "env": [{"name": "MODE", "value": "test"},
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "web-secret",
                                                                      "key": "token"}}}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                          "limits": {"cpu": "200m", "memory": "128Mi"}},
        }],
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                         "effect": "NoExecute", "tolerationSeconds": 300}],
    },
}


async def main(kubeconfig: str) -> None:
    config = load_kubeconfig(kubeconfig)
    OUT.mkdir(parents=True, exist_ok=True)
    headers = {**config.headers}
    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=config.ssl_context or False)) as s:
        base = config.server

        async def call(method: str, path: str, accept: str = "application/json",
                       body: object = None, params: dict | None = None) -> bytes:
            async with s.request(method, base + path, params=params, data=None if body is None
                                 else orjson.dumps(body),
                                 headers={**headers, "Accept": accept,
                                          "Content-Type": "application/json"}) as r:
                return await r.read()

        await call("POST", "/api/v1/namespaces", body={"metadata": {"name": NS}})
        pods = f"/api/v1/namespaces/{NS}/pods"
        listed = orjson.loads(await call("GET", pods))
        rv = listed["metadata"]["resourceVersion"]
        watch_params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "20"}
        stream = bytearray()

        async def watch() -> None:
            async with s.get(base + pods, params=watch_params,
                             headers={**headers, "Accept": PB}) as r:
                async for chunk in r.content.iter_any():
                    stream.extend(chunk)
                    if stream.count(b"DELETED") >= 1:
                        return

        task = asyncio.create_task(watch())
        await asyncio.sleep(1)
        await call("POST", pods, body=POD)
        await call("PATCH", f"{pods}/web-0", body={"metadata": {"labels": {"rev": "2"}}})
        await asyncio.sleep(2)  # let the scheduler write its condition: one state for both
        (OUT / "pod.json").write_bytes(await call("GET", f"{pods}/web-0"))
        (OUT / "pod.pb").write_bytes(await call("GET", f"{pods}/web-0", PB))
        (OUT / "podlist.pb").write_bytes(await call("GET", pods, PB))
        await call("DELETE", f"{pods}/web-0", body={"gracePeriodSeconds": 0})
        await asyncio.wait_for(task, 30)
        (OUT / "watch.pb").write_bytes(bytes(stream))
        # Older than anything the watch cache holds: the apiserver answers with one
        # ERROR event carrying 410 Expired.
        async with s.get(base + "/api/v1/configmaps",
                         params={"watch": "true", "resourceVersion": "1", "timeoutSeconds": "5"},
                         headers={**headers, "Accept": PB}) as r:
            (OUT / "gone.pb").write_bytes(await r.read())
        await call("DELETE", f"/api/v1/namespaces/{NS}")
    for f in sorted(OUT.iterdir()):
        print(f.name, f.stat().st_size)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
