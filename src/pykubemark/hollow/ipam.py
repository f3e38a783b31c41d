"""Pod IPs from the node's podCIDR: unique within the node, reused once freed."""

from __future__ import annotations

import ipaddress


class Ipam:
    __slots__ = ("_free", "_network", "_next", "_used")

    def __init__(self, cidr: str) -> None:
        self._network = ipaddress.ip_network(cidr, strict=False)
        self._next = int(self._network.network_address) + 2  # .1 is the bridge
        self._free: list[int] = []
        self._used: set[int] = set()

    def allocate(self) -> str:
        if self._free:
            address = self._free.pop()
        else:
            address = self._next
            if address >= int(self._network.broadcast_address):
                raise RuntimeError(f"pod CIDR {self._network} is exhausted")
            self._next += 1
        self._used.add(address)
        return str(ipaddress.ip_address(address))

    def reserve(self, ip: str) -> None:
        """Mark an address seen in an existing pod's status as taken (after a restart)."""
        try:
            address = int(ipaddress.ip_address(ip))
        except ValueError:
            return
        first = int(self._network.network_address) + 2
        if not first <= address < int(self._network.broadcast_address) or address in self._used:
            return
        if address in self._free:
            self._free.remove(address)
        self._used.add(address)
        while self._next <= address:
            if self._next != address and self._next not in self._used:
                self._free.append(self._next)
            self._next += 1

    def release(self, ip: str) -> None:
        try:
            address = int(ipaddress.ip_address(ip))
        except ValueError:
            return
        if address in self._used:
            self._used.remove(address)
            self._free.append(address)

    def __len__(self) -> int:
        return len(self._used)
