"""The synchronous facade of the kube client: what a caller without aiohttp types sees
when nothing answers, and the configs it is given for servers without a kubeconfig."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pykubemark.errors import UserError
from pykubemark.kube.blocking import call
from pykubemark.kube.config import server_config


@pytest.fixture
def hangs_up() -> Iterator[int]:
    """A loopback port that accepts connections and closes them without a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()
    thread.join(5)


def test_a_server_that_hangs_up_is_an_oserror(hangs_up: int) -> None:
    # aiohttp's ServerDisconnectedError is no OSError; the facade makes it one.
    with pytest.raises(OSError, match="GET"):
        call(server_config(f"http://127.0.0.1:{hangs_up}"), "GET", "/health", timeout=5)


def test_a_refused_connection_is_an_oserror() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(OSError):
            call(server_config(f"http://127.0.0.1:{port}"), "GET", "/health", timeout=5)


def test_server_config_credentials_and_trust(tmp_path: Path) -> None:
    from pykubemark.cluster.pki import write_pki

    ca = write_pki(tmp_path)["ca_cert"]
    plain = server_config("http://127.0.0.1:2379/")
    assert plain.server == "http://127.0.0.1:2379"
    assert plain.ssl_context is None and plain.headers == {}
    verified = server_config("https://127.0.0.1:6443", token="t", ca_cert=ca)
    assert verified.headers == {"Authorization": "Bearer t"}
    assert verified.ca_data == ca.read_bytes()
    assert verified.ssl_context is not None and verified.ssl_context.check_hostname
    self_signed = server_config("https://127.0.0.1:10259", insecure=True)
    assert self_signed.ssl_context is not None and not self_signed.ssl_context.check_hostname


def test_server_config_with_unreadable_ca_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"missing\.crt"):
        server_config("https://127.0.0.1:6443", ca_cert=tmp_path / "missing.crt")
