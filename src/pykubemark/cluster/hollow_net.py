"""Addresses for a local cluster's hollow nodes that the apiserver may dial.

The apiserver's node proxy (``/api/v1/nodes/NAME/proxy/...``: ``/stats/summary``,
``/metrics``, ``/pods``) refuses loopback addresses ("address not allowed"), and a real
node's InternalIP never is one. So a local cluster's hollow nodes get addresses from a
/16 of 100.64.0.0/10 that is *local* inside a network namespace of pykubemark's own
(``ip route add local CIDR dev lo``: every address of it belongs to the namespace, without
one ``ip addr add`` per node), reached from the host through a veth pair by a route of
the whole /16. The fleet stays in the host's namespace and makes each node's listening
socket inside that one (`pykubemark.netns_sockets`); nothing runs in it, and nothing
there is reachable from beyond this machine.

The veth's name (``pkmh<K>`` for the K-th /16) is the claim: creating it fails if
another cluster holds that /16; the namespace is ``pkm-pkmh<K>``. Everything made is
recorded in the cluster's state as it is made, so `down` undoes exactly that, after a
crash too.
"""

from __future__ import annotations

import ipaddress
import subprocess

from pykubemark.cluster.state import ClusterState, HollowNetwork
from pykubemark.errors import UserError

HOLLOW_NET = ipaddress.ip_network("100.64.0.0/10")


def _ip(*args: str, what: str, ok_if: tuple[str, ...] = ()) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0 and not any(s in result.stderr for s in ok_if):
        raise UserError(f"{what}: {result.stderr.strip() or 'ip failed'}")


def _routed() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                         text=True, check=False).stdout
    nets = []
    for line in out.splitlines():
        word = line.split()[0] if line.split() else ""
        if word in ("local", "broadcast", "unreachable"):
            word = line.split()[1]
        try:
            nets.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            continue
    return [n for n in nets if isinstance(n, ipaddress.IPv4Network) and n.prefixlen > 0]


def create(state: ClusterState) -> HollowNetwork:
    """Claim a free /16, make its namespace and veth, route it; recorded in ``state``."""
    used = _routed()
    for index, subnet in enumerate(HOLLOW_NET.subnets(new_prefix=16)):
        if any(subnet.overlaps(net) for net in used):
            continue
        veth = f"pkmh{index}"
        result = subprocess.run(["ip", "link", "add", veth, "type", "veth", "peer", "name",
                                 f"{veth}n"], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            if "exists" in result.stderr:
                continue
            raise UserError(f"cannot create veth {veth} for the hollow nodes' addresses: "
                            f"{result.stderr.strip()}")
        net = HollowNetwork(veth=veth, cidr=str(subnet))
        state.hollow_network = net
        state.save()
        # Named by the claimed /16, not the cluster: two clusters of one name (separate
        # $PYKUBEMARK_STATE directories) may run at once.
        netns = f"pkm-{veth}"
        _ip("netns", "add", netns, what=f"cannot create network namespace {netns}")
        net.netns = netns
        state.save()
        _ip("link", "set", f"{veth}n", "netns", netns, what=f"moving {veth}n to {netns}")
        for args in (("link", "set", "lo", "up"), ("link", "set", f"{veth}n", "up"),
                     ("route", "add", "local", str(subnet), "dev", "lo"),
                     ("route", "add", "default", "dev", f"{veth}n")):
            _ip("-n", netns, *args, what=f"configuring {netns}")
        _ip("link", "set", veth, "up", what=f"bringing up {veth}")
        _ip("route", "add", str(subnet), "dev", veth, what=f"routing {subnet}")
        return net
    raise UserError(f"no free /16 left in {HOLLOW_NET} for hollow nodes' addresses")


def teardown(state: ClusterState) -> None:
    """Undo `create` (idempotent): the veth (its route and peer go with it), the netns."""
    net = state.hollow_network
    if net is None:
        return
    _ip("link", "delete", net.veth, what=f"deleting {net.veth}",
        ok_if=("Cannot find device",))
    if net.netns:
        _ip("netns", "delete", net.netns, what=f"deleting {net.netns}",
            ok_if=("No such file",))
    state.hollow_network = None
    state.save()
