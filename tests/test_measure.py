"""Every measurement against the real control plane while a Deployment of 20 pods starts
on 5 hollow nodes: counts equal what was created, percentiles are ordered, the API table
holds the calls we know were made, and every file is there and parses.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import Cluster, Fleet

from pykubemark.kube import Client, load_kubeconfig
from pykubemark.measure import (
    ApiResponsiveness,
    Context,
    EtcdMetrics,
    Measurement,
    NodeReadiness,
    PodStartupLatency,
    ResourceUsage,
    SchedulingThroughput,
)
from pykubemark.report.output import Output

PODS = 20
NODES = 5
NAMESPACE = "measure-test"
RUN = uuid.uuid4().hex[:8]
SELECTOR = f"pykubemark.io/run={RUN},pykubemark.io/group=saturation"
PHASES = {"create_to_schedule", "schedule_to_run", "run_to_watch", "schedule_to_watch",
          "pod_startup"}


LABELS = {"pykubemark.io/run": RUN, "pykubemark.io/group": "saturation"}


def pod_spec(nodes: list[str]) -> dict:
    # Only on this test's nodes: stale nodes of other tests may not yet be tainted.
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": nodes}]}]}}}
    return {"affinity": affinity,
            "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.2"}]}


def deployment(nodes: list[str]) -> dict:
    labels = {**LABELS, "app": "measured"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "measured", "namespace": NAMESPACE},
        "spec": {"replicas": PODS, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": pod_spec(nodes)}},
    }


def earlier_pod(nodes: list[str]) -> str:
    """A pod of the selector Running before the measurements start: never counted."""
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "earlier", "namespace": NAMESPACE, "labels": LABELS}, "spec": pod_spec(nodes)})


async def until(what: str, check, timeout: float = 180.0) -> None:
    async def poll():
        while not await check():
            await asyncio.sleep(0.5)
    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@dataclass
class Measured:
    out: Path
    measurements: dict[str, Measurement]


async def measure(cluster: Cluster, fleet: Fleet, out: Path) -> Measured:
    state = cluster.state
    client = Client(load_kubeconfig(cluster.kubeconfig))
    processes = {p.name: p.pid for p in state.processes} | {"hollow-nodes": fleet.proc.pid}
    ctx = Context(client, Output(out, "measuretest"), processes,
                  f"http://127.0.0.1:{state.ports['etcd']}/metrics")
    startup = PodStartupLatency(ctx, selector=SELECTOR, identifier="SaturationPodStartupLatency")
    api = ApiResponsiveness(ctx)
    scheduling = SchedulingThroughput(ctx, selector=SELECTOR, interval=2.0)
    resources = ResourceUsage(ctx, interval=1.0)
    ms: list[Measurement] = [startup, api, scheduling, resources, EtcdMetrics(ctx),
                             NodeReadiness(ctx)]
    try:
        for m in ms:
            await m.start()
        await client.create(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments",
                            deployment(fleet.names))

        async def all_running():
            return startup.progress()["running"] >= PODS

        async def lease_renewed():  # hollow nodes renew every 10 s: wait for one in the window
            await api._refresh()
            return any(c.call.verb == "PUT" and c.call.resource == "leases" for c in api.calls())

        async def sampled():
            return bool(scheduling.windows) and resources.progress()["samples"] > 0

        await until(f"{PODS} pods Running", all_running)
        await until("a lease renewal", lease_renewed, 60)
        await until("a throughput window and a resource sample", sampled, 60)
    finally:
        for m in ms:
            await m.stop()
        await client.close()
    return Measured(out, {m.name: m for m in ms})


@pytest.fixture(scope="module")
def measured(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Measured]:
    fleet = Fleet(cluster, NODES, "measure", "--delete-nodes-on-exit")
    try:
        fleet.wait_ready()
        cluster.create_namespace(NAMESPACE)
        cluster.kubectl("create", "-f", "-", stdin=earlier_pod(fleet.names))
        cluster.kubectl("wait", "-n", NAMESPACE, "--for=condition=Ready", "pod/earlier",
                        "--timeout=120s", timeout=150)
        yield asyncio.run(measure(cluster, fleet, tmp_path_factory.mktemp("run")))
    finally:
        cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true",
                        timeout=180)
        assert fleet.stop() == 0, fleet.log.read_text()[-2000:]


def perfdata(out: Path, summary: str) -> list[dict]:
    [path] = out.glob(f"{summary}_measuretest_*Z.json")
    content = json.loads(path.read_text())
    assert content["version"] == "v1"
    return content["dataItems"]


def ordered(data: dict[str, float]) -> bool:
    return 0 <= data["Perc50"] <= data["Perc90"] <= data["Perc99"] <= data.get("Max", INF)


INF = float("inf")


def test_pod_startup_counts_every_created_pod_once(measured: Measured):
    m = measured.measurements["PodStartupLatency"]
    assert m.progress() == {"seen": PODS, "scheduled": PODS, "running": PODS}
    raw = json.loads((measured.out / "raw/PodStartupLatency_SaturationPodStartupLatency.json")
                     .read_text())
    assert raw["count"] == PODS and len(raw["pods"]) == PODS
    assert all(key.startswith(f"{NAMESPACE}/measured-") for key in raw["pods"])
    assert all(set(phases) == PHASES and min(phases.values()) >= 0
               for phases in raw["pods"].values())
    assert {"create", "schedule", "run", "watch"} <= set(raw["sources"])


def test_pod_startup_perfdata_has_every_phase_ordered(measured: Measured):
    items = perfdata(measured.out, "PodStartupLatency_SaturationPodStartupLatency")
    assert {i["labels"]["Metric"] for i in items} == PHASES
    assert all(i["unit"] == "ms" and ordered(i["data"]) for i in items)
    [slo] = measured.measurements["PodStartupLatency"].slos()
    startup = next(i for i in items if i["labels"]["Metric"] == "pod_startup")
    assert slo.value == startup["data"]["Perc99"] and slo.verdict in ("pass", "fail")


def test_api_table_holds_pod_creates_and_lease_updates(measured: Measured):
    items = perfdata(measured.out, "APIResponsivenessPrometheus")
    calls = {(i["labels"]["Verb"], i["labels"]["Resource"], i["labels"]["Subresource"]): i
             for i in items}
    assert int(calls[("POST", "pods", "")]["labels"]["Count"]) >= PODS
    assert int(calls[("PUT", "leases", "")]["labels"]["Count"]) > 0
    assert int(calls[("POST", "pods", "binding")]["labels"]["Count"]) >= PODS
    assert not any(verb in ("WATCH", "CONNECT") for verb, _, _ in calls)
    assert all(ordered(i["data"]) and int(i["labels"]["Count"]) > 0
               and 0 <= int(i["labels"]["SlowCount"]) <= int(i["labels"]["Count"])
               for i in items)
    slos = measured.measurements["APIResponsivenessPrometheus"].slos()
    assert slos[0].value is not None  # single-object calls were made


def test_scheduling_throughput_saw_every_binding(measured: Measured):
    m = measured.measurements["SchedulingThroughput"]
    assert m.progress() == {"scheduled": PODS}
    [item] = perfdata(measured.out, "SchedulingThroughput")
    assert item["unit"] == "1/s" and ordered(item["data"]) and item["data"]["Max"] > 0
    series = json.loads((measured.out / "series/SchedulingThroughput.json").read_text())
    points = series["series"]["scheduled pods"]
    assert series["unit"] == "1/s" and points
    assert [t for t, _ in points] == sorted(t for t, _ in points)


def test_resource_usage_of_the_control_plane(measured: Measured):
    items = perfdata(measured.out, "ResourceUsageSummary")
    by = {(i["labels"]["Name"], i["labels"]["Resource"]): i for i in items}
    for name in ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager",
                 "hollow-nodes"):
        assert by[(name, "cpu")]["unit"] == "cores" and ordered(by[(name, "cpu")]["data"])
        assert by[(name, "memory")]["data"]["Perc50"] > 1.0  # MiB: a live Go/Python process
    for resource in ("cpu", "memory"):
        series = json.loads((measured.out / f"series/ResourceUsage_{resource}.json").read_text())
        assert series["series"]["kube-apiserver"]


def test_etcd_latency_and_size(measured: Measured):
    items = {i["labels"]["Metric"]: i for i in perfdata(measured.out, "EtcdMetrics")}
    for metric in ("backend_commit_duration", "wal_fsync_duration"):
        assert int(items[metric]["labels"]["Count"]) > 0 and ordered(items[metric]["data"])
    assert items["db_size"]["unit"] == "MiB" and items["db_size"]["data"]["Max"] > 0


def test_node_readiness_sees_the_fleet_ready_throughout(measured: Measured):
    readiness = measured.measurements["NodeReadiness"]
    fleet = {f"measure-{i}" for i in range(NODES)}
    # the fleet's nodes as the controller-manager left them: Ready, never turned (other
    # modules' stopped fleets on this shared cluster may well have)
    assert fleet <= readiness.ready
    assert not fleet & set(readiness.turned)
    [item] = perfdata(measured.out, "NodeReadiness")
    assert item["data"]["notReadyAtEnd"] == len(readiness.not_ready)


def test_stop_twice_changes_nothing(measured: Measured):
    before = {p: p.read_bytes() for p in measured.out.rglob("*.json")}
    for m in measured.measurements.values():
        asyncio.run(m.stop())
    assert {p: p.read_bytes() for p in measured.out.rglob("*.json")} == before
