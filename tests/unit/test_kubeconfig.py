"""Kubeconfig parsing: credentials, TLS settings, and one-line UserErrors naming the file."""

from __future__ import annotations

import base64
import datetime as dt
import ssl
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pykubemark.errors import UserError
from pykubemark.kube.config import load_kubeconfig


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def cert_and_key() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pykubemark-test-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def kubeconfig(cluster: dict[str, Any] | None = None, user: dict[str, Any] | None = None,
               **top: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "main",
        "contexts": [{"name": "main", "context": {"cluster": "c1", "user": "u1"}}],
        "clusters": [{"name": "c1", "cluster": cluster if cluster is not None else {
            "server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u1", "user": user if user is not None else {"token": "abc"}}],
    }
    doc.update(top)
    return doc


def write(tmp_path: Path, doc: Any, name: str = "config") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def user_error(path: Path, **kw: Any) -> str:
    with pytest.raises(UserError) as info:
        load_kubeconfig(path, **kw)
    assert info.value.exit_code == 2
    message = info.value.format_message()
    assert "\n" not in message, message
    assert str(path) in message, message
    return message


# -- good files ---------------------------------------------------------------------------
def test_token_and_insecure_skip(tmp_path: Path) -> None:
    path = write(tmp_path, kubeconfig())
    config = load_kubeconfig(path)
    assert config.server == "https://127.0.0.1:6443"
    assert config.headers == {"Authorization": "Bearer abc"}
    assert config.source == str(path)
    assert config.tls_server_name is None
    ctx = config.ssl_context
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_NONE
    assert ctx.check_hostname is False


def test_verification_on_by_default(tmp_path: Path) -> None:
    path = write(tmp_path, kubeconfig(cluster={"server": "https://k8s.example:6443/"}))
    config = load_kubeconfig(path)
    assert config.server == "https://k8s.example:6443"  # trailing slash dropped
    assert config.ssl_context is not None
    assert config.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert config.ssl_context.check_hostname is True


def test_plain_http_has_no_tls(tmp_path: Path) -> None:
    path = write(tmp_path, kubeconfig(cluster={"server": "http://127.0.0.1:8080"}))
    assert load_kubeconfig(path).ssl_context is None


def test_token_file_relative_to_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    path = write(tmp_path, kubeconfig(user={"tokenFile": "token"}))
    assert load_kubeconfig(path).headers == {"Authorization": "Bearer s3cret"}


def test_basic_auth(tmp_path: Path) -> None:
    path = write(tmp_path, kubeconfig(user={"username": "admin", "password": "pw"}))
    header = load_kubeconfig(path).headers["Authorization"]
    assert header == "Basic " + b64("admin:pw")


def test_no_user_means_no_headers(tmp_path: Path) -> None:
    doc = kubeconfig()
    doc["contexts"][0]["context"] = {"cluster": "c1"}
    assert load_kubeconfig(write(tmp_path, doc)).headers == {}


def test_client_certificate_data_and_ca_data(tmp_path: Path, cert_and_key,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = cert_and_key
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    path = write(tmp_path, kubeconfig(
        cluster={"server": "https://127.0.0.1:6443", "certificate-authority-data": b64(cert),
                 "tls-server-name": "kubernetes"},
        user={"client-certificate-data": b64(cert), "client-key-data": b64(key)},
    ))
    config = load_kubeconfig(path)
    assert config.headers == {}
    assert config.tls_server_name == "kubernetes"
    ctx = config.ssl_context
    assert ctx is not None
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    subjects = [dict(item[0] for item in c["subject"]) for c in ctx.get_ca_certs()]
    assert {"commonName": "pykubemark-test-ca"} in subjects
    # the key material written for load_cert_chain is removed again
    assert list(scratch.iterdir()) == []


def test_client_certificate_files_relative(tmp_path: Path, cert_and_key) -> None:
    cert, key = cert_and_key
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "client.crt").write_bytes(cert)
    (tmp_path / "pki" / "client.key").write_bytes(key)
    (tmp_path / "pki" / "ca.crt").write_bytes(cert)
    path = write(tmp_path, kubeconfig(
        cluster={"server": "https://127.0.0.1:6443", "certificate-authority": "pki/ca.crt"},
        user={"client-certificate": "pki/client.crt", "client-key": str(tmp_path / "pki" /
                                                                        "client.key")},
    ))
    ctx = load_kubeconfig(path).ssl_context
    assert ctx is not None
    assert any(dict(i[0] for i in c["subject"]).get("commonName") == "pykubemark-test-ca"
               for c in ctx.get_ca_certs())


def test_context_argument_and_kubeconfig_env(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    doc = kubeconfig()
    doc["contexts"].append({"name": "other", "context": {"cluster": "c2", "user": "u2"}})
    doc["clusters"].append({"name": "c2", "cluster": {"server": "http://10.0.0.1:8080"}})
    doc["users"].append({"name": "u2", "user": {"token": "xyz"}})
    path = write(tmp_path, doc)
    monkeypatch.setenv("KUBECONFIG", f"{path}:{tmp_path / 'ignored'}")
    config = load_kubeconfig(None, context="other")
    assert config.server == "http://10.0.0.1:8080"
    assert config.headers == {"Authorization": "Bearer xyz"}
    assert config.source == str(path)
    assert load_kubeconfig().server == "https://127.0.0.1:6443"


# -- errors: each a one-line UserError naming the file -----------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    assert "does not exist" in user_error(tmp_path / "nope")


def test_not_yaml(tmp_path: Path) -> None:
    assert "not valid YAML" in user_error(write(tmp_path, "clusters: [\n  - {name: a\n"))


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", ""])
def test_not_a_mapping(tmp_path: Path, text: str) -> None:
    assert "no mapping" in user_error(write(tmp_path, text))


def test_no_current_context(tmp_path: Path) -> None:
    doc = kubeconfig()
    del doc["current-context"]
    assert "no current-context" in user_error(write(tmp_path, doc))


def test_missing_context(tmp_path: Path) -> None:
    path = write(tmp_path, kubeconfig())
    assert "no context named 'prod'" in user_error(path, context="prod")


def test_missing_cluster(tmp_path: Path) -> None:
    doc = kubeconfig()
    doc["contexts"][0]["context"]["cluster"] = "gone"
    assert "no cluster named 'gone'" in user_error(write(tmp_path, doc))


def test_missing_user(tmp_path: Path) -> None:
    doc = kubeconfig()
    doc["users"] = []
    assert "no user named 'u1'" in user_error(write(tmp_path, doc))


@pytest.mark.parametrize("server", ["", "127.0.0.1:6443", "ftp://host", "unix:///sock"])
def test_server_not_http(tmp_path: Path, server: str) -> None:
    path = write(tmp_path, kubeconfig(cluster={"server": server}))
    assert "is not an http(s) URL" in user_error(path)


def test_bad_base64(tmp_path: Path) -> None:
    path = write(tmp_path, kubeconfig(cluster={"server": "https://h",
                                               "certificate-authority-data": "abcde"}))
    assert "certificate-authority-data is not valid base64" in user_error(path)


def test_bad_ca_pem(tmp_path: Path) -> None:
    path = write(tmp_path, kubeconfig(cluster={"server": "https://h",
                                               "certificate-authority-data": b64("garbage")}))
    assert "not valid PEM" in user_error(path)


def test_unreadable_ca_file(tmp_path: Path) -> None:
    path = write(tmp_path, kubeconfig(cluster={"server": "https://h",
                                               "certificate-authority": "missing-ca.crt"}))
    assert "cannot read certificate-authority" in user_error(path)


def test_mismatched_client_key(tmp_path: Path, cert_and_key) -> None:
    cert, _ = cert_and_key
    other = _key_pem(ec.generate_private_key(ec.SECP256R1()))
    path = write(tmp_path, kubeconfig(user={"client-certificate-data": b64(cert),
                                            "client-key-data": b64(other)}))
    assert "client certificate/key not usable" in user_error(path)


def test_missing_token_file(tmp_path: Path) -> None:
    path = write(tmp_path, kubeconfig(user={"tokenFile": "no-such-token"}))
    assert "cannot read tokenFile" in user_error(path)


@pytest.mark.parametrize("user", [
    {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws"}},
    {"auth-provider": {"name": "gcp"}},
])
def test_exec_credentials_unsupported(tmp_path: Path, user: dict[str, Any]) -> None:
    assert "not supported" in user_error(write(tmp_path, kubeconfig(user=user)))


def test_context_not_a_mapping(tmp_path: Path) -> None:
    doc = kubeconfig()
    doc["contexts"][0]["context"] = "c1"
    assert "context" in user_error(write(tmp_path, doc))


def test_kubeconfig_env_files_are_merged_first_wins(tmp_path, monkeypatch) -> None:
    first = kubeconfig(cluster={"server": "https://127.0.0.1:1111",
                                "insecure-skip-tls-verify": True})
    second = kubeconfig(**{"current-context": "other"})
    second["contexts"].append({"name": "other", "context": {"cluster": "c2", "user": "u2"}})
    second["clusters"].append({"name": "c2", "cluster": {"server": "https://127.0.0.1:2222",
                                                         "insecure-skip-tls-verify": True}})
    second["users"].append({"name": "u2", "user": {"tokenFile": "token"}})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "token").write_text("from-b\n")
    a, b = write(tmp_path, first, "a"), write(tmp_path / "b", second, "config")
    monkeypatch.setenv("KUBECONFIG", f"{a}:{tmp_path / 'missing'}:{b}")
    # current-context and the entries named in both files come from the first file
    config = load_kubeconfig()
    assert config.server == "https://127.0.0.1:1111" and config.context == "main"
    # an entry only the second file has resolves its relative paths against that file
    other = load_kubeconfig(context="other")
    assert other.server == "https://127.0.0.1:2222"
    assert other.headers == {"Authorization": "Bearer from-b"}


def test_explicit_path_ignores_kubeconfig_env(tmp_path, monkeypatch) -> None:
    path = write(tmp_path, kubeconfig())
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nope"))
    assert load_kubeconfig(path).server == "https://127.0.0.1:6443"


def test_unknown_context_names_the_files(tmp_path, monkeypatch) -> None:
    a, b = write(tmp_path, kubeconfig(), "a"), write(tmp_path, kubeconfig(), "b")
    monkeypatch.setenv("KUBECONFIG", f"{a}:{b}")
    with pytest.raises(UserError) as info:
        load_kubeconfig(context="nope")
    assert "no context named 'nope'" in info.value.message and str(b) in info.value.message
