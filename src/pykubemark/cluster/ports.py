"""Loopback ports: pick free ones, and say plainly when a chosen one is taken."""

from __future__ import annotations

import socket

from pykubemark.errors import UserError

HOST = "127.0.0.1"


def is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def require_free(port: int, what: str) -> int:
    if not 0 < port < 65536:
        raise UserError(f"{what} port {port} is not a valid port number")
    if not is_free(port):
        raise UserError(f"{what} port {port} on {HOST} is already in use")
    return port


def free_ports(count: int, taken: set[int] | None = None) -> list[int]:
    """Distinct free ports; held open together so the kernel cannot hand out one twice."""
    taken = set(taken or ())
    socks: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            socks.append(sock)
            port = sock.getsockname()[1]
            if port not in taken:
                ports.append(port)
    finally:
        for sock in socks:
            sock.close()
    return ports


def free_run(count: int, tries: int = 50) -> int:
    """The first of ``count`` consecutive free ports (one per fleet process)."""
    for _ in range(tries):
        first = free_ports(1)[0]
        if first + count <= 65535 and all(is_free(first + k) for k in range(count)):
            return first
    raise UserError(f"no {count} consecutive free ports on {HOST}")
