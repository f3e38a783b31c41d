"""metrics-server beside the control plane, with the objects of the release's
cluster/addons/metrics-server manifests.

It runs as a local process on a loopback port, as ``system:metrics-server`` (a client
certificate from the cluster CA: the same one it presents to every hollow kubelet, whose
API accepts only clients of that CA). It scrapes each node's ``/metrics/resource`` at its
InternalIP (``--kubelet-preferred-address-types=InternalIP``, the port of the Node's
status), every ``--metric-resolution``.

The apiserver reaches it as an aggregated API: the APIService ``v1beta1.metrics.k8s.io``
names the Service ``kube-system/metrics-server`` (no selector), whose one EndpointSlice
is an address of the hollow nodes' network namespace (cluster/hollow_net.py; an
endpoint may not be a loopback address); the apiserver dials endpoints directly
(``--enable-aggregator-routing``). A forwarder (cluster/forwarder.py) listens on that
address inside the namespace and relays to metrics-server on the host's loopback, so
nothing serves beyond loopback and pykubemark's own namespace.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pykubemark.cluster import forwarder, health, ports
from pykubemark.cluster.addons import addon_dir, apply, binding, cluster_role, identity
from pykubemark.errors import UserError

if TYPE_CHECKING:
    from pykubemark.cluster.control_plane import LocalCluster

USER = "system:metrics-server"
NAMESPACE = "kube-system"
APISERVICE = "v1beta1.metrics.k8s.io"
#: The release's manifest: --metric-resolution=15s.
RESOLUTION = "15s"


def service_address(cidr: str) -> str:
    """The last address of the hollow nodes' /16 (nodes count up from its first)."""
    return str(ipaddress.ip_network(cidr).broadcast_address - 1)


def objects(address: str, port: int) -> list[tuple[str, dict]]:
    """What cluster/addons/metrics-server/*.yaml creates, for a local process: RBAC for
    its user, the Service, its EndpointSlice and the APIService."""
    core = f"/api/v1/namespaces/{NAMESPACE}"
    return [
        cluster_role("system:metrics-server", [
            {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["pods", "nodes", "namespaces",
                                              "configmaps"],
             "verbs": ["get", "list", "watch"]}]),
        cluster_role("system:aggregated-metrics-reader", [
            {"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"],
             "verbs": ["get", "list", "watch"]}]),
        binding("system:metrics-server", "system:metrics-server", USER),
        binding("metrics-server:system:auth-delegator", "system:auth-delegator", USER),
        binding("metrics-server-auth-reader", "extension-apiserver-authentication-reader",
                USER, namespace=NAMESPACE, role_kind="Role"),
        (f"{core}/services", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "metrics-server", "namespace": NAMESPACE,
                         "labels": {"kubernetes.io/name": "Metrics-server"}},
            "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                "targetPort": port}]}}),
        (f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices", {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "metrics-server-local", "namespace": NAMESPACE, "labels": {
                "kubernetes.io/service-name": "metrics-server",
                "endpointslice.kubernetes.io/managed-by": "pykubemark.io"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}),
        ("/apis/apiregistration.k8s.io/v1/apiservices", {
            "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": APISERVICE},
            "spec": {"service": {"name": "metrics-server", "namespace": NAMESPACE,
                                 "port": 443},
                     "group": "metrics.k8s.io", "version": "v1beta1",
                     "insecureSkipTLSVerify": True, "groupPriorityMinimum": 100,
                     "versionPriority": 100}}),
    ]


def available(cluster: LocalCluster) -> bool:
    status, body = health.get(
        f"{cluster.state.server}/apis/apiregistration.k8s.io/v1/apiservices/{APISERVICE}",
        token=cluster.token("admin"), ca_cert=cluster.dir / "pki" / "ca.crt")
    if status != 200:
        return False
    conditions = json.loads(body).get("status", {}).get("conditions", [])
    return any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions)


def argv(binary: Path, directory: Path, kubeconfig: Path, cert: Path, key: Path,
         port: int) -> list[str]:
    return [
        str(binary), f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1", f"--secure-port={port}", f"--cert-dir={directory}",
        # The release's manifest, but InternalIP only: a hollow node's Hostname resolves
        # nowhere.
        f"--metric-resolution={RESOLUTION}", "--kubelet-use-node-status-port",
        "--kubelet-insecure-tls", "--kubelet-preferred-address-types=InternalIP",
        f"--kubelet-client-certificate={cert}", f"--kubelet-client-key={key}",
    ]


def start(cluster: LocalCluster, binary: Path, version: str) -> None:
    from pykubemark.cluster.control_plane import wait_until

    net = cluster.state.hollow_network
    if net is None or net.netns is None:
        raise UserError("metrics-server needs the hollow nodes' network namespace, which "
                        "`up` makes only as root with `ip` (iproute2): the apiserver "
                        "reaches it through an address there (or --addons none)")
    directory = addon_dir(cluster, "metrics-server")
    kubeconfig, cert, key = identity(cluster, "metrics-server", USER)
    port = ports.free_ports(1)[0]
    cluster.state.ports["metrics-server"] = port
    address = service_address(net.cidr)
    apply(cluster, objects(address, port))
    proc = cluster._launch("metrics-server", argv(binary, directory, kubeconfig, cert, key,
                                                   port),
                           port=port, health_url=f"https://127.0.0.1:{port}/livez")
    config = directory / "forwarder.json"
    forwarder.write_config(config, port=port, target_port=port, netns=[net.netns],
                           listen_host=address)
    relay = cluster.add_process("metrics-server-forwarder", [
        sys.executable, "-m", "pykubemark.cluster.forwarder", str(config)])
    wait_until("the metrics-server forwarder to listen",
               lambda: net.netns in forwarder.serving(config), relay, 30)
    wait_until("metrics-server /livez", lambda: health.healthy(proc.health_url or ""), proc,
               60)
    wait_until(f"APIService {APISERVICE} to be Available", lambda: available(cluster), proc,
               90)
