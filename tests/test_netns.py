"""The real nodes' addressing and the apiserver forwarder, without a cluster."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_for

from pykubemark.cluster import cgroups, forwarder, netns
from pykubemark.cluster.state import NodeNetwork

LAST = NodeNetwork(bridge="pkmbr-255", subnet="10.200.255.0/24", gateway="10.200.255.1")


def test_addresses_ranges_and_names_fit() -> None:
    first = NodeNetwork(bridge="pkmbr-0", subnet="10.200.0.0/24", gateway="10.200.0.1")
    assert netns.node_address(first, 0) == "10.200.0.2"
    assert netns.node_address(LAST, netns.MAX_NODES - 1) == "10.200.255.251"
    assert netns.pod_cidr(netns.MAX_NODES - 1) == "10.244.249.0/24"
    assert all(ipaddress.ip_network(netns.pod_cidr(i)).subnet_of(
        ipaddress.ip_network(netns.CLUSTER_CIDR)) for i in (0, netns.MAX_NODES - 1))
    # interface names: at most 15 characters
    assert len(netns.veth_name(LAST, netns.MAX_NODES - 1)) <= 15
    assert len(LAST.bridge) <= 15
    with pytest.raises(Exception, match="at most"):
        netns.node_address(first, netns.MAX_NODES)


def test_a_process_joins_its_cgroup_before_it_execs() -> None:
    argv = cgroups.join_argv("/pkm-x-0/agents", ["kubelet", "--v=1"])
    assert argv[:2] == ["/bin/sh", "-c"] and argv[-2:] == ["kubelet", "--v=1"]
    assert 'exec "$@"' in argv[2]


@pytest.fixture
def namespace() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    name = f"pkm-fwtest-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def test_the_forwarder_serves_the_hosts_loopback_inside_a_namespace(namespace: str,
                                                                      tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def echo() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"host says " + conn.recv(100))

        threading.Thread(target=echo, daemon=True).start()
        config = tmp_path / "forwarder.json"
        forwarder.write_config(config, port=port, target_port=port,
                               netns=[f"/run/netns/{namespace}"])
        proc = subprocess.Popen([sys.executable, "-m", "pykubemark.cluster.forwarder",
                                 str(config)], stderr=subprocess.PIPE)
        try:
            wait_for("the forwarder to listen", lambda: forwarder.serving(config), timeout=30,
                     interval=0.1)
            client = (f"import socket; s = socket.create_connection(('127.0.0.1', {port})); "
                      "s.sendall(b'hi'); print(s.recv(100).decode())")
            out = subprocess.run([*netns.enter(namespace), sys.executable, "-c", client],
                                 capture_output=True, text=True, timeout=30)
            assert out.stdout.strip() == "host says hi", out.stderr
        finally:
            proc.terminate()
            assert proc.wait(10) == 0
