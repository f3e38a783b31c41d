"""Who may call a hollow kubelet's API: the kubelet's path → subresource mapping, its
reviews and their caches against a fake apiserver, and one HTTPS server in-process with
a CA, a client certificate and bearer tokens."""

from __future__ import annotations

import asyncio
import ssl
import types
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pykubemark.cluster.pki import issue_client_cert, write_pki
from pykubemark.hollow import kubelet_auth
from pykubemark.hollow.kubelet_api import ApiOptions, KubeletApi
from pykubemark.hollow.kubelet_auth import (
    KubeletAuth,
    Refused,
    User,
    bearer_token,
    cert_user,
    fine_grained_authz,
    subresources,
)
from pykubemark.kube.client import ApiError

NODE = "hollow-0"


@pytest.mark.parametrize(("path", "fine", "coarse"), [
    ("/pods", ["pods", "proxy"], ["proxy"]),
    ("/pods/", ["pods", "proxy"], ["proxy"]),
    ("/podsx", ["proxy"], ["proxy"]),
    ("/healthz", ["healthz", "proxy"], ["proxy"]),
    ("/runningpods/", ["pods", "proxy"], ["proxy"]),
    ("/stats/summary", ["stats"], ["stats"]),
    ("/stats", ["stats"], ["stats"]),
    ("/statsfoo", ["proxy"], ["proxy"]),
    ("/metrics/resource", ["metrics"], ["metrics"]),
    ("/metrics", ["metrics"], ["metrics"]),
    ("/logs/kubelet.log", ["log"], ["log"]),
    ("/containerLogs/ns/pod/c", ["proxy"], ["proxy"]),
    ("/exec/ns/pod/c", ["proxy"], ["proxy"]),
    ("/configz", ["configz", "proxy"], ["proxy"]),
    ("/checkpoint/ns/pod/c", ["checkpoint"], ["checkpoint"]),
])
def test_subresources_as_the_kubelet_maps_paths(path: str, fine: list[str],
                                                coarse: list[str]) -> None:
    assert subresources(path, fine_grained=True) == fine
    assert subresources(path, fine_grained=False) == coarse


def test_fine_grained_authorization_from_1_33() -> None:
    assert fine_grained_authz("v1.37.2") and fine_grained_authz("v1.33.0")
    assert not fine_grained_authz("v1.32.9") and not fine_grained_authz("v1.20.2")


def test_certificate_and_token_users() -> None:
    peercert = {"subject": ((("organizationName", "system:masters"),),
                            (("organizationName", "other"),),
                            (("commonName", "kube-apiserver-kubelet-client"),))}
    assert cert_user(peercert) == User("kube-apiserver-kubelet-client",
                                       groups=("system:masters", "other"))
    assert cert_user({"subject": ()}) is None
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None


class FakeApiserver:
    """TokenReviews and SubjectAccessReviews answered from tables, each one counted."""

    def __init__(self) -> None:
        self.tokens: dict[str, dict[str, Any]] = {}
        self.allowed: set[tuple[str, str]] = set()  # (user, subresource)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.failures: list[BaseException] = []
        self.delay = 0.0

    async def object(self, method: str, path: str, *, body: Any = None,
                     **kwargs: Any) -> dict[str, Any]:
        assert method == "POST"
        self.calls.append((path.rsplit("/", 1)[-1], body["spec"]))
        await asyncio.sleep(self.delay)
        if self.failures:
            raise self.failures.pop(0)
        if path.endswith("/tokenreviews"):
            user = self.tokens.get(body["spec"]["token"])
            return {"status": {"authenticated": user is not None, "user": user or {}}}
        attributes = body["spec"]["resourceAttributes"]
        assert attributes["resource"] == "nodes" and attributes["name"] == NODE
        allowed = (body["spec"]["user"], attributes["subresource"]) in self.allowed
        return {"status": {"allowed": allowed}}

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def check(auth: KubeletAuth, api: FakeApiserver, path: str = "/stats/summary", *,
                token: str | None = None, peercert: dict[str, Any] | None = None,
                method: str = "GET") -> User | int | None:
    try:
        return await auth.check(NODE, api, method, path, peercert,  # type: ignore[arg-type]
                                f"Bearer {token}" if token else None)
    except Refused as refused:
        return refused.status


def test_anonymous_requests_are_refused_without_asking_anyone() -> None:
    async def body() -> None:
        api = FakeApiserver()
        auth = KubeletAuth()
        assert await check(auth, api) == 401
        assert await check(auth, api, peercert={"subject": ()}) == 401
        assert api.calls == []
        assert await check(KubeletAuth(anonymous=True), api) is None
        assert api.calls == []
    asyncio.run(body())


def test_tokens_reviewed_once_per_ttl_and_access_reviewed_as_the_node() -> None:
    async def body() -> None:
        clock = Clock()
        api = FakeApiserver()
        api.tokens["good"] = {"username": "alice", "uid": "u1", "groups": ["team"],
                              "extra": {"scope": ["x"]}}
        api.tokens["nobody"] = {"username": "bob"}
        api.allowed.add(("alice", "stats"))
        auth = KubeletAuth(clock=clock)
        assert await check(auth, api, token="bad") == 401
        assert await check(auth, api, token="bad") == 401  # the failure is cached too
        assert api.kinds() == ["tokenreviews"]
        user = await check(auth, api, token="good")
        assert user == User("alice", "u1", ("team", "system:authenticated"),
                            (("scope", ("x",)),))
        sar = api.calls[-1][1]
        assert sar == {"user": "alice", "uid": "u1", "groups": ["team", "system:authenticated"],
                       "extra": {"scope": ["x"]},
                       "resourceAttributes": {"verb": "get", "version": "v1",
                                              "resource": "nodes", "subresource": "stats",
                                              "name": NODE}}
        assert await check(auth, api, token="good") == user
        assert api.kinds() == ["tokenreviews", "tokenreviews", "subjectaccessreviews"]
        # a user without rights: 403 naming what it was refused
        with pytest.raises(Refused) as refused:
            await auth.check(NODE, api, "GET", "/pods", None,  # type: ignore[arg-type]
                             "Bearer nobody")
        assert refused.value.status == 403
        assert refused.value.text == ("Forbidden (user=bob, verb=get, resource=nodes, "
                                      "subresource(s)=[pods proxy])\n")
        assert api.kinds()[-2:] == ["subjectaccessreviews"] * 2
        # a denial is trusted 30 s, an allowance 5 min, a token's review 2 min
        calls = len(api.calls)
        assert await check(auth, api, "/pods", token="nobody") == 403
        assert len(api.calls) == calls
        clock.now += 31
        assert await check(auth, api, "/pods", token="nobody") == 403
        assert api.kinds()[calls:] == ["subjectaccessreviews"] * 2
        clock.now += 90  # 121 s after the first reviews: the tokens are reviewed again
        calls = len(api.calls)
        assert await check(auth, api, token="good") == user
        assert api.kinds()[calls:] == ["tokenreviews"]
        clock.now += 200  # 321 s: the allowance too
        calls = len(api.calls)
        assert await check(auth, api, token="good") == user
        assert api.kinds()[calls:] == ["tokenreviews", "subjectaccessreviews"]
    asyncio.run(body())


def test_fine_grained_subresource_first_then_proxy() -> None:
    async def body() -> None:
        api = FakeApiserver()
        api.allowed.add(("metrics-server", "proxy"))
        auth = KubeletAuth()
        cert = {"subject": ((("commonName", "metrics-server"),),)}
        assert await check(auth, api, "/pods", peercert=cert) == User(
            "metrics-server", groups=("system:authenticated",))
        assert [spec["resourceAttributes"]["subresource"] for _, spec in api.calls] \
            == ["pods", "proxy"]
        assert await check(auth, api, "/exec/ns/p/c", peercert=cert, method="POST") is not None
        assert api.calls[-1][1]["resourceAttributes"]["verb"] == "create"
    asyncio.run(body())


def test_failed_reviews_are_retried_then_refused_and_never_cached(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kubelet_auth, "RETRY_INITIAL", 0.0)

    async def body() -> None:
        api = FakeApiserver()
        api.tokens["good"] = {"username": "alice"}
        api.allowed.add(("alice", "stats"))
        auth = KubeletAuth()
        internal = ApiError(500, b'{"reason": "InternalError"}')
        api.failures = [ConnectionResetError(), internal]
        assert isinstance(await check(auth, api, token="good"), User)
        assert len(api.calls) == 4  # 2 failed token reviews, then one of each
        api.failures = [ApiError(403, b'{"reason": "Forbidden"}')]
        assert await check(auth, api, token="other") == 401  # not retried
        api.failures = [internal] * 5
        with pytest.raises(Refused) as refused:
            await auth.check(NODE, api, "GET", "/metrics", None,  # type: ignore[arg-type]
                             "Bearer good")
        assert refused.value.status == 500
        assert "Authorization error (user=alice, verb=get" in refused.value.text
        calls = len(api.calls)
        assert await check(auth, api, "/metrics", token="good") == 403  # asked again
        assert len(api.calls) == calls + 1
    asyncio.run(body())


def test_concurrent_requests_share_one_review_and_expired_answers_are_dropped() -> None:
    async def body() -> None:
        clock = Clock()
        api = FakeApiserver()
        api.delay = 0.01
        api.tokens["good"] = {"username": "alice"}
        api.allowed.add(("alice", "stats"))
        auth = KubeletAuth(clock=clock)
        users = await asyncio.gather(*(check(auth, api, token="good") for _ in range(20)))
        assert all(isinstance(u, User) for u in users)
        assert api.kinds() == ["tokenreviews", "subjectaccessreviews"]
        for i in range(50):
            await check(auth, api, token=f"t{i}")
            clock.now += 10
        assert len(auth.tokens) <= 13  # 2 min of them, not every token ever seen
        assert len(auth.decisions) <= 1
    asyncio.run(body())


# -- the server, in-process ----------------------------------------------------------------
def test_the_api_over_https_certificates_tokens_and_anonymous(tmp_path: Path) -> None:
    pki = write_pki(tmp_path / "pki")
    cert, key = issue_client_cert(pki["ca_cert"], pki["ca_key"],
                                  "kube-apiserver-kubelet-client", ("system:masters",))
    (tmp_path / "client.pem").write_bytes(cert + key)
    api = FakeApiserver()
    api.tokens["good"] = {"username": "alice"}
    api.tokens["nobody"] = {"username": "bob"}
    api.allowed |= {("alice", "pods"), ("kube-apiserver-kubelet-client", "metrics")}
    kubelet = types.SimpleNamespace(
        name=NODE, client=api, profile=types.SimpleNamespace(kubelet_version="v1.37.2"),
        up=asyncio.Event(), pods=types.SimpleNamespace(pods={}))

    def client_context(with_cert: bool) -> ssl.SSLContext:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if with_cert:
            context.load_cert_chain(str(tmp_path / "client.pem"))
        return context

    async def get(url: str, *, with_cert: bool = False, token: str | None = None
                  ) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession() as session, session.get(
                url, ssl=client_context(with_cert), headers=headers) as response:
            return response.status, await response.text()

    async def body(anonymous: bool, ca: Path | None, ca_data: bytes | None
                   ) -> dict[str, tuple[int, str]]:
        kubelet.up.set()
        server = KubeletApi({NODE: kubelet}, ApiOptions(anonymous=anonymous, client_ca=ca),
                            client_ca_data=ca_data)
        (host, port), = (await server.start({NODE: "127.0.0.77"})).values()
        base = f"https://{host}:{port}"
        try:
            return {
                "anonymous": await get(f"{base}/pods"),
                "token with rights": await get(f"{base}/pods", token="good"),
                "token without": await get(f"{base}/pods", token="nobody"),
                "unknown token": await get(f"{base}/pods", token="junk"),
                "certificate": await get(f"{base}/metrics/resource", with_cert=True),
                "certificate, not allowed": await get(f"{base}/pods", with_cert=True),
            }
        finally:
            await server.stop()

    ca_data = pki["ca_cert"].read_bytes()
    answers = asyncio.run(body(False, None, ca_data))  # the kubeconfig's CA
    assert answers["anonymous"] == (401, "Unauthorized")
    assert answers["token with rights"][0] == 200
    assert answers["token without"][0] == 403
    assert answers["unknown token"] == (401, "Unauthorized")
    assert answers["certificate"][0] == 200
    assert answers["certificate, not allowed"][0] == 403
    assert asyncio.run(body(False, pki["ca_cert"], None))["certificate"][0] == 200
    # no CA at all: certificates are not asked for, and authenticate nobody
    assert asyncio.run(body(False, None, None))["certificate"][0] == 401
    answers = asyncio.run(body(True, None, None))
    assert {status for status, _ in answers.values()} == {200}


def test_a_shared_user_without_review_rights_is_warned_about(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pykubemark.hollow import launch
    from pykubemark.kube.config import KubeConfig

    config = KubeConfig(server="https://127.0.0.1:1", ssl_context=None, source="kc")
    rights: set[str] = set()
    monkeypatch.setattr(launch, "may", lambda _config, _verb, resource, _group: resource in rights)
    assert "every request" in launch.review_rights_warning(config, "shared", ApiOptions())
    rights.add("subjectaccessreviews")
    assert "bearer tokens" in launch.review_rights_warning(config, "shared", ApiOptions())
    rights.add("tokenreviews")
    assert launch.review_rights_warning(config, "shared", ApiOptions()) == ""
    rights.clear()
    assert launch.review_rights_warning(config, "bootstrap", ApiOptions()) == ""
    assert launch.review_rights_warning(config, "shared", ApiOptions(anonymous=True)) == ""
