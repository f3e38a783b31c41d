"""Who may call a hollow kubelet's API, decided as a kubelet with its configuration file's
defaults decides (cmd/kubelet/app/auth.go and pkg/kubelet/server/auth.go of 1.37):

- authentication: a client certificate the client CA signed (the user is its CN, its
  groups its O's), else a bearer token the apiserver vouches for (a TokenReview, its
  answer cached 2 min whichever it was); anything else is anonymous, refused with 401;
- authorization: a SubjectAccessReview of the request's verb on ``nodes/<subresource>``
  named after the node, the subresource from the path (stats, metrics, log, pods,
  healthz..., else proxy); an allowed answer is cached 5 min, a denial 30 s; a user not
  allowed gets 403, a review that fails 500.

The reviews go through the node's own client, as a kubelet's through its own clientset:
the Node authorizer lets every node create both. ``anonymous`` is a kubelet's command
line defaults instead (``--anonymous-auth``, ``--authorization-mode=AlwaysAllow``):
anyone may do anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pykubemark.kube.client import NETWORK_ERRORS, ApiError, Client

log = logging.getLogger("pykubemark.hollow.api")

TOKENREVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
SUBJECTACCESSREVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
#: KubeletConfiguration defaults: authentication.webhook.cacheTTL and
#: authorization.webhook.cacheAuthorizedTTL / cacheUnauthorizedTTL.
TOKEN_TTL = 120.0
ALLOWED_TTL = 300.0
DENIED_TTL = 30.0
#: DefaultAuthWebhookRetryBackoff: 500 ms, factor 1.5, jitter 0.2, 5 tries.
RETRY_INITIAL, RETRY_FACTOR, RETRY_JITTER, RETRY_STEPS = 0.5, 1.5, 0.2, 5
#: What webhook.DefaultShouldRetry retries besides a dropped connection: an internal
#: error, a timeout, too many requests.
RETRY_STATUSES = frozenset((429, 500, 504))
AUTHENTICATED = "system:authenticated"

#: The kubelet's paths and the subresource each is authorized as (KubeletFineGrainedAuthz,
#: GA since 1.36, beta and on since 1.33, adds the first group, tried before ``proxy``).
FINE_GRAINED = (("/allocatedPods", "pods"), ("/pods", "pods"), ("/healthz", "healthz"),
                ("/configz", "configz"), ("/runningpods/", "pods"))
COARSE = (("/stats/", "stats"), ("/metrics", "metrics"), ("/logs/", "log"),
          ("/checkpoint/", "checkpoint"), ("/statusz", "statusz"), ("/flagz", "configz"))
VERBS = {"POST": "create", "GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True)
class User:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


class Refused(Exception):
    """The answer a kubelet gives a request it will not serve."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


UNAUTHORIZED = Refused(401, "Unauthorized")


def _is_subpath(subpath: str, path: str) -> bool:
    path = path.rstrip("/")
    return subpath == path or (subpath.startswith(path) and subpath[len(path)] == "/")


def subresources(path: str, fine_grained: bool = True) -> list[str]:
    """The subresources of ``nodes`` a request to ``path`` is authorized as, in the order
    the kubelet tries them (``GetRequestAttributes``)."""
    found = [sub for prefix, sub in FINE_GRAINED if _is_subpath(path, prefix)][:1] \
        if fine_grained else []
    found.append(next((sub for prefix, sub in COARSE if _is_subpath(path, prefix)), "proxy"))
    return found


def fine_grained_authz(kubelet_version: str) -> bool:
    """Whether a kubelet of this version has KubeletFineGrainedAuthz on (1.33 and later)."""
    try:
        major, minor = (int(part) for part in kubelet_version.lstrip("v").split(".")[:2])
    except ValueError:
        return True
    return (major, minor) >= (1, 33)


def cert_user(peercert: Mapping[str, Any]) -> User | None:
    """x509.CommonNameUserConversion: the user is the CN, the groups the O's."""
    names = [(key, value) for rdn in peercert.get("subject", ()) for key, value in rdn]
    common = next((value for key, value in names if key == "commonName"), "")
    if not common:
        return None
    return User(common, groups=tuple(v for k, v in names if k == "organizationName"))


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer`` header; None for any other header."""
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


K = TypeVar("K")
V = TypeVar("V")


@dataclass
class TtlCache(Generic[K, V]):
    """Answers kept for a time each, one fetch at a time per key (client-go's caches
    coalesce concurrent misses too); expired entries are dropped as new ones come."""

    clock: Callable[[], float] = time.monotonic
    _entries: dict[K, tuple[float, V]] = field(default_factory=dict)
    _pending: dict[K, asyncio.Future[V]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: K, fetch: Callable[[], Awaitable[V]],
                  ttl: Callable[[V], float]) -> V:
        while True:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > self.clock():
                return entry[1]
            pending = self._pending.get(key)
            if pending is None:
                break
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise
                # the request that was fetching it went away: fetch it for this one
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            value = await fetch()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            # an error is not cached: the next request asks again
            future.set_exception(exc)
            future.exception()  # retrieved, whether anyone else waits or not
            raise
        finally:
            del self._pending[key]
        future.set_result(value)
        now = self.clock()
        self._entries.pop(key, None)  # renewed at the end: the oldest entries first
        self._entries[key] = (now + ttl(value), value)
        self._expire(now)
        return value

    def _expire(self, now: float) -> None:
        # the oldest entries come first, so the scan stops at the first one still valid
        # (with two TTLs, a longer-lived one may keep expired ones behind it for a while,
        # never longer than its own TTL: they are never answered from, only kept)
        expired = [key for key, _ in itertools.takewhile(lambda item: item[1][0] <= now,
                                                         self._entries.items())]
        for key in expired:
            del self._entries[key]


async def _with_retries(call: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    delay = RETRY_INITIAL
    for step in range(RETRY_STEPS):
        try:
            return await call()
        except ApiError as exc:
            if exc.status not in RETRY_STATUSES or step == RETRY_STEPS - 1:
                raise
        except NETWORK_ERRORS:
            if step == RETRY_STEPS - 1:
                raise
        await asyncio.sleep(delay * (1 + RETRY_JITTER * random.random()))
        delay *= RETRY_FACTOR
    raise AssertionError("unreachable")


class KubeletAuth:
    """Authentication and authorization for every node of a process, each node's
    reviews made with its own client and cached under its own name."""

    def __init__(self, *, anonymous: bool = False, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.anonymous = anonymous
        self.tokens: TtlCache[tuple[str, bytes], User | None] = TtlCache(clock)
        #: The webhook authorizer's cache: allowed kept 5 min, denied 30 s.
        self.decisions: TtlCache[str, bool] = TtlCache(clock)
        #: Reviews made (not answered from a cache), for tests and the curious.
        self.reviews = 0

    async def check(self, node: str, client: Client, method: str, path: str,
                    peercert: Mapping[str, Any] | None, authorization: str | None,
                    fine_grained: bool = True) -> User | None:
        """The user of a request this node serves; raises `Refused` otherwise."""
        if self.anonymous:
            return None
        user = await self.authenticate(node, client, peercert, authorization)
        await self.authorize(node, client, user, method, path, fine_grained)
        return user

    async def authenticate(self, node: str, client: Client,
                           peercert: Mapping[str, Any] | None,
                           authorization: str | None) -> User:
        user = cert_user(peercert) if peercert else None
        if user is None and authorization is not None:
            token = bearer_token(authorization)
            if token is None:
                raise UNAUTHORIZED
            key = (node, hashlib.sha256(token.encode()).digest())
            try:
                user = await self.tokens.get(key, lambda: self._review_token(client, token),
                                             lambda _answer: TOKEN_TTL)
            except (ApiError, *NETWORK_ERRORS, ValueError) as exc:
                log.warning("%s: token review failed: %s", node, exc)
                raise UNAUTHORIZED from None
        if user is None:
            raise UNAUTHORIZED
        if AUTHENTICATED not in user.groups:
            user = User(user.name, user.uid, (*user.groups, AUTHENTICATED), user.extra)
        return user

    async def _review_token(self, client: Client, token: str) -> User | None:
        self.reviews += 1
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token}}
        answer = await _with_retries(lambda: client.object("POST", TOKENREVIEWS, body=body))
        status = answer.get("status") or {}
        if not status.get("authenticated"):
            return None
        info = status.get("user") or {}
        extra = tuple(sorted((str(k), tuple(v or ())) for k, v in
                             (info.get("extra") or {}).items()))
        return User(str(info.get("username", "")), str(info.get("uid", "")),
                    tuple(info.get("groups") or ()), extra)

    async def authorize(self, node: str, client: Client, user: User, method: str, path: str,
                        fine_grained: bool = True) -> None:
        verb = VERBS.get(method, "")
        tried = subresources(path, fine_grained)
        for subresource in tried:
            spec: dict[str, Any] = {
                "user": user.name, "groups": list(user.groups),
                "resourceAttributes": {"verb": verb, "version": "v1", "resource": "nodes",
                                       "subresource": subresource, "name": node}}
            if user.uid:
                spec["uid"] = user.uid
            if user.extra:
                spec["extra"] = {k: list(v) for k, v in user.extra}
            key = repr(sorted(spec.items()))
            try:
                allowed = await self._allowed(key, client, spec)
            except (ApiError, *NETWORK_ERRORS, ValueError) as exc:
                log.warning("%s: subject access review failed: %s", node, exc)
                raise Refused(500, f"Authorization error (user={user.name}, verb={verb}, "
                                   f"resource=nodes, subresource={subresource})") from None
            if allowed:
                return
        raise Refused(403, f"Forbidden (user={user.name}, verb={verb}, resource=nodes, "
                           f"subresource(s)=[{' '.join(tried)}])\n")

    async def _allowed(self, key: str, client: Client, spec: dict[str, Any]) -> bool:
        async def review() -> bool:
            self.reviews += 1
            body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                    "spec": spec}
            answer = await _with_retries(
                lambda: client.object("POST", SUBJECTACCESSREVIEWS, body=body))
            return bool((answer.get("status") or {}).get("allowed"))

        return await self.decisions.get(
            key, review, lambda allowed: ALLOWED_TTL if allowed else DENIED_TTL)
