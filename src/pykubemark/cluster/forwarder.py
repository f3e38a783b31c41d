"""The apiserver inside real nodes' network namespaces, at 127.0.0.1:PORT as on the host.

A network namespace has a loopback of its own: the host's 127.0.0.1, where the whole
control plane listens, is out of its reach. Serving the apiserver on a host address
instead would mean binding it beyond loopback (0.0.0.0 would expose it to the network).
So this process, living in the host's namespace, holds one listening socket on
127.0.0.1:PORT *inside* each node's namespace — a socket stays in the namespace it was
made in, so it is made right after setns() into it, and the thread then returns — and
relays every connection to the apiserver on the host's 127.0.0.1:PORT. For the real
nodes, the server URL, kubeconfigs and the serving certificate (127.0.0.1 is among its
SANs) are the same as for every other client; TLS passes through untouched.

One process per cluster. `real-nodes add` rewrites its config file and sends SIGHUP:
listeners for new namespaces are added and open connections are left alone. After each
(re)load it writes the namespaces it serves to CONFIG.serving, which the caller waits
for. Only the standard library is imported, so it costs little memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from pathlib import Path

from pykubemark import interrupts
from pykubemark.netns_sockets import inside


def listen_in(netns: str, host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port inside the network namespace at ``netns``
    (a /run/netns path); the calling thread is back in its own namespace on return."""
    with inside(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(1024)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
    return sock


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def _no_delay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Forwarder:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.servers: dict[str, asyncio.Server] = {}
        self.target = ("127.0.0.1", 0)

    async def reload(self) -> None:
        wanted = json.loads(self.config.read_text())
        self.target = (wanted["target_host"], int(wanted["target_port"]))
        for netns in wanted["netns"]:
            if netns in self.servers:
                continue
            try:
                sock = listen_in(netns, wanted.get("listen_host", "127.0.0.1"),
                                 int(wanted["port"]))
            except OSError as exc:
                print(f"cannot listen in {netns}: {exc}", file=sys.stderr, flush=True)
                continue
            self.servers[netns] = await asyncio.start_server(self.relay, sock=sock)
        for netns in set(self.servers) - set(wanted["netns"]):
            self.servers.pop(netns).close()
        serving = self.config.with_name(self.config.name + ".serving")
        tmp = serving.with_name(serving.name + ".tmp")
        tmp.write_text(json.dumps(sorted(self.servers)))
        os.replace(tmp, serving)
        print(f"serving {self.target[0]}:{self.target[1]} in {sorted(self.servers)}",
              file=sys.stderr, flush=True)

    async def relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        _no_delay(writer)
        _no_delay(up_writer)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _main(config: Path) -> None:
    forwarder = Forwarder(config)
    await forwarder.reload()
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    reloads: set[asyncio.Task] = set()

    def on_hup() -> None:
        task = loop.create_task(forwarder.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    interrupts.in_loop(on_hup, (signal.SIGHUP,))
    interrupts.in_loop(lambda: stop.done() or stop.set_result(None))
    await stop


def write_config(path: Path, *, port: int, target_port: int, netns: list[str],
                 listen_host: str = "127.0.0.1") -> None:
    """The forwarder's config: listen on listen_host:port in each of ``netns`` (an address
    local there: its loopback, or one of the hollow nodes' /16), relay to the host's
    127.0.0.1:target_port."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"port": port, "target_host": "127.0.0.1",
                               "target_port": target_port, "netns": netns,
                               "listen_host": listen_host}))
    os.replace(tmp, path)


def serving(path: Path) -> list[str]:
    try:
        return json.loads(path.with_name(path.name + ".serving").read_text())
    except (OSError, ValueError):
        return []


if __name__ == "__main__":
    asyncio.run(_main(Path(sys.argv[1])))
