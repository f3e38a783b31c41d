"""The heartbeat of `hollow --heartbeat-file`: written only while every node renews."""

from __future__ import annotations

from types import SimpleNamespace

from pykubemark.hollow.fleet import Fleet, FleetOptions
from pykubemark.kube.config import KubeConfig


def test_heartbeat_stops_when_one_node_stops_renewing() -> None:
    config = KubeConfig(server="http://127.0.0.1:1", ssl_context=None)
    fleet = Fleet(FleetOptions(kubeconfig=None, nodes=2), config, config)
    duration = fleet.profile.lease_duration
    assert fleet.renewing(1000.0)  # no node yet: nothing has failed
    fleet.kubelets = {"a": SimpleNamespace(renewed=1000.0),  # type: ignore[dict-item]
                      "b": SimpleNamespace(renewed=1000.0 - duration / 2)}
    assert fleet.renewing(1000.0)
    fleet.kubelets["b"] = SimpleNamespace(renewed=1000.0 - duration - 1)  # type: ignore[assignment]
    assert not fleet.renewing(1000.0)
