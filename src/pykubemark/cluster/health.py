"""Health probes of the local control plane, over loopback HTTP(S), through `kube`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import orjson


def get(url: str, *, token: str | None = None, ca_cert: Path | None = None,
        timeout: float = 3.0) -> tuple[int, bytes]:
    """(status, body): 200 for any 2xx, 0 when nothing answered. Without ``ca_cert`` an https
    server is not verified: the scheduler and controller-manager serve self-signed
    certificates."""
    # Imported on the first probe, not with this module: `down` and the other commands
    # that load the cluster but never probe it need not import aiohttp (~0.3 s of CPU).
    from pykubemark.kube.blocking import call
    from pykubemark.kube.client import ApiError
    from pykubemark.kube.config import server_config

    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        config = server_config(f"{parts.scheme}://{parts.netloc}", token=token,
                               ca_cert=ca_cert, insecure=ca_cert is None)
        return 200, call(config, "GET", path, timeout=timeout)
    except ApiError as exc:
        return exc.status, exc.body
    except (OSError, ValueError):
        return 0, b""


def healthy(url: str, *, token: str | None = None, ca_cert: Path | None = None) -> bool:
    status, body = get(url, token=token, ca_cert=ca_cert)
    if status != 200:
        return False
    if url.endswith("/health") and body.lstrip().startswith(b"{"):  # etcd answers JSON
        try:
            return orjson.loads(body).get("health") == "true"
        except (orjson.JSONDecodeError, AttributeError):
            return False
    if b"Prometheus Server is Ready" in body:
        return True
    return body.strip().lower() == b"ok"  # CoreDNS's health and ready plugins say OK
