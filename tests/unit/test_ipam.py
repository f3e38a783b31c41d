"""Pod IP allocation within a node's podCIDR."""

from __future__ import annotations

import ipaddress

import pytest

from pykubemark.hollow.ipam import Ipam


def test_first_addresses_skip_network_and_bridge() -> None:
    ipam = Ipam("10.64.3.0/24")
    assert [ipam.allocate() for _ in range(3)] == ["10.64.3.2", "10.64.3.3", "10.64.3.4"]
    assert len(ipam) == 3


def test_whole_cidr_unique_then_exhausted() -> None:
    ipam = Ipam("10.0.0.0/28")  # .0 network, .1 bridge, .15 broadcast
    got = [ipam.allocate() for _ in range(13)]
    assert len(set(got)) == 13
    network = ipaddress.ip_network("10.0.0.0/28")
    for ip in got:
        assert ipaddress.ip_address(ip) in network
    assert "10.0.0.0" not in got
    assert "10.0.0.1" not in got
    assert "10.0.0.15" not in got
    with pytest.raises(RuntimeError, match="exhausted"):
        ipam.allocate()


def test_non_strict_cidr_is_normalised() -> None:
    ipam = Ipam("10.0.0.77/24")
    assert ipam.allocate() == "10.0.0.2"


def test_release_then_reuse() -> None:
    ipam = Ipam("10.0.0.0/24")
    a, b, c = ipam.allocate(), ipam.allocate(), ipam.allocate()
    ipam.release(b)
    assert len(ipam) == 2
    again = ipam.allocate()
    assert again == b
    assert again not in (a, c)
    assert ipam.allocate() == "10.0.0.5"


def test_release_frees_exhausted_pool() -> None:
    ipam = Ipam("10.0.0.0/29")  # .2 .. .6
    got = [ipam.allocate() for _ in range(5)]
    with pytest.raises(RuntimeError):
        ipam.allocate()
    ipam.release(got[2])
    assert ipam.allocate() == got[2]


def test_release_unknown_or_twice_is_harmless() -> None:
    ipam = Ipam("10.0.0.0/24")
    a = ipam.allocate()
    ipam.release("10.0.0.99")  # never handed out
    ipam.release("not-an-ip")
    ipam.release(a)
    ipam.release(a)
    assert len(ipam) == 0
    assert ipam.allocate() == a
    # a second release must not have put the address in the free list twice
    assert ipam.allocate() != a


def test_reserve_existing_address_is_not_handed_out() -> None:
    ipam = Ipam("10.0.0.0/24")
    ipam.reserve("10.0.0.5")
    assert len(ipam) == 1
    got = [ipam.allocate() for _ in range(5)]
    assert "10.0.0.5" not in got
    assert sorted(got, key=ipaddress.ip_address) == [
        "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.6", "10.0.0.7",
    ]


def test_reserve_below_next_takes_it_from_free_list() -> None:
    ipam = Ipam("10.0.0.0/24")
    a, _b = ipam.allocate(), ipam.allocate()
    ipam.release(a)
    ipam.reserve(a)
    assert ipam.allocate() == "10.0.0.4"


def test_reserve_ignores_duplicates_foreign_and_garbage() -> None:
    ipam = Ipam("10.0.0.0/24")
    ipam.reserve("10.0.0.3")
    ipam.reserve("10.0.0.3")
    ipam.reserve("192.168.1.9")
    ipam.reserve("")
    ipam.reserve("nonsense")
    assert len(ipam) == 1
    got = [ipam.allocate() for _ in range(3)]
    assert "10.0.0.3" not in got
    assert len(set(got)) == 3


def test_reserve_many_then_fill_has_no_duplicates() -> None:
    ipam = Ipam("10.0.0.0/27")  # 29 usable
    reserved = {"10.0.0.4", "10.0.0.9", "10.0.0.20", "10.0.0.30"}
    for ip in reserved:
        ipam.reserve(ip)
    got = []
    with pytest.raises(RuntimeError):
        while True:
            got.append(ipam.allocate())
    assert len(got) == 29 - len(reserved)
    assert len(set(got) | reserved) == 29
    assert not set(got) & reserved


def test_reserved_bridge_address_never_handed_out_after_release() -> None:
    ipam = Ipam("10.0.0.0/24")
    ipam.reserve("10.0.0.1")
    ipam.release("10.0.0.1")
    assert ipam.allocate() != "10.0.0.1"
