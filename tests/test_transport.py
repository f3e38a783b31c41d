"""The HTTP/2 + protobuf transport against the real apiserver.

One Client with ``http2=True, content_type="protobuf"`` does a GET, a LIST, a WATCH and a
create; the apiserver's side of it is one established TCP connection from this process
(counted by the kernel through psutil), protobuf bodies (its ``k8s\\x00`` envelope and
content type), watch events decoded from its frames, and its 410 for an expired watch.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest
from helpers import Cluster, Fleet, wait_for

from pykubemark import telemetry
from pykubemark.kube import ApiError, Client, load_kubeconfig
from pykubemark.kube import protobuf as pb
from pykubemark.kube.http2 import H2Pool
from pykubemark.kube.types import MetaOnly, Pod
from pykubemark.kube.watch import Backoff, Reflector

NS = "wire-test"


def _connections(port: int) -> int:
    return sum(1 for c in psutil.Process().net_connections(kind="tcp")
               if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)


class Recorder:
    def __init__(self) -> None:
        self.listed: list[Any] = []
        self.events: list[tuple[str, Any]] = []
        self.changed = asyncio.Event()

    def on_list(self, items: list[Any]) -> None:
        self.listed = items

    def on_event(self, kind: str, obj: Any) -> None:
        self.events.append((kind, obj))
        self.changed.set()

    async def wait(self, check) -> None:
        while not check():
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 60)


@pytest.fixture(scope="module")
def kubeconfig(cluster: Cluster) -> str:
    cluster.create_namespace(NS)
    return cluster.kubeconfig


def _pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "wire"}},
            "spec": {"containers": [{"name": "c", "image": "k8s.gcr.io/pause:3.2"}]}}


def test_get_list_watch_create_share_one_connection(kubeconfig: str) -> None:
    config = load_kubeconfig(kubeconfig)
    port = urlsplit(config.server).port
    pods = f"/api/v1/namespaces/{NS}/pods"

    async def run() -> tuple[int, int, bytes, list[str]]:
        async with Client(config, http2=True, content_type="protobuf") as client:
            before = _connections(port)
            recorder = Recorder()
            reflector = Reflector(client, pods, Pod, recorder)
            task = asyncio.create_task(reflector.run())
            await asyncio.wait_for(reflector.synced.wait(), 60)
            await client.get("/api/v1/namespaces/default")
            listed = await client.get(pods, accept=pb.PROTOBUF)
            view = client.with_identity(user_agent="pykubemark-test/other")
            await view.create(pods, _pod("one"))
            await view.patch(f"{pods}/one", {"metadata": {"labels": {"rev": "2"}}})
            await view.delete(f"{pods}/one", {"gracePeriodSeconds": 0})
            await recorder.wait(lambda: any(k == "DELETED" for k, _ in recorder.events))
            during = _connections(port)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            kinds = [k for k, obj in recorder.events if obj.metadata.name == "one"]
            return before, during, listed, kinds

    before, during, listed, kinds = asyncio.run(run())
    assert before == 0
    assert during == 1
    assert listed.startswith(pb.MAGIC)
    assert pb.unwrap(listed).typeMeta.kind == "PodList"
    assert kinds[0] == "ADDED" and kinds[-1] == "DELETED" and "MODIFIED" in kinds


def test_a_long_lived_connection_forgets_its_closed_streams(kubeconfig: str) -> None:
    """Hollow nodes keep one connection for days: what it remembers of past streams must
    not grow with every request."""

    async def run() -> tuple[int, int]:
        async with Client(load_kubeconfig(kubeconfig), http2=True,
                          content_type="protobuf") as client:
            for _ in range(300):
                await client.get("/api/v1/namespaces/default")
            conn = client.pool._conn
            assert conn is not None and conn.usable
            return conn.streams_remembered, conn.streams_opened

    remembered, opened = asyncio.run(run())
    assert opened >= 300  # all 300 requests went over this one connection
    assert remembered <= 100


def test_connection_redialled_after_restart_and_expired_watch_is_gone(
        cluster: Cluster, kubeconfig: str) -> None:
    """After an apiserver restart its watch cache starts at the current resourceVersion:
    a watch from "1" is answered with an ERROR frame carrying 410, which the reflector
    turns into a relist; the dead HTTP/2 connection is replaced by one new dial."""
    config = load_kubeconfig(kubeconfig)

    async def run() -> tuple[ApiError, int, int]:
        async with Client(config, http2=True, content_type="protobuf") as client:
            await client.get("/api/v1/namespaces/default")
            await asyncio.to_thread(cluster.local.restart, "kube-apiserver", downtime=1.0)
            reflector = Reflector(client, "/api/v1/configmaps", MetaOnly, Recorder())
            reflector.resource_version = "1"
            with pytest.raises(ApiError) as caught:
                await asyncio.wait_for(reflector._watch_loop(Backoff()), 60)
            task = asyncio.create_task(reflector.run())
            await asyncio.wait_for(reflector.synced.wait(), 60)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return caught.value, reflector.lists, client.pool.dials

    error, lists, dials = asyncio.run(run())
    assert error.gone
    assert lists == 1
    assert dials == 2


def test_json_over_http2_still_works(kubeconfig: str) -> None:
    config = load_kubeconfig(kubeconfig)

    async def run() -> list[str]:
        async with Client(config, http2=True) as client:
            recorder = Recorder()
            reflector = Reflector(client, "/api/v1/namespaces", MetaOnly, recorder)
            task = asyncio.create_task(reflector.run())
            await asyncio.wait_for(reflector.synced.wait(), 60)
            body = await client.get(f"/api/v1/namespaces/{NS}")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return [body[:1].decode(), str(len(recorder.listed))]

    first, listed = asyncio.run(run())
    assert first == "{"
    assert int(listed) >= 4  # default, kube-system, kube-public, kube-node-lease, wire-test


def test_hollow_nodes_hold_two_connections_each_over_h2(cluster: Cluster) -> None:
    """As the Go hollow node: one HTTP/2 connection per kubelet and one per proxy."""
    nodes = 2
    port = urlsplit(load_kubeconfig(cluster.kubeconfig).server).port
    fleet = Fleet(cluster, nodes, "wire", "--transport", "h2", "--content-type", "protobuf")
    try:
        fleet.wait_ready()
        process = psutil.Process(fleet.proc.pid)

        def held() -> int:
            return sum(1 for p in [process, *process.children(recursive=True)]
                       for c in p.net_connections(kind="tcp")
                       if c.raddr and c.raddr.port == port
                       and c.status == psutil.CONN_ESTABLISHED)

        # The fleet's start-up requests use a pooled HTTP/1.1 connection that the pool
        # closes once idle; what stays is the nodes' own.
        wait_for("two connections per node", lambda: held() == 2 * nodes, timeout=90)
    finally:
        assert fleet.stop() == 0


def test_half_open_connection_is_detected_by_ping(cluster: Cluster, kubeconfig: str) -> None:
    """A stopped apiserver still ACKs at the TCP level; only an unanswered HTTP/2 PING
    shows the connection is dead. After SIGCONT the next request dials again."""
    config = load_kubeconfig(kubeconfig)
    pid = cluster.local.state.proc("kube-apiserver").pid

    async def run() -> tuple[bool, int]:
        pool = H2Pool(config.server, config.h2_ssl_context(), config.tls_server_name,
                      read_idle=1.0, ping_timeout=2.0)
        async with Client(config, pool=pool) as client:
            await client.get("/api/v1/namespaces/default")
            conn = await pool.connection()
            os.kill(pid, signal.SIGSTOP)
            try:
                await asyncio.wait_for(asyncio.shield(conn.closed), 30)
            finally:
                os.kill(pid, signal.SIGCONT)
            await client.get("/api/v1/namespaces/default")
            return conn.usable, pool.dials

    found_dead = telemetry.CONNECTIONS_CLOSED["ping"]
    first_usable, dials = asyncio.run(run())
    assert not first_usable
    assert dials == 2
    assert telemetry.CONNECTIONS_CLOSED["ping"] == found_dead + 1  # the fleet's /metrics
