"""Addons and the fleet's metrics, their pure parts: which addons, which versions, the
objects they need, the request classification and the Prometheus text."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pykubemark import telemetry
from pykubemark.cluster.addons import DEFAULT_ADDONS, parse_addons
from pykubemark.cluster.addons.coredns import corefile
from pykubemark.cluster.addons.metrics_server import objects, service_address
from pykubemark.errors import UserError
from pykubemark.provision.addons import SOURCES, nearest_served
from pykubemark.provision.addons import tested_version as version_in_source


def test_parse_addons() -> None:
    assert parse_addons(None) == DEFAULT_ADDONS
    assert parse_addons("none") == ()
    assert parse_addons("") == ()
    assert parse_addons("coredns,metrics-server") == ("metrics-server", "coredns")
    with pytest.raises(UserError, match="unknown heapster"):
        parse_addons("heapster")


def test_nearest_served_version() -> None:
    served = ["v0.7.2", "v0.8.0", "v0.8.1", "v0.9.0"]
    assert nearest_served("v0.8.1", served) == ("v0.8.1", "")
    version, note = nearest_served("v0.8.3", served)
    assert version == "v0.8.1" and "not served" in note
    assert nearest_served("v0.6.0", served)[0] == "v0.7.2"  # nothing of 0.6: its major
    assert nearest_served("v0.8.0-rc.1", ["v0.8.0"])[0] == "v0.8.0"


def test_versions_from_the_release_source(tmp_path: Path) -> None:
    ms = tmp_path / SOURCES["metrics-server"].source_file
    ms.parent.mkdir(parents=True)
    ms.write_text("        image: registry.k8s.io/metrics-server/metrics-server:v0.8.1\n"
                  "        image: registry.k8s.io/autoscaling/addon-resizer:1.8.20\n")
    dns = tmp_path / SOURCES["coredns"].source_file
    dns.parent.mkdir(parents=True)
    dns.write_text('\t// CoreDNSVersion is the version\n\tCoreDNSVersion = "v1.14.6"\n')
    assert version_in_source(tmp_path, SOURCES["metrics-server"]) == "v0.8.1"
    assert version_in_source(tmp_path, SOURCES["coredns"]) == "v1.14.6"
    assert SOURCES["metrics-server"].ldflags("v0.8.1").endswith(
        "-X 'k8s.io/client-go/pkg/version.gitVersion=v0.8.1'")


def test_metrics_server_objects_point_at_a_namespace_address() -> None:
    address = service_address("100.67.0.0/16")
    assert address == "100.67.255.254"
    made = {body["kind"] + "/" + body["metadata"]["name"]: body
            for _path, body in objects(address, 4443)}
    endpoints = made["EndpointSlice/metrics-server-local"]
    assert endpoints["endpoints"][0]["addresses"] == [address]
    assert endpoints["ports"][0] == {"name": "https", "port": 4443, "protocol": "TCP"}
    assert made["APIService/v1beta1.metrics.k8s.io"]["spec"]["service"]["name"] == \
        "metrics-server"
    assert "selector" not in made["Service/metrics-server"]["spec"]


def test_corefile_binds_loopback_and_forwards_nowhere() -> None:
    text = corefile(Path("/k"), "c", 1053, 1054, 1055, 1056)
    assert "bind 127.0.0.1" in text and "kubeconfig /k c" in text
    assert "forward" not in text and "prometheus 127.0.0.1:1056" in text


@pytest.mark.parametrize(("method", "path", "params", "want"), [
    ("GET", "/api/v1/nodes", None, ("LIST", "nodes")),
    ("GET", "/api/v1/nodes/n1", None, ("GET", "nodes")),
    ("PATCH", "/api/v1/nodes/n1/status", None, ("PATCH", "nodes/status")),
    ("GET", "/api/v1/pods", {"watch": "true"}, ("WATCH", "pods")),
    ("PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1", None,
     ("PUT", "leases")),
    ("POST", "/api/v1/namespaces/ns/serviceaccounts/default/token", None,
     ("POST", "serviceaccounts/token")),
    ("GET", "/api/v1/namespaces/ns", None, ("GET", "namespaces")),
    ("GET", "/version", None, ("GET", "version")),
])
def test_classify(method: str, path: str, params: dict[str, str] | None,
                  want: tuple[str, str]) -> None:
    assert telemetry.classify(method, path, params) == want


def test_fleet_metrics_parse_and_count() -> None:
    from prometheus_client import generate_latest

    from pykubemark.hollow.metrics import registry_for

    telemetry.reset()
    telemetry.REQUESTS[("PUT", "leases", "200")] += 3
    telemetry.REQUESTS[("PATCH", "nodes/status", "429")] += 1
    telemetry.RETRIES[("PATCH", "nodes/status")] += 1
    telemetry.LEASE_GAP.observe(10.5)
    telemetry.LEASE_GAP.observe(31.0)

    def kubelet(registered: bool, up: bool, phases: list[str]) -> SimpleNamespace:
        events = [asyncio.Event(), asyncio.Event()]
        if registered:
            events[0].set()
        if up:
            events[1].set()
        pods = {i: SimpleNamespace(phase=p) for i, p in enumerate(phases)}
        return SimpleNamespace(registered=events[0], up=events[1],
                               pods=SimpleNamespace(pods=pods))

    fleet = SimpleNamespace(kubelets={"a": kubelet(True, True, ["Running", "Running"]),
                                      "b": kubelet(True, False, ["Pending"]),
                                      "c": kubelet(False, True, [])})
    text = generate_latest(registry_for(fleet)).decode()  # type: ignore[arg-type]
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("pykubemark_nodes", (("state", "registered"),))] == 2
    assert samples[("pykubemark_nodes", (("state", "ready"),))] == 1
    assert samples[("pykubemark_pods", (("phase", "Running"),))] == 2
    assert samples[("pykubemark_api_requests_total",
                    (("code", "200"), ("resource", "leases"), ("verb", "PUT")))] == 3
    assert samples[("pykubemark_api_throttled_requests_total", ())] == 1
    assert samples[("pykubemark_lease_renewal_gap_max_seconds", ())] == 31.0
    assert samples[("pykubemark_lease_renewal_gap_seconds_count", ())] == 2
    assert ("pykubemark_process_resident_memory_bytes", ()) in samples
    telemetry.reset()
