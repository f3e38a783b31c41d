"""Kubeconfig files for the local cluster's users (admin, components, hollow nodes)."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from pykubemark.files import write_atomic


def write_kubeconfig(path: Path, *, server: str, ca_cert: Path, user: str, token: str = "",
                     cluster: str, client_cert: bytes = b"", client_key: bytes = b"") -> Path:
    """A kubeconfig authenticating with a token, or with a client certificate and key."""
    credentials: dict[str, str] = {"token": token}
    if client_cert:
        credentials = {"client-certificate-data": base64.b64encode(client_cert).decode(),
                       "client-key-data": base64.b64encode(client_key).decode()}
    data = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": cluster,
            "cluster": {
                "server": server,
                "certificate-authority-data": base64.b64encode(ca_cert.read_bytes()).decode(),
            },
        }],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
        "preferences": {},
    }
    return write_atomic(path, yaml.safe_dump(data, sort_keys=False), mode=0o600)
