"""The kubelet API's pure parts: quantities, container logs per instance, node addresses
and the sockets bound for them."""

from __future__ import annotations

import socket

import msgspec
import pytest

from pykubemark.errors import UserError
from pykubemark.hollow.kubelet_api import (
    ApiOptions,
    bind_nodes,
    check_addresses,
    container_usage,
    log_lines,
    quantity,
)
from pykubemark.hollow.objects import ContainerView, Exited
from pykubemark.hollow.pods import PodRecord
from pykubemark.kube.types import Pod


def record(requests: dict[str, str] | None = None) -> PodRecord:
    pod = msgspec.convert({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
        "spec": {"nodeName": "n", "containers": [
            {"name": "c", "image": "img", "resources": {"requests": requests or {}}}]},
    }, Pod)
    return PodRecord(pod)


def test_quantities() -> None:
    assert quantity("100m") == pytest.approx(0.1)
    assert quantity("2") == 2
    assert quantity("64Mi") == 64 << 20
    assert quantity("1G") == 1e9
    assert quantity("junk") == 0


def test_usage_stays_below_the_request_and_exists_only_while_running() -> None:
    r = record({"cpu": "200m", "memory": "64Mi"})
    assert container_usage(r, 1e9) == []
    r.phase = "Running"
    r.times.started = "2026-11-23T08:00:00Z"
    (usage,) = container_usage(r, 0.0)
    assert 0 < usage.nanocores < 200_000_000
    assert 0 < usage.working_set < 64 << 20
    assert container_usage(r, 0.0) == [usage]


def test_logs_of_a_crash_loop_current_previous_and_tail() -> None:
    r = record()
    r.phase = "Running"
    view = r.view = ContainerView()
    view.exited = [Exited(3, "Error", "2026-11-23T08:00:00Z", "2026-11-23T08:00:01Z", 0),
                   Exited(3, "Error", "2026-11-23T08:00:11Z", "2026-11-23T08:00:12Z", 1)]
    view.waiting = ("CrashLoopBackOff", "back-off restarting {container}")
    current = log_lines(r, "c", previous=False)
    assert isinstance(current, list)
    assert current[-1] == ("2026-11-23T08:00:12Z", "c exiting with code 3 (Error)")
    previous = log_lines(r, "c", previous=True)
    assert isinstance(previous, list)
    assert previous[-1][0] == "2026-11-23T08:00:01Z"
    view.running_since = "2026-11-23T08:00:30Z"
    assert log_lines(r, "c", previous=True)[-1][0] == "2026-11-23T08:00:12Z"  # type: ignore[index]
    assert log_lines(r, "missing", previous=False) == (
        404, 'container "missing" not found in pod "p"')


def test_previous_log_of_a_first_instance_and_of_a_pending_pod_are_refused() -> None:
    r = record()
    assert log_lines(r, "c", previous=False) == (
        400, 'container "c" in pod "p" is waiting to start: ContainerCreating')
    r.phase = "Running"
    r.times.started = "2026-11-23T08:00:00Z"
    assert log_lines(r, "c", previous=True)[0] == 400  # type: ignore[index]


def test_node_addresses_must_be_loopback_but_not_the_apiservers() -> None:
    check_addresses(["127.16.0.1", "127.31.255.254"])
    for bad in ("127.0.0.1", "198.18.0.1"):
        with pytest.raises(UserError, match=bad):
            check_addresses([bad])


def test_one_free_port_for_every_node_address() -> None:
    names = {"a": "127.16.200.1", "b": "127.16.200.2", "c": "127.16.200.3"}
    endpoints, sockets = bind_nodes(names, ApiOptions())
    try:
        assert {e[0] for e in endpoints.values()} == set(names.values())
        assert len({e[1] for e in endpoints.values()}) == 1
        assert [s.getsockname()[:2] for s in sockets] == list(endpoints.values())
    finally:
        for sock in sockets:
            sock.close()


def test_one_address_for_every_node_and_a_port_each() -> None:
    names = {"a": "127.16.0.1", "b": "127.16.0.2"}
    with socket.socket() as probe:
        probe.bind(("127.16.201.1", 0))
        free = probe.getsockname()[1]
    endpoints, sockets = bind_nodes(names, ApiOptions(address="127.16.201.1", port=free))
    try:
        (host_a, port_a), (host_b, port_b) = endpoints["a"], endpoints["b"]
        assert host_a == host_b == "127.16.201.1"
        assert (port_a, port_b) == (free, free + 1)
    finally:
        for sock in sockets:
            sock.close()


def test_usage_from_the_profile_rules_and_annotations() -> None:
    from pykubemark.hollow.profile import UsageProfile, UsageRule

    r = record({"cpu": "200m", "memory": "64Mi"})
    r.phase = "Running"
    r.times.started = "2026-11-23T08:00:00Z"
    profile = UsageProfile(cpu_factor=0.5, rules=[UsageRule(namespaces=["other"],
                                                            cpu_factor=3.0)])
    (usage,) = container_usage(r, 0.0, profile)
    assert usage.nanocores == 100_000_000
    assert 0 < usage.working_set < 64 << 20  # memory: the stable share
    namespace = r.pod.metadata.namespace
    profile = UsageProfile(cpu_factor=0.5, rules=[UsageRule(namespaces=[namespace],
                                                            cpu_factor=1.5,
                                                            memory_factor=1.0)])
    (usage,) = container_usage(r, 0.0, profile)
    assert (usage.nanocores, usage.working_set) == (300_000_000, 64 << 20)
    r.pod.metadata.annotations = {"pykubemark.io/cpu-usage": "750m"}
    (usage,) = container_usage(r, 0.0, profile)
    assert usage.nanocores == 750_000_000
