"""Check, before starting anything, that the apiserver answers and accepts us."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson

from pykubemark.errors import UserError
from pykubemark.kube.client import ApiError, Client
from pykubemark.kube.config import KubeConfig


async def _probe(config: KubeConfig) -> dict[str, str]:
    async with Client(config) as client:
        version = orjson.loads(await client.get("/version"))
        # /version is open to anyone; listing nodes proves the credentials work.
        await client.get("/api/v1/nodes", {"limit": "1"})
        return version


def check_server(config: KubeConfig, timeout: float = 10.0) -> dict[str, str]:
    """The server's /version, or a UserError saying why it cannot be used."""
    try:
        return asyncio.run(asyncio.wait_for(_probe(config), timeout))
    except ApiError as exc:
        if exc.status in (401, 403):
            raise UserError(
                f"apiserver {config.server} rejected the credentials of {config.source} "
                f"({exc.status} {exc.reason or 'Unauthorized'})"
            ) from None
        raise UserError(f"apiserver {config.server} answered {exc.status}: {exc.message}") from None
    except (aiohttp.ClientError, OSError) as exc:
        reason = str(exc).split(" [")[0] or type(exc).__name__
        raise UserError(f"cannot reach apiserver {config.server}: {reason}") from None
    except TimeoutError:
        raise UserError(f"apiserver {config.server} did not answer in {timeout:.0f}s") from None
