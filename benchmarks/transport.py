"""Which HTTP transport should a hollow node use? aiohttp HTTP/1.1 against HTTP/2 candidates.

Against a REAL local apiserver (admin kubeconfig; no hollow nodes needed), each candidate
runs in its own process so that its CPU time and RSS are its own:

- ``gets``: 10 000 small GETs (``/api/v1/namespaces/default``) with 50 in flight, over one
  HTTP/2 connection (aiohttp: its pool, as many HTTP/1.1 connections as in flight):
  process CPU seconds (getrusage user+sys) and wall time;
- ``idle``: N components, each holding 7 idle watches as a hollow kubelet does (one HTTP/2
  connection per component; aiohttp: one HTTP/1.1 connection per watch): RSS growth per
  component, established TCP connections to the apiserver (psutil), and process CPU
  seconds over an idle window.

Candidates: ``aiohttp`` (today's HTTP/1.1), ``h2`` (pykubemark.kube.http2: our HTTP/2 frames
under our own asyncio protocol), ``httpx`` (httpx[http2] on httpcore), ``curl``
(curl_cffi's AsyncSession, libcurl + nghttp2). CPU is process time, which survives the
load other processes put on a shared machine better than wall time.

    python benchmarks/transport.py --kubeconfig K [--components 200] [--idle 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil

HERE = Path(__file__).resolve().parent
CANDIDATES = ("aiohttp", "h2", "httpx", "curl")
GET_PATH = "/api/v1/namespaces/default"
#: The seven watches of a hollow kubelet + proxy that stay idle in a quiet cluster.
WATCH_PATHS = [
    "/api/v1/nodes?fieldSelector=metadata.name%3D{name}",
    "/api/v1/pods?fieldSelector=spec.nodeName%3D{name}",
    "/api/v1/services", "/api/v1/endpoints",
    "/apis/storage.k8s.io/v1/csidrivers", "/apis/node.k8s.io/v1/runtimeclasses",
    "/apis/discovery.k8s.io/v1beta1/endpointslices",
]


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss() -> int:
    return psutil.Process().memory_info().rss


def established(port: int) -> int:
    return sum(1 for c in psutil.Process().net_connections(kind="tcp")
               if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)


# -- one adapter per candidate: open a component, GET, hold a watch -----------------------
class Adapter:
    def __init__(self, kubeconfig: str) -> None:
        from pykubemark.kube import load_kubeconfig

        self.config = load_kubeconfig(kubeconfig)
        self.server = self.config.server
        self.headers = {"Accept": "application/json", **self.config.headers}

    async def component(self) -> object: ...
    async def get(self, comp: object, path: str) -> bytes: ...
    async def watch(self, comp: object, path: str, started: asyncio.Event) -> None: ...
    async def close(self, comp: object) -> None: ...


class AiohttpAdapter(Adapter):
    async def component(self) -> object:
        from pykubemark.kube import Client

        return Client(self.config)

    async def get(self, comp, path):
        return await comp.get(path)

    async def watch(self, comp, path, started):
        import aiohttp

        async with comp.session.get(self.server + path, params={"watch": "true"},
                                    headers=self.headers,
                                    timeout=aiohttp.ClientTimeout(total=None)) as r:
            started.set()
            async for _ in r.content.iter_any():
                pass

    async def close(self, comp):
        await comp.close()


class H2Adapter(AiohttpAdapter):
    async def component(self) -> object:
        from pykubemark.kube import Client

        return Client(self.config, http2=True)

    async def watch(self, comp, path, started):
        response = await comp.pool.request("GET", path + "&watch=true" if "?" in path
                                           else path + "?watch=true", self.headers)
        started.set()
        async for _ in response.chunks():
            pass


class HttpxAdapter(Adapter):
    async def component(self) -> object:
        import httpx

        return httpx.AsyncClient(http2=True, verify=self.config.h2_ssl_context(),
                                 base_url=self.server, headers=self.headers,
                                 timeout=httpx.Timeout(60, read=None),
                                 limits=httpx.Limits(max_connections=1))

    async def get(self, comp, path):
        r = await comp.get(path)
        r.raise_for_status()
        return r.content

    async def watch(self, comp, path, started):
        async with comp.stream("GET", path, params={"watch": "true"}) as r:
            started.set()
            async for _ in r.aiter_bytes():
                pass

    async def close(self, comp):
        await comp.aclose()


class CurlAdapter(Adapter):
    def __init__(self, kubeconfig: str) -> None:
        super().__init__(kubeconfig)
        import base64

        import yaml

        raw = yaml.safe_load(Path(kubeconfig).read_text())
        ca = base64.b64decode(raw["clusters"][0]["cluster"]["certificate-authority-data"])
        handle = tempfile.NamedTemporaryFile(delete=False, suffix=".crt")  # noqa: SIM115
        handle.write(ca)
        handle.close()
        self.ca = handle.name

    async def component(self) -> object:
        from curl_cffi import CurlHttpVersion, CurlOpt
        from curl_cffi.requests import AsyncSession

        # PIPEWAIT: wait for the first connection's ALPN and multiplex on it, instead of
        # dialling one connection per request started before the handshake ends.
        return AsyncSession(max_clients=64, verify=self.ca, headers=self.headers,
                            http_version=CurlHttpVersion.V2_0,
                            curl_options={CurlOpt.PIPEWAIT: 1})

    async def get(self, comp, path):
        r = await comp.get(self.server + path, timeout=60)
        r.raise_for_status()
        return r.content

    async def watch(self, comp, path, started):
        async with comp.stream("GET", self.server + path, params={"watch": "true"},
                               timeout=None) as r:
            started.set()
            async for _ in r.aiter_content():
                pass

    async def close(self, comp):
        await comp.close()


ADAPTERS = {"aiohttp": AiohttpAdapter, "h2": H2Adapter, "httpx": HttpxAdapter,
            "curl": CurlAdapter}


# -- scenarios, run inside the worker process --------------------------------------------
async def scenario_gets(adapter: Adapter, port: int, n: int, concurrency: int) -> dict:
    comp = await adapter.component()
    await adapter.get(comp, GET_PATH)  # connect and warm up outside the measurement
    todo = iter(range(n))
    peak = 0

    async def worker() -> None:
        nonlocal peak
        for _ in todo:
            await adapter.get(comp, GET_PATH)
        peak = max(peak, established(port))

    c0, t0 = cpu(), time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    c1, t1 = cpu(), time.monotonic()
    conns = established(port)
    await adapter.close(comp)
    return {"requests": n, "concurrency": concurrency, "cpu_s": round(c1 - c0, 3),
            "wall_s": round(t1 - t0, 3), "cpu_ms_per_1000": round((c1 - c0) * 1e6 / n, 1),
            "established_connections": max(conns, peak)}


async def scenario_idle(adapter: Adapter, port: int, components: int, idle: float) -> dict:
    base_rss = rss()
    comps, tasks, events = [], [], []
    for i in range(components):
        comp = await adapter.component()
        comps.append(comp)
        for path in WATCH_PATHS:
            started = asyncio.Event()
            events.append(started)
            tasks.append(asyncio.create_task(
                adapter.watch(comp, path.format(name=f"wirebench-{i}"), started)))
        await asyncio.sleep(0.01)
    # A watch has "started" when its response headers are in (curl_cffi: its first bytes).
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 30)
    await asyncio.sleep(2)
    failed = sum(1 for t in tasks if t.done())
    not_started = sum(1 for e in events if not e.is_set())
    held_rss = rss()
    c0 = cpu()
    await asyncio.sleep(idle)
    c1 = cpu()
    result = {  # the watches stay open: the worker exits right after reporting
        "components": components, "watches": len(tasks), "watches_failed": failed,
        "watches_without_response_after_30s": not_started,
        "established_connections": established(port),
        "rss_mib_before": round(base_rss / 2**20, 1), "rss_mib_held": round(held_rss / 2**20, 1),
        "rss_kib_per_component": round((held_rss - base_rss) / 1024 / components, 1),
        "idle_window_s": idle, "idle_cpu_s": round(c1 - c0, 3),
    }
    return result


def worker_main(args: argparse.Namespace) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    adapter = ADAPTERS[args.worker](args.kubeconfig)
    port = urlsplit(adapter.server).port or 443
    if args.scenario == "gets":
        coro = scenario_gets(adapter, port, args.requests, args.concurrency)
    else:
        coro = scenario_idle(adapter, port, args.components, args.idle)
    print(json.dumps(asyncio.run(coro)), flush=True)
    # Leave the held watches to the kernel: a library stuck closing them is not measured.
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--scenarios", default="gets,idle")
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--components", type=int, default=200)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "transport.json")
    parser.add_argument("--worker", choices=CANDIDATES, help=argparse.SUPPRESS)
    parser.add_argument("--scenario", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args)
        return
    result: dict = {
        "what": "HTTP transports for hollow nodes against a real kube-apiserver 1.20.2",
        "command": "python benchmarks/transport.py " + " ".join(sys.argv[1:]).replace(
            args.kubeconfig, "K"),
        "machine": "shared: 2 cores; other helpers ran real clusters at the same time, so "
                   "wall times are noisy; CPU is this process's own (getrusage)",
        "cpu_count": os.cpu_count(), "results": {},
    }
    for scenario in args.scenarios.split(","):
        for name in args.candidates.split(","):
            argv = [sys.executable, __file__, "--kubeconfig", args.kubeconfig,
                    "--worker", name, "--scenario", scenario,
                    "--requests", str(args.requests), "--concurrency", str(args.concurrency),
                    "--components", str(args.components), "--idle", str(args.idle)]
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
            if proc.returncode == 0:
                value = json.loads(proc.stdout.strip().splitlines()[-1])
            else:
                value = {"error": proc.stderr.strip().splitlines()[-1:]}
            result["results"].setdefault(scenario, {})[name] = value
            print(scenario, name, json.dumps(value), flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.out.with_suffix(".tmp")
            tmp.write_text(json.dumps(result, indent=2) + "\n")
            os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
