"""The real nodes' network: a namespace per node, a bridge per cluster, routes between pods.

Addresses. A cluster with real nodes claims one /24 of 10.200.0.0/16, 10.200.K.0/24 with
the first K that no address or route of the host touches and whose bridge name
``pkmbr-K`` is free (creating the bridge is the claim, so two `up`s never get the same
one). The bridge holds 10.200.K.1; node I is 10.200.K.(I+2) on the ``eth0`` of its
namespace ``pkm-CLUSTER-I``, joined to the bridge by a veth pair whose host end is
``pkmK-I`` (interface names have at most 15 characters; cluster names may have 40).
Node I's pods get 10.244.I.0/24 on a CNI bridge inside its namespace; every namespace
has a route to every other node's pod range via that node's address, so pods reach pods
on other nodes directly, across the host's bridge (layer 2: the host routes nothing).

Containment. The host never routes for these addresses: IPv4 forwarding is off on the
bridge, the namespaces have no default route, and the host has no route to the pod
ranges. Pods' traffic to a node or the bridge address is masqueraded behind the node's
address (so the host's answers go back over the bridge), and the service range
(10.0.0.0/16) is routed to a port-less bridge inside each namespace, where what
kube-proxy does not rewrite goes nowhere. Nothing a pod or a node sends can leave the
machine.

Processes run in a namespace with ``nsenter --net``, not ``ip netns exec``: the latter also
makes a mount namespace with a fresh /sys, which hides the cgroup v1 hierarchies under
/sys/fs/cgroup from the kubelet, containerd and runc.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

from pykubemark.cluster.state import NodeNetwork
from pykubemark.errors import UserError

NODES_NET = ipaddress.ip_network("10.200.0.0/16")
CLUSTER_CIDR = "10.244.0.0/16"
#: Node I is .(I+2) of the cluster's /24; node I's pods get 10.244.I.0/24.
MAX_NODES = 250
NETNS_DIR = Path("/run/netns")
SERVICE_BRIDGE = "pkmsvc"


def run(argv: list[str], what: str, *, ok_if: tuple[str, ...] = ()) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip()
        if any(text in message for text in ok_if):
            return ""
        last = message.splitlines()[-1] if message else f"exit {result.returncode}"
        raise UserError(f"{what}: {' '.join(argv)}: {last}")
    return result.stdout


def enter(netns: str) -> list[str]:
    """argv prefix that runs a command in namespace ``netns`` (see the module doc)."""
    return ["nsenter", f"--net={NETNS_DIR / netns}", "--"]


def namespace_name(cluster: str, index: int) -> str:
    return f"pkm-{cluster}-{index}"


def node_address(network: NodeNetwork, index: int) -> str:
    if not 0 <= index < MAX_NODES:
        raise UserError(f"a cluster has at most {MAX_NODES} real nodes")
    return str(ipaddress.ip_network(network.subnet)[index + 2])


def pod_cidr(index: int) -> str:
    return f"10.244.{index}.0/24"


def veth_name(network: NodeNetwork, index: int) -> str:
    return f"pkm{ipaddress.ip_network(network.subnet).network_address.packed[2]}-{index}"


def _host_networks() -> list[ipaddress.IPv4Network]:
    """The host's IPv4 addresses' networks and routes' destinations."""
    found = []
    addrs = json.loads(run(["ip", "-j", "-4", "addr", "show"], "listing addresses") or "[]")
    for link in addrs:
        for info in link.get("addr_info", []):
            found.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}",
                                              strict=False))
    for route in json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"],
                                 "listing routes") or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            with_prefix = dst if "/" in dst else f"{dst}/32"
            found.append(ipaddress.ip_network(with_prefix, strict=False))
    return found


def claim_network() -> NodeNetwork:
    """Create the bridge of a free 10.200.K.0/24 (see the module doc) and address it."""
    used = _host_networks()
    for subnet in NODES_NET.subnets(new_prefix=24):
        if any(subnet.overlaps(net) for net in used):
            continue
        bridge = f"pkmbr-{subnet.network_address.packed[2]}"
        result = subprocess.run(["ip", "link", "add", bridge, "type", "bridge"],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            if "exists" in result.stderr:
                continue
            raise UserError(f"cannot create bridge {bridge}: {result.stderr.strip()}")
        return NodeNetwork(bridge=bridge, subnet=str(subnet), gateway=str(subnet[1]))
    raise UserError(f"no free /24 left in {NODES_NET} for the real nodes' network")


def configure_bridge(network: NodeNetwork) -> None:
    bridge = network.bridge
    prefix = ipaddress.ip_network(network.subnet).prefixlen
    run(["ip", "addr", "add", f"{network.gateway}/{prefix}", "dev", bridge],
         f"addressing bridge {bridge}")
    # The host must never route what comes in on the bridge (module doc).
    run(["sysctl", "-q", "-w", f"net.ipv4.conf.{bridge}.forwarding=0",
          f"net.ipv6.conf.{bridge}.disable_ipv6=1"], f"configuring bridge {bridge}")
    run(["ip", "link", "set", bridge, "up"], f"bringing up bridge {bridge}")


def delete_link(name: str) -> None:
    run(["ip", "link", "delete", name], f"deleting {name}", ok_if=("Cannot find device",))


def refuse_taken(name: str) -> None:
    if (NETNS_DIR / name).exists():
        raise UserError(f"network namespace {name} already exists (not made by this "
                        f"command): delete it with `ip netns delete {name}`")


def add_namespace(name: str) -> None:
    refuse_taken(name)
    run(["ip", "netns", "add", name], f"cannot create network namespace {name}")


def delete_namespace(name: str) -> None:
    if (NETNS_DIR / name).exists():
        run(["ip", "netns", "delete", name], f"deleting network namespace {name}",
             ok_if=("No such file",))


def add_veth(network: NodeNetwork, netns: str, veth: str) -> None:
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns],
         f"cannot create veth pair {veth}")


def configure_node(network: NodeNetwork, netns: str, veth: str, address: str,
                   service_cidr: str) -> None:
    """Addresses, sysctls, the service route and the masquerade rule of a node's
    namespace (module doc); its veth's host end on the bridge."""
    run(["ip", "link", "set", veth, "master", network.bridge, "up"],
         f"attaching {veth} to {network.bridge}")
    inside = enter(netns)
    prefix = ipaddress.ip_network(network.subnet).prefixlen
    for argv in (["ip", "link", "set", "lo", "up"],
                 ["ip", "addr", "add", f"{address}/{prefix}", "dev", "eth0"],
                 ["ip", "link", "set", "eth0", "up"],
                 ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
                  "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
                  "net.ipv4.conf.eth0.rp_filter=0"],
                 ["ip", "link", "add", SERVICE_BRIDGE, "type", "bridge"],
                 ["ip", "link", "set", SERVICE_BRIDGE, "up"],
                 ["ip", "route", "add", service_cidr, "dev", SERVICE_BRIDGE],
                 ["iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-s", CLUSTER_CIDR,
                  "!", "-d", CLUSTER_CIDR, "-m", "comment", "--comment",
                  "pykubemark: pods to nodes", "-j", "MASQUERADE"]):
        run([*inside, *argv], f"setting up network namespace {netns}")
    # kube-proxy's rules must see bridged traffic (a pod reaching a service whose
    # endpoint is on its own node); the sysctl exists only with br_netfilter loaded.
    if Path("/proc/sys/net/bridge").is_dir():
        run([*inside, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"],
             f"setting up network namespace {netns}")


def add_pod_route(netns: str, cidr: str, via: str) -> None:
    run([*enter(netns), "ip", "route", "replace", cidr, "via", via],
         f"routing {cidr} in {netns}")
