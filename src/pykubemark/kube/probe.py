"""Check, before starting anything, that the apiserver answers and accepts us."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp
import orjson

from pykubemark.errors import UserError
from pykubemark.kube.client import ApiError, Client
from pykubemark.kube.config import KubeConfig

T = TypeVar("T")


async def _allowed(client: Client, verb: str, resource: str, group: str) -> bool:
    # Ask rather than try, so the check adds no list or watch to what is measured.
    review = orjson.loads(await client.create(
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
         "spec": {"resourceAttributes": {"verb": verb, "resource": resource, "group": group}}}))
    return bool(review.get("status", {}).get("allowed"))


async def _probe(config: KubeConfig, verb: str, resource: str, group: str) -> dict[str, str]:
    async with Client(config) as client:
        version = orjson.loads(await client.get("/version"))
        if not await _allowed(client, verb, resource, group):
            raise UserError(f"the user of {config.source} may not {verb} {resource} "
                            f"on {config.server}")
        return version


async def _may(config: KubeConfig, verb: str, resource: str, group: str) -> bool:
    async with Client(config) as client:
        return await _allowed(client, verb, resource, group)


def may(config: KubeConfig, verb: str, resource: str, group: str = "",
        timeout: float = 10.0) -> bool:
    """Whether the user of ``config`` may do this (a SelfSubjectAccessReview)."""
    return _guarded(config, _may(config, verb, resource, group), timeout)


def check_server(config: KubeConfig, timeout: float = 10.0, *, verb: str = "create",
                 resource: str = "nodes", group: str = "") -> dict[str, str]:
    """The server's /version, or a UserError saying why it cannot be used."""
    return _guarded(config, _probe(config, verb, resource, group), timeout)


def _guarded(config: KubeConfig, probe: Coroutine[Any, Any, T], timeout: float) -> T:
    try:
        return asyncio.run(asyncio.wait_for(probe, timeout))
    except ApiError as exc:
        if exc.status in (401, 403):
            raise UserError(
                f"apiserver {config.server} rejected the credentials of {config.source} "
                f"({exc.status} {exc.reason or 'Unauthorized'})"
            ) from None
        raise UserError(f"apiserver {config.server} answered {exc.status}: {exc.message}") from None
    except aiohttp.ClientConnectorError as exc:
        reason = exc.os_error.strerror or str(exc.os_error) or "connection failed"
        raise UserError(f"cannot reach apiserver {config.server}: {reason}") from None
    except (aiohttp.ClientError, OSError) as exc:
        reason = str(exc).split(" [")[0] or type(exc).__name__
        raise UserError(f"cannot reach apiserver {config.server}: {reason}") from None
    except TimeoutError:
        raise UserError(f"apiserver {config.server} did not answer in {timeout:.0f}s") from None
