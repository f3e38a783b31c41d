"""Read a kubeconfig into what an HTTP client needs: server, TLS context, credentials.

Supports what local and cloud-less clusters use: CA data or file (or insecure skip),
bearer token or token file, client certificate and key (data or file), basic auth.
Anything wrong with the file is a `UserError` naming the file and the problem.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pykubemark.errors import UserError, one_line, read_yaml_mapping


@dataclass
class KubeConfig:
    server: str
    ssl_context: ssl.SSLContext | None
    headers: dict[str, str] = field(default_factory=dict)
    source: str = ""
    tls_server_name: str | None = None
    context: str = ""
    #: Builds a fresh context with the same trust and credentials: the HTTP/2 transport
    #: offers ALPN h2 on its own context, never on the one HTTP/1.1 sessions share.
    ssl_factory: Callable[[], ssl.SSLContext | None] | None = None
    _h2_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    #: What verifies the server, kept so a node's own credentials can reuse it.
    ca_data: bytes | None = None
    insecure: bool = False
    #: The client certificate (PEM file) this config authenticates with, if any.
    client_cert: str | None = None

    def h2_ssl_context(self) -> ssl.SSLContext | None:
        """One context offering ALPN h2, shared by every HTTP/2 connection of this config:
        a context holds the trust store (hundreds of KiB), a connection only needs a
        reference to it."""
        if self._h2_context is None:
            self._h2_context = (self.ssl_factory or (lambda: self.ssl_context))()
            if self._h2_context is not None:
                self._h2_context.set_alpn_protocols(["h2"])
        return self._h2_context
    def with_client_cert(self, pem: Path) -> KubeConfig:
        """The same server and trust, authenticated by the certificate and key in ``pem``
        alone (a node's credential after TLS bootstrap): no token or basic auth."""
        ctx = _with_cert(self.ca_data, self.insecure, pem)
        return KubeConfig(server=self.server, ssl_context=ctx, headers={},
                          source=str(pem), tls_server_name=self.tls_server_name,
                          context=self.context, ca_data=self.ca_data, insecure=self.insecure,
                          client_cert=str(pem),
                          ssl_factory=lambda: _with_cert(self.ca_data, self.insecure, pem))


def _named(items: list[dict] | None, name: str, what: str, path: str) -> dict:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            value = item.get(what) or {}
            if not isinstance(value, dict):
                raise UserError(f"kubeconfig {path}: {what} '{one_line(name)}' is not a "
                                "mapping")
            return value
    raise UserError(f"kubeconfig {path}: no {what} named '{one_line(name)}'")


@dataclass
class _Merged:
    """Several kubeconfig files as kubectl merges them: for every named cluster, user and
    context the first file that defines it wins, and so does the first current-context.
    Each entry remembers its file, since relative paths resolve against it."""

    files: list[Path]
    current_context: str = ""
    entries: dict[str, dict[str, tuple[dict, Path]]] = field(default_factory=dict)

    @classmethod
    def read(cls, files: list[Path]) -> _Merged:
        merged = cls(files=files)
        for path in files:
            raw = read_yaml_mapping(path, "kubeconfig", empty_ok=len(files) > 1)
            current = raw.get("current-context") or ""
            if not isinstance(current, str):
                raise UserError(f"kubeconfig {path}: current-context is not a string")
            merged.current_context = merged.current_context or current
            for section, what in (("clusters", "cluster"), ("users", "user"),
                                  ("contexts", "context")):
                items = raw.get(section) or []
                if not isinstance(items, list):
                    raise UserError(f"kubeconfig {path}: {section} is not a list")
                for item in items:
                    if not isinstance(item, dict) or "name" not in item:
                        continue
                    value = item.get(what) or {}
                    if not isinstance(value, dict):
                        raise UserError(f"kubeconfig {path}: {what} "
                                        f"'{one_line(str(item['name']))}' is not a mapping")
                    merged.entries.setdefault(what, {}).setdefault(
                        str(item["name"]), (value, path))
        return merged

    @property
    def where(self) -> str:
        return ", ".join(str(f) for f in self.files)

    def resolve(self, context: str | None) -> tuple[str, dict, Path, dict, Path]:
        """The context (given, else current) and its cluster and user, each with the
        file it came from: (context name, cluster, cluster file, user, user file)."""
        context_name = context or self.current_context
        if not context_name:
            raise UserError(f"kubeconfig {self.where} has no current-context")
        ctx, _ = self.get("context", context_name)
        cluster, cluster_file = self.get("cluster", str(ctx.get("cluster", "")))
        user, user_file = (self.get("user", str(ctx["user"])) if ctx.get("user")
                           else ({}, cluster_file))
        return context_name, cluster, cluster_file, user, user_file

    def get(self, what: str, name: str) -> tuple[dict, Path]:
        try:
            return self.entries.get(what, {})[name]
        except KeyError:
            raise UserError(f"kubeconfig {self.where}: no {what} named "
                            f"'{one_line(name)}'") from None


def kubeconfig_files(path: str | Path | None) -> list[Path]:
    """kubectl's precedence: the flag, else every file of ``$KUBECONFIG``, else
    ``~/.kube/config``."""
    if path is not None:
        return [Path(path).expanduser()]
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        existing = [Path(p).expanduser() for p in listed if Path(p).expanduser().exists()]
        return existing or [Path(listed[0]).expanduser()]
    return [Path("~/.kube/config").expanduser()]


def _string(section: dict, key: str) -> str | None:
    """A field that must be a string when given."""
    value = section.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UserError(f"{key} is not a string")
    return value


def _material(section: dict, key: str, base: Path) -> bytes | None:
    """The bytes of ``key-data`` (base64) or of the file ``key`` (relative to kubeconfig)."""
    if data := _string(section, f"{key}-data"):
        try:
            return base64.b64decode(data)
        except ValueError:
            raise UserError(f"{key}-data is not valid base64") from None
    if name := _string(section, key):
        path = Path(name) if os.path.isabs(name) else base / name
        try:
            return path.read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read {key} {path}: {exc.strerror}") from None
    return None


def _to_file(data: bytes) -> str:
    handle = tempfile.NamedTemporaryFile(prefix="pykubemark-", delete=False)  # noqa: SIM115
    with handle:
        handle.write(data)
    os.chmod(handle.name, 0o600)
    return handle.name


def load_kubeconfig(path: str | Path | None = None, context: str | None = None) -> KubeConfig:
    """Parse a kubeconfig (``path``, else ``$KUBECONFIG`` merged, else ``~/.kube/config``)."""
    merged = _Merged.read(kubeconfig_files(path))
    where = merged.where
    context_name, cluster, cluster_file, user, user_file = merged.resolve(context)
    server = str(cluster.get("server") or "").rstrip("/")
    if not server.startswith(("https://", "http://")):
        raise UserError(f"kubeconfig {where}: cluster server '{one_line(server)}' is not an "
                        "http(s) URL")
    insecure = bool(cluster.get("insecure-skip-tls-verify"))
    try:
        tls_server_name = _string(cluster, "tls-server-name")
        ca = None if insecure else _material(cluster, "certificate-authority",
                                             cluster_file.parent)
        ssl_context = _ssl_context(server, ca, insecure, user, user_file.parent)
        headers = _auth_headers(user, user_file.parent)
    except UserError as exc:
        raise UserError(f"kubeconfig {where}: {exc.message}") from None
    return KubeConfig(server=server, ssl_context=ssl_context, headers=headers,
                      source=str(merged.files[0]) if len(merged.files) == 1 else where,
                      tls_server_name=tls_server_name,
                      context=context_name, ca_data=ca, insecure=insecure,
                      ssl_factory=lambda: _ssl_context(server, ca, insecure, user,
                                                       user_file.parent))


def server_config(server: str, *, token: str | None = None, ca_cert: Path | None = None,
                  insecure: bool = False) -> KubeConfig:
    """A server addressed directly, without a kubeconfig: the local control plane's own
    probes and admin calls (bearer token, cluster CA), its components' self-signed health
    endpoints (``insecure``) and etcd's plain http."""
    server = server.rstrip("/")
    ca = None
    if ca_cert is not None and not insecure:
        try:
            ca = ca_cert.read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read certificate authority {ca_cert}: "
                            f"{exc.strerror}") from None
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def context() -> ssl.SSLContext | None:
        return None if server.startswith("http://") else _verify_context(ca, insecure)

    return KubeConfig(server=server, ssl_context=context(), headers=headers, source=server,
                      ca_data=ca, insecure=insecure, ssl_factory=context)


def _verify_context(ca: bytes | None, insecure: bool) -> ssl.SSLContext:
    """Trust the kubeconfig's CA alone when it has one: loading the system's trust store
    too costs tens of milliseconds and ~100 kB per context, and there is one per node."""
    if ca is not None and not insecure:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            ctx.load_verify_locations(cadata=ca.decode())
        except (ssl.SSLError, ValueError) as exc:
            raise UserError(f"certificate authority is not valid PEM ({exc})") from None
        return ctx
    if insecure:  # nothing is verified, so the system's trust store need not be loaded
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context()


def _with_cert(ca: bytes | None, insecure: bool, pem: Path) -> ssl.SSLContext:
    ctx = _verify_context(ca, insecure)
    try:
        ctx.load_cert_chain(str(pem))
    except (ssl.SSLError, OSError) as exc:
        raise UserError(f"client certificate {pem} not usable ({exc})") from None
    return ctx


def _ssl_context(server: str, ca: bytes | None, insecure: bool, user: dict,
                 user_base: Path) -> ssl.SSLContext | None:
    if server.startswith("http://"):
        return None
    ctx = _verify_context(ca, insecure)
    cert = _material(user, "client-certificate", user_base)
    key = _material(user, "client-key", user_base)
    if cert and key:
        cert_file, key_file = _to_file(cert), _to_file(key)
        try:
            ctx.load_cert_chain(cert_file, key_file)
        except ssl.SSLError as exc:
            raise UserError(f"client certificate/key not usable ({exc})") from None
        finally:
            os.unlink(cert_file)
            os.unlink(key_file)
    return ctx


def _auth_headers(user: dict, base: Path) -> dict[str, str]:
    if token := _string(user, "token"):
        return {"Authorization": f"Bearer {token}"}
    if token_file := _string(user, "tokenFile"):
        path = Path(token_file) if os.path.isabs(token_file) else base / token_file
        try:
            return {"Authorization": f"Bearer {path.read_text().strip()}"}
        except OSError as exc:
            raise UserError(f"cannot read tokenFile {path}: {exc.strerror}") from None
    if user.get("username"):
        pair = f"{user['username']}:{user.get('password') or ''}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    if user.get("exec") or user.get("auth-provider"):
        raise UserError("exec and auth-provider credentials are not supported; use a token "
                        "or client certificate")
    return {}


def flatten_kubeconfig(path: str | Path | None = None,
                       context: str | None = None) -> dict:
    """One self-contained kubeconfig for ``context``: certificates, keys and token files
    inlined, so that it still works when copied into a Secret on another machine."""
    merged = _Merged.read(kubeconfig_files(path))
    _, cluster, cluster_file, user, user_file = merged.resolve(context)
    if user.get("exec") or user.get("auth-provider"):
        raise UserError(f"kubeconfig {merged.where}: exec and auth-provider credentials "
                        "cannot be copied into a Secret; use a token or client certificate")
    out_cluster = {k: v for k, v in cluster.items() if k != "certificate-authority"}
    out_user = {k: v for k, v in user.items()
                if k not in ("client-certificate", "client-key", "tokenFile")}
    try:
        for section, out, key, base in (
                (cluster, out_cluster, "certificate-authority", cluster_file.parent),
                (user, out_user, "client-certificate", user_file.parent),
                (user, out_user, "client-key", user_file.parent)):
            data = _material(section, key, base)
            if data is not None:
                out[f"{key}-data"] = base64.b64encode(data).decode()
        if "token" not in user and (token_file := _string(user, "tokenFile")):
            token_path = (Path(token_file) if os.path.isabs(token_file)
                          else user_file.parent / token_file)
            try:
                out_user["token"] = token_path.read_text().strip()
            except OSError as exc:
                raise UserError(f"cannot read tokenFile {token_path}: {exc.strerror}") from None
    except UserError as exc:
        raise UserError(f"kubeconfig {merged.where}: {exc.message}") from None
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "target",
        "clusters": [{"name": "target", "cluster": out_cluster}],
        "users": [{"name": "target", "user": out_user}],
        "contexts": [{"name": "target", "context": {"cluster": "target", "user": "target"}}],
    }
