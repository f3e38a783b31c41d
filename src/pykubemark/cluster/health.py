"""Health probes of the local control plane, over loopback HTTP(S)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path


def _context(ca_cert: Path | None) -> ssl.SSLContext:
    if ca_cert is None:
        # The scheduler and controller-manager serve self-signed certificates.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=str(ca_cert))


def get(url: str, *, token: str | None = None, ca_cert: Path | None = None,
        timeout: float = 3.0) -> tuple[int, bytes]:
    """(status, body); status 0 when nothing answered."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    ctx = _context(ca_cert) if url.startswith("https") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=ctx) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, ValueError):
        return 0, b""


def healthy(url: str, *, token: str | None = None, ca_cert: Path | None = None) -> bool:
    status, body = get(url, token=token, ca_cert=ca_cert)
    if status != 200:
        return False
    if url.endswith("/health"):  # etcd answers JSON
        try:
            return json.loads(body).get("health") == "true"
        except ValueError:
            return False
    return body.strip() == b"ok"
