"""The kubelet's TLS bootstrap (kubelet 1.20, pkg/kubelet/certificate/bootstrap): each
hollow node gets the client certificate a real kubelet would get, so the apiserver
authenticates it as ``system:node:<name>`` in ``system:nodes`` — the Node authorizer,
NodeRestriction and APF's ``system-nodes`` flow schema then treat it as a node.

As the kubelet does it: a private key kept in ``kubelet-client.key.tmp`` while waiting
(so a restart asks again with the same key and CSR name), a CSR named
``node-csr-<digest of key, subject and usages>`` for signer
``kubernetes.io/kube-apiserver-client-kubelet`` (usages digital signature, key
encipherment, client auth), then LIST+WATCH of that one CSR until it is issued, for at
most an hour. Certificate and key land in ``<cert-dir>/<node>/kubelet-client-current.pem``
and are reused while valid. Many nodes at once share a bound on CSRs in flight, so a
fleet does not flood the apiserver and the approving controller.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import logging
import os
from pathlib import Path

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pykubemark.kube.client import ApiError, Client
from pykubemark.kube.config import KubeConfig

log = logging.getLogger(__name__)
SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
USAGES = ("digital signature", "key encipherment", "client auth")
CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
CURRENT = "kubelet-client-current.pem"
TMP_KEY = "kubelet-client.key.tmp"
WAIT = 3600.0  # the kubelet's bound on waiting for a certificate
#: Reuse a cached certificate only while it has at least this long to live.
MIN_REMAINING = dt.timedelta(hours=1)


class BootstrapError(Exception):
    """A node's certificate was denied, failed, or not issued in time."""


def cert_dir_for(base: Path, config: KubeConfig) -> Path:
    """One cache per apiserver and CA, so a new cluster on the same address never gets
    certificates its CA did not sign."""
    digest = hashlib.sha256(config.server.encode() + (config.ca_data or b"")).hexdigest()
    return base / digest[:16]


def still_valid(pem: Path) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(pem.read_bytes())
    except (OSError, ValueError):
        return False
    return cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > MIN_REMAINING


def _key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The pending key, reused across restarts as the kubelet reuses its .tmp key."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key
    except (OSError, ValueError):
        pass
    key = ec.generate_private_key(ec.SECP256R1())
    _write(path, key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.TraditionalOpenSSL,
                                   serialization.NoEncryption()))
    return key


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".writing")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)


def csr_name(key: ec.EllipticCurvePrivateKey, node: str) -> str:
    """The kubelet's digestedName: sha512/256 over key, subject and usages."""
    digest = hashlib.new("sha512_256")

    def write(data: bytes) -> None:
        digest.update(base64.urlsafe_b64encode(data).rstrip(b"=") + b"|")

    write(key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo))
    write(f"system:node:{node}".encode())
    write(b"system:nodes")
    for usage in USAGES:
        write(usage.encode())
    return "node-csr-" + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def csr_pem(key: ec.EllipticCurvePrivateKey, node: str) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}")])
    request = x509.CertificateSigningRequestBuilder().subject_name(subject)
    return request.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _issued(csr: dict) -> bytes | None:
    """The certificate once approved and issued; BootstrapError if denied or failed."""
    status = csr.get("status") or {}
    types = {c.get("type") for c in status.get("conditions") or []}
    if types & {"Denied", "Failed"}:
        raise BootstrapError(f"certificate request {csr['metadata']['name']} was "
                             f"{' and '.join(sorted(types & {'Denied', 'Failed'})).lower()}")
    if "Approved" in types and status.get("certificate"):
        return base64.b64decode(status["certificate"])
    return None


class NodeCredentials:
    """Per-node client certificates obtained through the CSR API with one bootstrap
    credential, cached under ``cert_dir``; at most ``concurrency`` requests in flight."""

    def __init__(self, bootstrap: Client, cert_dir: Path, *, concurrency: int = 50,
                 wait: float = WAIT) -> None:
        self.bootstrap = bootstrap
        self.cert_dir = cert_dir
        self.wait = wait
        self.requested = 0
        self.reused = 0
        self._slots = asyncio.Semaphore(concurrency)

    def pem(self, node: str) -> Path:
        return self.cert_dir / node / CURRENT

    async def config_for(self, node: str) -> KubeConfig:
        """The node's own KubeConfig, bootstrapping its certificate when needed."""
        pem = self.pem(node)
        if still_valid(pem):
            self.reused += 1
        else:
            async with self._slots:
                await asyncio.wait_for(self._bootstrap(node, pem), self.wait)
            self.requested += 1
        return self.bootstrap.config.with_client_cert(pem)

    async def _bootstrap(self, node: str, pem: Path) -> None:
        pem.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key_path = pem.parent / TMP_KEY
        key = _key(key_path)
        name = csr_name(key, node)
        body = {
            "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {"request": base64.b64encode(csr_pem(key, node)).decode(),
                     "signerName": SIGNER, "usages": list(USAGES)},
        }
        try:
            await self.bootstrap.create(CSRS, body)
        except ApiError as exc:
            if not exc.conflict:  # 409: asked before with this key; wait for that one
                raise
        cert = await self._wait_issued(name)
        _write(pem, cert + key_path.read_bytes())
        key_path.unlink(missing_ok=True)

    async def _wait_issued(self, name: str) -> bytes:
        """LIST then WATCH the one CSR, as client-go's WaitForCertificate does."""
        selector = {"fieldSelector": f"metadata.name={name}"}
        while True:
            listed = orjson.loads(await self.bootstrap.get(CSRS, selector))
            for item in listed.get("items") or []:
                if (cert := _issued(item)) is not None:
                    return cert
            params = {**selector, "watch": "true", "allowWatchBookmarks": "true",
                      "resourceVersion": listed["metadata"].get("resourceVersion", ""),
                      "timeoutSeconds": "300"}
            async for line in self.bootstrap.stream(CSRS, params):
                event = orjson.loads(line)
                if event.get("type") in ("ADDED", "MODIFIED"):
                    if (cert := _issued(event["object"])) is not None:
                        return cert
                elif event.get("type") == "ERROR":
                    break  # e.g. 410: list again
