"""TLS bootstrap's pure parts: the CSR the kubelet would send, its name, the cache."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pykubemark.kube import bootstrap
from pykubemark.kube.config import KubeConfig


def test_csr_is_for_the_node_user_in_system_nodes() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.load_pem_x509_csr(bootstrap.csr_pem(key, "hollow-3"))
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
        "system:node:hollow-3"
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == \
        "system:nodes"
    assert csr.is_signature_valid


def test_csr_name_depends_on_key_and_node_only() -> None:
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    name = bootstrap.csr_name(key, "n-1")
    assert name == bootstrap.csr_name(key, "n-1")  # a restart asks under the same name
    assert name.startswith("node-csr-") and len(name) == len("node-csr-") + 43
    assert name != bootstrap.csr_name(other, "n-1")
    assert name != bootstrap.csr_name(key, "n-2")


def _status(*conditions: str, cert: bytes = b"") -> dict:
    return {"metadata": {"name": "node-csr-x"},
            "status": {"conditions": [{"type": c} for c in conditions],
                       **({"certificate": base64.b64encode(cert).decode()} if cert else {})}}


def test_issued_only_when_approved_and_signed() -> None:
    assert bootstrap._issued(_status()) is None
    assert bootstrap._issued(_status("Approved")) is None  # approved, not yet signed
    assert bootstrap._issued(_status("Approved", cert=b"PEM")) == b"PEM"


@pytest.mark.parametrize("condition", ["Denied", "Failed"])
def test_denied_or_failed_is_an_error(condition: str) -> None:
    with pytest.raises(bootstrap.BootstrapError, match=condition.lower()):
        bootstrap._issued(_status(condition))


def _cert(tmp_path: Path, days: float) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "system:node:n")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256()))
    path = tmp_path / "kubelet-client-current.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_cached_certificate_is_reused_only_while_valid(tmp_path: Path) -> None:
    assert bootstrap.still_valid(_cert(tmp_path, 300))
    assert not bootstrap.still_valid(_cert(tmp_path, 1 / 48))  # half an hour left
    assert not bootstrap.still_valid(tmp_path / "missing.pem")


def test_cache_is_per_server_and_ca(tmp_path: Path) -> None:
    def config(server: str, ca: bytes) -> KubeConfig:
        return KubeConfig(server=server, ssl_context=None, ca_data=ca)

    a = bootstrap.cert_dir_for(tmp_path, config("https://127.0.0.1:6443", b"ca-1"))
    assert a == bootstrap.cert_dir_for(tmp_path, config("https://127.0.0.1:6443", b"ca-1"))
    assert a != bootstrap.cert_dir_for(tmp_path, config("https://127.0.0.1:6443", b"ca-2"))
    assert a != bootstrap.cert_dir_for(tmp_path, config("https://127.0.0.1:7443", b"ca-1"))
