"""CoreDNS beside the control plane, as kubeadm deploys it.

It runs as a local process with kubeadm's Corefile, its DNS port on loopback, as
``system:coredns`` (a client certificate from the cluster CA, bound to kubeadm's
``system:coredns`` ClusterRole). Its kubernetes plugin watches Services,
EndpointSlices and Namespaces of the cluster, the load a real cluster's DNS puts on the
apiserver; it answers for cluster.local, and forwards nothing (no upstream: the
``forward`` and ``loop`` plugins of kubeadm's Corefile are left out). The ``kube-dns``
Service (10.0.0.10, what kubelets' clusterDNS names) is created as kubeadm does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pykubemark.cluster import health, ports
from pykubemark.cluster.addons import addon_dir, apply, binding, cluster_role, identity
from pykubemark.files import write_atomic

if TYPE_CHECKING:
    from pykubemark.cluster.control_plane import LocalCluster

USER = "system:coredns"
CLUSTER_DNS = "10.0.0.10"


def corefile(kubeconfig: Path, context: str, dns: int, health_port: int, ready: int,
             metrics: int) -> str:
    """kubeadm's Corefile (cmd/kubeadm/app/phases/addons/dns/manifests.go), on loopback
    ports, with the cluster's kubeconfig and without an upstream."""
    return f""".:{dns} {{
    bind 127.0.0.1
    errors
    health 127.0.0.1:{health_port} {{
       lameduck 5s
    }}
    ready 127.0.0.1:{ready}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
       kubeconfig {kubeconfig} {context}
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
    prometheus 127.0.0.1:{metrics}
    cache 30 {{
       disable success cluster.local
       disable denial cluster.local
    }}
    reload
    loadbalance
}}
"""


def objects() -> list[tuple[str, dict]]:
    return [
        cluster_role("system:coredns", [
            {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
             "verbs": ["list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
             "verbs": ["list", "watch"]}]),
        binding("system:coredns", "system:coredns", USER),
        ("/api/v1/namespaces/kube-system/services", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-dns",
                                    "kubernetes.io/name": "CoreDNS"},
                         "annotations": {"prometheus.io/port": "9153",
                                         "prometheus.io/scrape": "true"}},
            "spec": {"selector": {"k8s-app": "kube-dns"}, "clusterIP": CLUSTER_DNS,
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP",
                                "targetPort": 53},
                               {"name": "dns-tcp", "port": 53, "protocol": "TCP",
                                "targetPort": 53},
                               {"name": "metrics", "port": 9153, "protocol": "TCP",
                                "targetPort": 9153}]}}),
    ]


def start(cluster: LocalCluster, binary: Path, version: str) -> None:
    from pykubemark.cluster.control_plane import wait_until

    directory = addon_dir(cluster, "coredns")
    kubeconfig, _cert, _key = identity(cluster, "coredns", USER)
    dns, health_port, ready, metrics = ports.free_ports(4)
    cluster.state.ports.update({"coredns": dns, "coredns-metrics": metrics})
    apply(cluster, objects())
    config = write_atomic(directory / "Corefile", corefile(
        kubeconfig, cluster.state.name, dns, health_port, ready, metrics))
    proc = cluster._launch("coredns", [str(binary), "-conf", str(config)], port=dns,
                           health_url=f"http://127.0.0.1:{health_port}/health")
    # /ready: OK once the kubernetes plugin's informers have synced.
    wait_until("CoreDNS /ready",
               lambda: health.healthy(f"http://127.0.0.1:{ready}/ready"), proc, 60)
