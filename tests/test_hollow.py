"""50 hollow nodes against the real control plane: do the scheduler, the
controller-manager and kubectl take them for real nodes, and does the apiserver see the
same requests as from the real kubelet and kube-proxy of the same release
(`benchmarks/reference/real-<minor>.json`, recorded by `benchmarks/fidelity.py --record`)?

The tests run in file order on one fleet: idle first, then a pod cycle, then the
disruptive ones (node deletion, lease conflict, apiserver restart).
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import (
    KUBELET_USER,
    PROXY_USER,
    Cluster,
    Fleet,
    hollow_audit,
    is_ready,
    ready_transition,
    utcnow,
    wait_for,
)

from pykubemark.hollow.profile import load_profile
from pykubemark.measure.audit import count_rows, read_audit, watch_set
from pykubemark.provision.releases import default_release

NODES = 50
PODS_PER_NODE = 10
STARTUP = 90.0  # the reference excludes the first ~80 s
IDLE_WINDOW = 300.0  # one node-status report period: every node reports once
TOLERANCE = 0.10
RELEASE = default_release()
REFERENCE = json.loads((Path(__file__).parent.parent / "benchmarks" / "reference"
                        / f"real-{RELEASE.major}.{RELEASE.minor}.json").read_text())
PROFILE = load_profile(None, RELEASE)
USERS = {KUBELET_USER: "kubelet", PROXY_USER: "proxy"}
#: Per-pod rows compared: what each pod costs, not the per-node traffic (leases, the
#: reopening of watches) that happens to fall into the window.
POD_ROWS = ("events", "serviceaccounts/token", "pods", "pods/status")
#: A reference row counted fewer times than this says too little for ±10 %.
FEW = 20


def compared(window: str, rows: tuple[str, ...] | None = None) -> dict[str, float]:
    """The reference's rates of ``window`` that it counted often enough to compare.
    Status patches that only write status.resources are left out: a real kubelet on a
    cgroup v1 host (as the reference's) reads its pods' unlimited memory as 8 EiB and
    sometimes writes it."""
    data = REFERENCE["windows"][window]
    counts = data.get("counts", {})
    rates = {k: v for k, v in data["rates"].items()
             if counts.get(k, 0) >= FEW and (rows is None or k.split()[2] in rows)}
    key = "kubelet patch pods/status"
    if key in rates and data.get("resources_only_status_patches"):
        rates[key] -= data["resources_only_status_patches"]
    return rates


def rows(counter: Counter, scale: float) -> dict[str, float]:
    return {f"{USERS[user]} {verb} {resource}": n / scale
            for (user, verb, resource), n in counter.items()}


def assert_close(measured: dict[str, float], expected: dict[str, float], keys: list[str]) -> None:
    report = {k: (round(measured.get(k, 0.0), 3), expected[k]) for k in keys}
    off = {k: v for k, v in report.items() if abs(v[0] - v[1]) > TOLERANCE * v[1]}
    assert not off, f"outside ±10% of the real kubelet (measured, reference): {off}; all: {report}"


@pytest.fixture(scope="module")
def fleet(cluster: Cluster) -> Iterator[Fleet]:
    fleet = Fleet(cluster, NODES, "hollow", "--delete-nodes-on-exit")
    try:
        fleet.wait_ready()
        yield fleet
    finally:
        code = fleet.stop()
    assert code == 0, fleet.log.read_text()[-2000:]


@dataclass
class Idle:
    start: object
    end: object
    samples: list[list[dict]] = field(default_factory=list)


@pytest.fixture(scope="module")
def idle(cluster: Cluster, fleet: Fleet) -> Idle:
    """A quiet window after start-up; node objects sampled every 10 s throughout."""
    settle = STARTUP - (utcnow() - fleet.started).total_seconds()
    if settle > 0:
        time.sleep(settle)
    window = Idle(start=utcnow(), end=None)
    deadline = time.monotonic() + IDLE_WINDOW
    while time.monotonic() < deadline:
        window.samples.append(fleet.nodes_json())
        time.sleep(min(10.0, max(0.0, deadline - time.monotonic())))
    window.end = utcnow()
    return window


def test_nodes_look_like_real_nodes(cluster: Cluster, fleet: Fleet) -> None:
    nodes = fleet.nodes_json()
    assert len(nodes) == NODES and all(is_ready(n) for n in nodes)
    wide = cluster.kubectl("get", "nodes", "-o", "wide", "--no-headers").splitlines()
    ours = [line.split() for line in wide if line.startswith("hollow-")]
    assert len(ours) == NODES
    assert {row[1] for row in ours} == {"Ready"}
    assert {row[4] for row in ours} == {RELEASE.tag}
    assert len({row[5] for row in ours}) == NODES  # unique InternalIPs
    cidrs = [ipaddress.ip_network(n["spec"]["podCIDR"]) for n in nodes]
    assert len(set(cidrs)) == NODES
    for node in nodes:
        name = node["metadata"]["name"]
        labels = node["metadata"]["labels"]
        assert labels["kubernetes.io/hostname"] == name
        assert labels["kubernetes.io/os"] == labels["beta.kubernetes.io/os"] == "linux"
        assert "kubernetes.io/arch" in labels and "beta.kubernetes.io/arch" in labels
        status = node["status"]
        assert set(status["capacity"]) == {"cpu", "memory", "pods", "ephemeral-storage"}
        assert status["allocatable"] == status["capacity"]
        assert [c["type"] for c in status["conditions"]] == [
            "MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        assert {a["type"] for a in status["addresses"]} == {"InternalIP", "Hostname"}
        assert status["nodeInfo"]["kubeletVersion"] == RELEASE.tag
        assert status["nodeInfo"]["kubeProxyVersion"] == (
            RELEASE.tag if PROFILE.report_kube_proxy_version else "")
        assert not node["spec"].get("taints")
    csinodes = {c["metadata"]["name"]: c for c in cluster.get_json("csinodes")["items"]}

    def leases() -> dict[str, dict]:
        return {item["metadata"]["name"]: item
                for item in cluster.get_json("leases", "-n", "kube-node-lease")["items"]}

    # A current kubelet's lease controller starts before its Node exists, finds nothing
    # to own the Lease and tries again a renew period later, as the real one does.
    wait_for("every node's lease", lambda: set(fleet.names) <= set(leases()), 60, 2)
    leases = leases()
    for node in nodes:
        name, uid = node["metadata"]["name"], node["metadata"]["uid"]
        assert csinodes[name]["metadata"]["ownerReferences"][0]["uid"] == uid
        lease = leases[name]
        assert lease["spec"]["holderIdentity"] == name
        assert lease["spec"]["leaseDurationSeconds"] == 40
        assert lease["metadata"]["ownerReferences"][0]["uid"] == uid


def test_idle_nodes_stay_ready_without_taints(idle: Idle) -> None:
    assert len(idle.samples) >= IDLE_WINDOW / 10 - 2
    first = {n["metadata"]["name"]: ready_transition(n) for n in idle.samples[0]}
    assert len(first) == NODES
    for sample in idle.samples:
        assert len(sample) == NODES
        for node in sample:
            name = node["metadata"]["name"]
            assert is_ready(node), f"{name} not Ready at some point"
            assert not node["spec"].get("taints"), f"{name} tainted: {node['spec']['taints']}"
            assert ready_transition(node) == first[name], f"{name} Ready condition flapped"


def test_idle_requests_match_the_real_kubelet(cluster: Cluster, idle: Idle) -> None:
    requests = list(hollow_audit(cluster.audit_log, since=idle.start, until=idle.end,
                                 users=USERS))
    minutes = (idle.end - idle.start).total_seconds() / 60
    measured = rows(count_rows(requests), NODES * minutes)
    expected = compared("idle")
    assert_close(measured, expected, [k for k in expected if " watch " not in k])
    # Too few in the reference to compare (a node reports every 5 minutes, the first time
    # after a random ±50 %): on average the kubelet's nodeStatusReportFrequency.
    report = "kubelet patch nodes/status"
    assert_close(measured, {report: 60 / PROFILE.status_report}, [report])
    # Nothing else is sent while idle but what the real pair sends, the reopening of
    # watches (≈0.1/min each) among it.
    sent = REFERENCE["windows"]["idle"]["rates"]
    others = {k: v for k, v in measured.items() if k not in sent}
    assert not others, others
    for key in [k for k in sent if " watch " in k]:
        assert measured.get(key, 0.0) <= 0.25, (key, measured.get(key))


def test_watches_are_the_kubelet_and_kube_proxy_ones(cluster: Cluster, fleet: Fleet) -> None:
    requests = hollow_audit(cluster.audit_log, since=fleet.started, users=USERS)
    seen = {(USERS[u], resource, selectors)
            for u, resource, selectors in watch_set(requests, fleet.names)}
    # Pods reference secrets and configmaps only once they exist (the pod-cycle test).
    by_pods = ("secrets", "configmaps")
    expected = {tuple(w) for w in REFERENCE["watches"] if w[1] not in by_pods}
    assert {w for w in seen if w[1] not in by_pods} == expected


@dataclass
class Cycle:
    created: object = None
    available: object = None
    scaled: object = None
    gone: object = None
    pods: list[dict] = field(default_factory=list)


@pytest.fixture(scope="module")
def cycle(cluster: Cluster, fleet: Fleet, idle: Idle) -> Cycle:
    """A Deployment of 10 pods per node, mounting a Secret and a ConfigMap as the
    reference's do: create, all Available, hold, scale to 0, gone."""
    replicas = NODES * PODS_PER_NODE
    cluster.kubectl("create", "secret", "generic", "cycle", "--from-literal=token=x")
    cluster.kubectl("create", "configmap", "cycle", "--from-literal=mode=test")
    result = Cycle(created=utcnow())
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "cycle", "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "cycle"}},
                 "template": {"metadata": {"labels": {"app": "cycle"}}, "spec": {
                     "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                                     "volumeMounts": [{"name": "s", "mountPath": "/s"},
                                                      {"name": "c", "mountPath": "/c"}]}],
                     "volumes": [{"name": "s", "secret": {"secretName": "cycle"}},
                                 {"name": "c", "configMap": {"name": "cycle"}}]}}}}))
    cluster.kubectl("rollout", "status", "deployment/cycle", "--timeout=600s", timeout=660)
    result.available = utcnow()
    result.pods = cluster.get_json("pods", "-l", "app=cycle")["items"]
    time.sleep(20)
    result.scaled = utcnow()
    cluster.kubectl("scale", "deployment/cycle", "--replicas=0")
    wait_for("every pod to be deleted",
             lambda: not cluster.get_json("pods", "-l", "app=cycle")["items"], 300, 2)
    result.gone = utcnow()
    time.sleep(5)
    cluster.kubectl("delete", "secret,configmap", "cycle")
    return result


def test_deployment_becomes_available_on_hollow_nodes(cycle: Cycle, fleet: Fleet) -> None:
    pods = cycle.pods
    assert len(pods) == NODES * PODS_PER_NODE
    nodes = {n["metadata"]["name"]: n for n in fleet.nodes_json()}
    ips = [p["status"]["podIP"] for p in pods]
    assert len(set(ips)) == len(ips), "pod IPs are not unique"
    for pod in pods:
        status = pod["status"]
        node = nodes[pod["spec"]["nodeName"]]
        assert status["phase"] == "Running"
        expected = {"Initialized": "True", "Ready": "True", "ContainersReady": "True",
                    "PodScheduled": "True"}
        if "PodReadyToStartContainers" in PROFILE.pod_status_fields:
            expected["PodReadyToStartContainers"] = "True"
        assert {c["type"]: c["status"] for c in status["conditions"]} == expected
        container = status["containerStatuses"][0]
        assert container["ready"] and container["started"] and container["restartCount"] == 0
        assert "startedAt" in container["state"]["running"]
        assert container["containerID"] and container["imageID"]
        assert ipaddress.ip_address(status["podIP"]) in ipaddress.ip_network(
            node["spec"]["podCIDR"])
        internal = next(a["address"] for a in node["status"]["addresses"]
                        if a["type"] == "InternalIP")
        assert status["hostIP"] == internal
        assert status["qosClass"] == "BestEffort" and status["startTime"]


def test_pod_requests_match_the_real_kubelet(cluster: Cluster, cycle: Cycle) -> None:
    pods = NODES * PODS_PER_NODE
    start = count_rows(hollow_audit(cluster.audit_log, since=cycle.created,
                                  until=cycle.scaled, users=[KUBELET_USER]))
    stop = count_rows(hollow_audit(cluster.audit_log, since=cycle.scaled, users=[KUBELET_USER]))
    for window, counted in (("start", start), ("stop", stop)):
        expected = compared(window, POD_ROWS)
        assert_close(rows(counted, pods), expected, list(expected))


def test_referenced_secrets_are_watched_per_node(cluster: Cluster, cycle: Cycle) -> None:
    token = next(v["secret"]["secretName"] for v in cycle.pods[0]["spec"]["volumes"]
                 if v.get("secret"))
    lists = [r for r in read_audit(cluster.audit_log, since=cycle.created, until=cycle.gone)
             if r.user.startswith("system:node:hollow-") and r.resource == "secrets"
             and r.initial_list]
    assert {r.selectors().get("fieldSelector") for r in lists} == {f"metadata.name={token}"}
    nodes_with_pods = {p["spec"]["nodeName"] for p in cycle.pods}
    # One reflector per node that runs pods, synced by one LIST. A LIST may first be
    # refused (403) while the Node authorizer's graph has not yet linked the pod's
    # secret to the node, as a real kubelet's can be; its retry then succeeds.
    synced = Counter(r.user.removeprefix("system:node:") for r in lists if r.code == 200)
    assert synced == dict.fromkeys(nodes_with_pods, 1)
    assert {r.code for r in lists} <= {200, 403}


def test_deleted_node_stays_deleted_as_with_the_kubelet(cluster: Cluster) -> None:
    """A kubelet registers once per process: after its Node is deleted it keeps trying
    its status update (its GETs 404) and creates no Node; once the garbage collector has
    removed its Lease, a renewal PUTs a fresh one without an owner, which the apiserver
    creates (201) — what the Go kubemark does too."""
    fleet = Fleet(cluster, 1, "deleted")
    try:
        fleet.wait_ready()
        name = fleet.names[0]
        wait_for(f"{name}'s lease", lambda: cluster.kubectl(
            "get", "lease", name, "-n", "kube-node-lease", "--ignore-not-found"), 60, 2)
        cluster.kubectl("delete", "node", name)
        deleted = utcnow()
        user = f"system:node:{name}"

        def status_retries() -> list:
            return [r for r in read_audit(cluster.audit_log, since=deleted, users=[user])
                    if r.resource == "nodes" and r.verb == "get" and r.code == 404]

        wait_for("a status period of 404s", lambda: len(status_retries()) >= 5, 60, 2)
        # The garbage collector removes the Lease with its Node within moments.
        wait_for("the lease created again by a renewal", lambda: [
            r for r in read_audit(cluster.audit_log, since=deleted, users=[user])
            if r.resource == "leases" and r.verb == "update" and r.code == 201], 60, 2)
    finally:
        assert fleet.stop() == 0
    created = [(r.resource, r.code) for r in read_audit(cluster.audit_log, since=deleted,
                                                         users=[user]) if r.verb == "create"]
    assert created == []
    assert not cluster.kubectl("get", "node", name, "--ignore-not-found")
    lease = cluster.get_json("lease", name, "-n", "kube-node-lease")
    assert not lease["metadata"].get("ownerReferences")
    cluster.kubectl("delete", "lease", name, "-n", "kube-node-lease")


def test_deleted_node_registers_again_with_the_chaos_option(cluster: Cluster,
                                                           tmp_path: Path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text("reregister_deleted_node: true\n")
    fleet = Fleet(cluster, 1, "reregister", "--profile", str(profile), "--delete-nodes-on-exit")
    try:
        fleet.wait_ready()
        name = fleet.names[0]
        old_uid = cluster.get_json("node", name)["metadata"]["uid"]
        cluster.kubectl("delete", "node", name)

        def back() -> bool:
            node = cluster.get_json("nodes")["items"]
            again = [n for n in node if n["metadata"]["name"] == name]
            return bool(again) and again[0]["metadata"]["uid"] != old_uid and is_ready(again[0])

        wait_for(f"{name} to register again", back, 60, 1)
        new_uid = cluster.get_json("node", name)["metadata"]["uid"]

        def owned(kind: str, *namespace: str) -> bool:
            out = cluster.kubectl("get", kind, name, *namespace, "-o", "json", check=False)
            refs = json.loads(out)["metadata"].get("ownerReferences") or [] if out else []
            return bool(refs) and refs[0]["uid"] == new_uid

        wait_for(f"{name}'s lease to belong to the new node",
                 lambda: owned("lease", "-n", "kube-node-lease"), 90, 2)
        wait_for(f"{name}'s CSINode to belong to the new node", lambda: owned("csinode"), 90, 2)
        time.sleep(10)  # the garbage collector has had its chance to remove either
        assert owned("lease", "-n", "kube-node-lease") and owned("csinode")
    finally:
        assert fleet.stop() == 0


def test_lease_conflict_is_read_again_and_retried(cluster: Cluster, fleet: Fleet) -> None:
    name = fleet.names[3]
    cluster.kubectl("annotate", "lease", name, "-n", "kube-node-lease", "test/touched=yes",
                    "--overwrite")
    touched = utcnow()
    time.sleep(25)
    lease = cluster.get_json("lease", name, "-n", "kube-node-lease")
    assert lease["metadata"]["annotations"]["test/touched"] == "yes"  # kept: we re-read it
    renewed = lease["spec"]["renewTime"].replace("Z", "+00:00")
    assert renewed > touched.isoformat()
    mine = [r for r in hollow_audit(cluster.audit_log, since=touched, users=[KUBELET_USER])
            if r.resource == "leases" and r.name == name]
    verbs = [(r.verb, r.code) for r in mine]
    assert ("update", 409) in verbs, verbs
    after = verbs[verbs.index(("update", 409)) + 1:]
    assert after[:2] == [("get", 200), ("update", 200)], verbs


def test_apiserver_restart_is_survived(cluster: Cluster, fleet: Fleet) -> None:
    before = {n["metadata"]["name"]: ready_transition(n) for n in fleet.nodes_json()}
    killed = utcnow()
    cluster.local.restart("kube-apiserver", downtime=5.0)
    back = utcnow()
    time.sleep(45)  # past the controller-manager's 40 s node-monitor grace period

    leases = {item["metadata"]["name"]: item
              for item in cluster.get_json("leases", "-n", "kube-node-lease")["items"]}
    stale = [n for n in fleet.names
             if leases[n]["spec"]["renewTime"].replace("Z", "+00:00") <= back.isoformat()]
    assert not stale, f"leases not renewed after the restart: {stale}"
    nodes = fleet.nodes_json()
    assert all(is_ready(n) for n in nodes)
    assert {n["metadata"]["name"]: ready_transition(n) for n in nodes} == before
    assert not any(n["spec"].get("taints") for n in nodes)
    # A watch cut by the crash makes each reflector relist (client-go does the same);
    # they do so as soon as the apiserver serves, before it reports ready.
    requests = list(hollow_audit(cluster.audit_log, since=killed, users=USERS))
    relisted = {r.selectors().get("fieldSelector") for r in requests
                if r.resource == "pods" and r.initial_list}
    assert relisted >= {f"spec.nodeName={n}" for n in fleet.names}
    # The audit log records an idle watch only once it ends or sends its first event,
    # so ask the apiserver how many watches it is serving now.
    open_watches = watch_gauge(cluster)
    assert open_watches["pods"] >= NODES, open_watches
    assert open_watches["nodes"] >= NODES
    endpoints = "endpointslices" if any("endpointslices" in w.path
                                        for w in PROFILE.proxy_watches) else "endpoints"
    assert open_watches[endpoints] >= NODES  # the proxies
    assert open_watches["services"] >= 2 * NODES  # kubelets and proxies
    for resource in ("csidrivers", "runtimeclasses"):
        assert open_watches[resource] >= NODES


def watch_gauge(cluster: Cluster) -> Counter:
    """Long-running requests in flight per resource: the watches. A watch with
    ``fieldSelector=metadata.name=...`` is filed under verb GET and scope resource."""
    metrics = cluster.kubectl("get", "--raw", "/metrics")
    gauge: Counter = Counter()
    # apiserver_longrunning_gauge until 1.23, apiserver_longrunning_requests since
    for match in re.finditer(r'^apiserver_longrunning_(?:gauge|requests)\{[^}]*resource="([^"]+)"'
                             r'[^}]*\} (\S+)$', metrics, re.M):
        gauge[match.group(1)] += int(float(match.group(2)))
    return gauge
