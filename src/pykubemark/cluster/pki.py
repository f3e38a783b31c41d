"""Certificates and keys for a local control plane.

One CA signs the apiserver's serving certificate, so kubeconfigs can verify the server
instead of skipping TLS checks; a separate key pair signs service-account tokens.
EC P-256 keys keep ``up`` fast (RSA key generation is the slow part of a cold start).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pykubemark.files import write_atomic

SERVER_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
SERVER_IPS = ("127.0.0.1", "10.0.0.1")


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    write_atomic(path, key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ), mode=0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    write_atomic(path, cert.public_bytes(serialization.Encoding.PEM))


def _builder(subject: str, issuer: str, public_key, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
    )


def issue_client_cert(ca_cert: Path, ca_key: Path, common_name: str,
                      organizations: tuple[str, ...] = (), days: int = 365) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for a client signed by the cluster CA directly: for
    clients that cannot bootstrap through the CSR API (the Go kubemark's kubelets)."""
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), None)
    key = _key()
    names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    names.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(names))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.ExtendedKeyUsage([x509.OID_CLIENT_AUTH]), critical=False)
        .sign(signer, hashes.SHA256())  # type: ignore[arg-type]
    )
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def write_pki(directory: Path) -> dict[str, Path]:
    """Write CA, serving cert/key and service-account keys; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca_key, ca_cert = _ca("pykubemark-ca")
    server_key = _key()
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
    server_cert = (
        _builder("kube-apiserver", "pykubemark-ca", server_key.public_key(), 365)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    sa_key = _key()
    paths = {
        "ca_cert": directory / "ca.crt",
        "ca_key": directory / "ca.key",
        "server_cert": directory / "apiserver.crt",
        "server_key": directory / "apiserver.key",
        "sa_key": directory / "sa.key",
        "sa_pub": directory / "sa.pub",
    }
    _write_cert(paths["ca_cert"], ca_cert)
    _write_key(paths["ca_key"], ca_key)
    _write_cert(paths["server_cert"], server_cert)
    _write_key(paths["server_key"], server_key)
    _write_key(paths["sa_key"], sa_key)
    write_atomic(paths["sa_pub"], sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ))
    paths.update(write_front_proxy(directory))
    return paths


#: The aggregation layer's client, as kubeadm names it: the apiserver proxies requests
#: for an APIService (metrics.k8s.io) to its server with this certificate, the user in
#: X-Remote-User headers that the server trusts because of this CA.
FRONT_PROXY_CLIENT = "front-proxy-client"


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    cert = (
        _builder(name, name, key.public_key(), 3650)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def write_front_proxy(directory: Path) -> dict[str, Path]:
    """The aggregation layer's PKI (kubeadm's front-proxy-ca and front-proxy-client): a
    CA of its own, apart from the cluster CA, as the apiserver's
    --requestheader-client-ca-file, and the client certificate it proxies with
    (--proxy-client-cert-file)."""
    ca_key, ca_cert = _ca("front-proxy-ca")
    key = _key()
    cert = (
        _builder(FRONT_PROXY_CLIENT, "front-proxy-ca", key.public_key(), 365)
        .add_extension(x509.ExtendedKeyUsage([x509.OID_CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {
        "front_proxy_ca": directory / "front-proxy-ca.crt",
        "front_proxy_ca_key": directory / "front-proxy-ca.key",
        "front_proxy_client_cert": directory / "front-proxy-client.crt",
        "front_proxy_client_key": directory / "front-proxy-client.key",
    }
    _write_cert(paths["front_proxy_ca"], ca_cert)
    _write_key(paths["front_proxy_ca_key"], ca_key)
    _write_cert(paths["front_proxy_client_cert"], cert)
    _write_key(paths["front_proxy_client_key"], key)
    return paths


def issue_node_cert(directory: Path, common_name: str, organization: str,
                    name: str) -> tuple[Path, Path]:
    """A client certificate signed by the cluster's CA (``directory`` as written by
    `write_pki`), e.g. a real kubelet's ``system:node:NAME`` in ``system:nodes``; it also
    serves the kubelet's own port. Returns (cert, key) paths."""
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                         x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pykubemark-ca")]))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.OID_CLIENT_AUTH, x509.OID_SERVER_AUTH]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    paths = directory / f"{name}.crt", directory / f"{name}.key"
    _write_cert(paths[0], cert)
    _write_key(paths[1], key)
    return paths


def self_signed_serving_cert(common_name: str, ips: list[str],
                             days: int = 365) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for a server at ``ips``, self-signed as the kubelet's
    own when it is given none (``HOST@TIMESTAMP``): the apiserver does not verify a
    kubelet's serving certificate unless ``--kubelet-certificate-authority`` is set."""
    key = _key()
    cert = (
        _builder(common_name, common_name, key.public_key(), days)
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)]),
            critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))
