"""The kubelet's heartbeat rules: node-status retries, token renewal, image cap."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import aiohttp
import orjson
import pytest

from pykubemark.hollow.kubelet import HollowKubelet
from pykubemark.hollow.objects import NodeIdentity
from pykubemark.hollow.pods import token_refresh_delay
from pykubemark.hollow.profile import Profile
from pykubemark.kube.client import ApiError, Client
from pykubemark.kube.config import KubeConfig

NOW = dt.datetime(2026, 11, 23, 6, 0, tzinfo=dt.UTC)


def test_token_is_renewed_when_80_percent_of_its_lifetime_is_gone() -> None:
    expires = (NOW + dt.timedelta(seconds=3600)).isoformat()
    assert token_refresh_delay(3600, expires, NOW) == pytest.approx(2880)


def test_token_extended_by_the_apiserver_is_renewed_after_24_hours() -> None:
    expires = (NOW + dt.timedelta(days=365)).isoformat()
    assert token_refresh_delay(3607, expires, NOW) == pytest.approx(24 * 3600)


def test_token_without_a_readable_expiry_uses_the_requested_lifetime() -> None:
    assert token_refresh_delay(600, "", NOW) == pytest.approx(480)


def test_node_status_reports_at_most_50_images() -> None:
    identity = NodeIdentity("n-0", 0, Profile())
    images = [f"registry.example/image-{i}:1" for i in range(60)]
    reported = identity.status("t", "t", images)["images"]
    assert [i["names"][0] for i in reported] == images[:50]


class FakeHeartbeat(Client):
    """Only HTTP is faked: GETs fail as scripted, then answer with the Node."""

    def __init__(self, failures: list[BaseException], node: dict[str, Any]) -> None:
        super().__init__(KubeConfig(server="https://127.0.0.1:1", ssl_context=None))
        self.failures, self.node = failures, node
        self.gets: list[dict[str, str] | None] = []
        self.patches = 0

    async def request(self, method: str, path: str, *, params: Any = None,
                      **_: Any) -> bytes:
        if method == "PATCH":
            self.patches += 1
            return b"{}"
        self.gets.append(dict(params) if params else None)
        if self.failures:
            raise self.failures.pop(0)
        return orjson.dumps(self.node)


def kubelet(heartbeat: Client, profile: Profile | None = None) -> HollowKubelet:
    profile = profile or Profile()
    node = HollowKubelet(NodeIdentity("n-0", 0, profile), heartbeat, profile,
                         heartbeat=heartbeat)
    node.node_uid = "uid-1"
    return node


def test_node_status_is_retried_from_etcd_after_a_failure() -> None:
    fake = FakeHeartbeat([aiohttp.ClientConnectionError(), TimeoutError()],
                         {"metadata": {"uid": "uid-1"}, "status": {}})
    asyncio.run(kubelet(fake)._sync_status())
    # the first read from the apiserver's cache, the retries consistent reads
    assert fake.gets == [{"resourceVersion": "0"}, None, None]
    assert fake.patches == 1


NOT_FOUND = ApiError(404, b'{"reason": "NotFound"}', "GET", "/api/v1/nodes/n-0")


@pytest.mark.parametrize("read", ["get", "informer"])
def test_a_node_missing_from_the_cache_is_read_from_etcd_not_taken_for_deleted(
        read: str) -> None:
    """A Node just registered may be missing from the apiserver's cache or the kubelet's
    informer (the first read): that is no deletion (at 5000 nodes a third of the fleet
    logged one); the retry reads etcd, finds it, and writes its status."""
    failures = [NOT_FOUND] if read == "get" else []
    fake = FakeHeartbeat(failures, {"metadata": {"uid": "uid-1"}, "status": {}})
    node = kubelet(fake, Profile(node_status_read=read))
    asyncio.run(node._sync_status())
    assert not node.node_gone and fake.patches == 1
    assert fake.gets[-1] is None  # the consistent read found it


def test_a_node_missing_from_etcd_is_deleted() -> None:
    fake = FakeHeartbeat([aiohttp.ClientConnectionError(), NOT_FOUND, NOT_FOUND, NOT_FOUND,
                          NOT_FOUND], {"metadata": {"uid": "uid-1"}, "status": {}})
    node = kubelet(fake)
    asyncio.run(node._sync_status())
    assert node.node_gone and fake.patches == 0


def test_node_status_gives_up_after_5_tries() -> None:
    fake = FakeHeartbeat([ApiError(500, b"{}")] * 7, {"metadata": {"uid": "uid-1"}})
    asyncio.run(kubelet(fake)._sync_status())
    assert len(fake.gets) == 5
    assert fake.patches == 0


def test_node_marked_unknown_after_unchanged_checks_gets_its_status_written() -> None:
    fake = FakeHeartbeat([], {"metadata": {"uid": "uid-1"}})
    node = kubelet(fake)
    node.last_report = time.monotonic()  # the periodic report is not due
    fake.node["status"] = node.identity.status(node.transition, node.heartbeat_time,
                                               node.images, node.identity.capacity())
    for _ in range(3):
        asyncio.run(node._sync_status())
    assert fake.patches == 0
    ready = next(c for c in fake.node["status"]["conditions"] if c["type"] == "Ready")
    ready["status"] = "Unknown"  # what the node-lifecycle controller writes
    asyncio.run(node._sync_status())
    assert fake.patches == 1
