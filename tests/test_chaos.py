"""Node failures against a real controller-manager with shortened timeouts: a stopped
hollow node is marked Unknown by the node-lifecycle controller after its grace period,
tainted, its pods evicted; a flapping node's Ready condition follows the schedule; a
restarted node registers again and adopts its pod without restarting it; the run's
NodeReadiness measurement, watching beside it, counts what turned NotReady."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import KUBELET_USER, Cluster, Fleet, hollow_audit, run_cli, wait_for
from test_cluster import one_line_error

from pykubemark.hollow.chaos import read_plan
from pykubemark.kube import Client, load_kubeconfig
from pykubemark.measure import Context, NodeReadiness
from pykubemark.report.output import Output

#: Tests that start a cluster with shortened node-lifecycle timeouts (`-m "not slow"`
#: leaves them out).
pytestmark = pytest.mark.slow

NAME = "chaos"
PREFIX = "chaos"
GRACE = 10.0
STOP_FOR = 40.0
FLAP_PERIOD = 20.0
FLAP_FOR = 80.0
UNREACHABLE = "node.kubernetes.io/unreachable"


@pytest.fixture(scope="module")
def chaos_cluster(binaries) -> Iterator[Cluster]:
    run_cli("up", "--name", NAME, "--audit",
            f"--controller-manager-arg=--node-monitor-grace-period={GRACE:.0f}s",
            "--controller-manager-arg=--node-monitor-period=2s")
    try:
        yield Cluster(NAME)
    finally:
        run_cli("down", "--name", NAME, check=False)


def _time(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _ready(node: dict) -> dict:
    return next(c for c in node["status"]["conditions"] if c["type"] == "Ready")


class Watching:
    """A NodeReadiness measurement on an event loop of its own, beside the sync polling."""

    def __init__(self, cluster: Cluster, out: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start() -> NodeReadiness:
            ctx = Context(Client(load_kubeconfig(cluster.kubeconfig)), Output(out, "chaos"))
            measurement = NodeReadiness(ctx)
            await measurement.start()
            return measurement
        self.measurement = self._call(start())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def stop(self) -> NodeReadiness:
        async def stop() -> None:
            await self.measurement.stop()
            await self.measurement.ctx.client.close()
        try:
            self._call(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)
        return self.measurement


@pytest.fixture(scope="module")
def observed(chaos_cluster: Cluster, tmp_path_factory) -> Iterator[dict[str, Any]]:
    cluster = chaos_cluster
    profile = tmp_path_factory.mktemp("chaos") / "profile.yaml"
    # Heartbeats every 2 s, so that a 10 s grace period never catches a healthy node.
    profile.write_text("lease_renew: 2\nstatus_check: 2\n")
    chaos_file = cluster.local.dir / "chaos.json"  # where `chaos --name` writes
    fleet = Fleet(cluster, 3, PREFIX, "--profile", str(profile), "--chaos-file",
                  str(chaos_file))
    try:
        fleet.wait_ready()
        cluster.kubectl("apply", "-f", "-", stdin="""
apiVersion: v1
kind: Pod
metadata: {name: evictee, namespace: default}
spec:
  nodeSelector: {kubernetes.io/hostname: chaos-0}
  tolerations:
  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute,
     tolerationSeconds: 2}
  containers: [{name: c, image: registry.k8s.io/pause:3.2}]
---
apiVersion: v1
kind: Pod
metadata: {name: survivor, namespace: default}
spec:
  nodeSelector: {kubernetes.io/hostname: chaos-2}
  containers: [{name: c, image: registry.k8s.io/pause:3.2}]
""")
        for pod in ("evictee", "survivor"):
            wait_for(f"{pod} Running", lambda pod=pod: cluster.get_json("pod", pod)["status"]
                     .get("phase") == "Running", 120)
        survivor = cluster.get_json("pod", "survivor")
        watching = Watching(cluster, tmp_path_factory.mktemp("measured"))
        run_cli("chaos", "stop", "--name", NAME, "--nodes", f"{PREFIX}-0",
                "--for", str(STOP_FOR))
        run_cli("chaos", "flap", "--name", NAME, "--nodes", f"{PREFIX}-1",
                "--period", str(FLAP_PERIOD), "--for", str(FLAP_FOR))
        run_cli("chaos", "restart", "--name", NAME, "--nodes", f"{PREFIX}-2", "--after", "5")
        plan = read_plan(chaos_file)
        samples: list[dict[str, Any]] = []

        def sample() -> bool:
            nodes = {n["metadata"]["name"]: n for n in fleet.nodes_json()}
            lease = cluster.get_json("lease", f"{PREFIX}-0", "-n", "kube-node-lease")
            pods = cluster.get_json("pods")["items"]
            samples.append({"at": time.time(), "nodes": nodes,
                            "renew": lease["spec"]["renewTime"],
                            "pod": next((p for p in pods
                                         if p["metadata"]["name"] == "evictee"), None),
                            "survivor": next(p for p in pods
                                             if p["metadata"]["name"] == "survivor")})
            over = time.time() > max(a.end or 0 for a in plan.actions) + 5
            return over and _ready(nodes[f"{PREFIX}-0"])["status"] == "True" \
                and _ready(nodes[f"{PREFIX}-1"])["status"] == "True" \
                and samples[-1]["pod"] is None
        wait_for("the node failures to end and the nodes to recover", sample,
                 timeout=FLAP_FOR + 180, interval=1)
        yield {"samples": samples, "plan": plan, "fleet": fleet, "survivor": survivor,
               "readiness": watching.stop()}
    finally:
        code = fleet.stop()
        assert code == 0, fleet.log.read_text()[-2000:]


def test_stopped_node_is_marked_unknown_tainted_and_its_pods_evicted(
        observed: dict[str, Any]) -> None:
    samples = observed["samples"]
    stop = next(a for a in observed["plan"].actions if a.failure.action == "stop")
    node = f"{PREFIX}-0"
    unknown = [s for s in samples if _ready(s["nodes"][node])["status"] == "Unknown"]
    assert unknown, "never marked Unknown"
    ready = _ready(unknown[0]["nodes"][node])
    assert ready["reason"] == "NodeStatusUnknown"
    assert ready["message"] == "Kubelet stopped posting node status."
    # the controller waited for the grace period after the last heartbeat before it
    last_renew = _time(unknown[0]["renew"])
    assert last_renew <= stop.start + 1
    assert _time(ready["lastTransitionTime"]) - last_renew >= GRACE - 1
    # heartbeats ceased while stopped
    within = [s for s in unknown if s["at"] < stop.end - 1]
    assert {s["renew"] for s in within} == {unknown[0]["renew"]}
    taints = [t for s in unknown for t in s["nodes"][node]["spec"].get("taints", [])]
    assert {"key": UNREACHABLE, "effect": "NoExecute"} in [
        {"key": t["key"], "effect": t["effect"]} for t in taints]
    evicted = [s for s in samples if s["pod"] and s["pod"]["metadata"].get("deletionTimestamp")]
    assert evicted and evicted[0]["at"] < stop.end  # evicted while the node was down
    # back: Ready again, untainted, with a new transition time; the evicted pod deleted
    last = samples[-1]["nodes"][node]
    assert _ready(last)["status"] == "True"
    assert _time(_ready(last)["lastTransitionTime"]) >= stop.end - 1
    assert not [t for t in last["spec"].get("taints", []) if t["key"] == UNREACHABLE]
    assert samples[-1]["pod"] is None


def test_flapping_node_changes_ready_as_scheduled(observed: dict[str, Any]) -> None:
    samples = observed["samples"]
    flap = next(a for a in observed["plan"].actions if a.failure.action == "flap")
    node = f"{PREFIX}-1"
    transitions = []
    for s in samples:
        ready = _ready(s["nodes"][node])
        if not transitions or transitions[-1][0] != ready["status"]:
            transitions.append((ready["status"], _time(ready["lastTransitionTime"])))
    states = [status for status, _ in transitions]
    assert [k for k, _ in itertools.groupby(states)] == states
    assert states.count("Unknown") == 2, transitions  # two down windows in 80 s
    assert states[-1] == "True"
    for status, at in transitions[1:]:
        window = int((at - flap.start + (1 if status == "True" else -1)) // FLAP_PERIOD)
        # Unknown only in a down window (even), True again only in an up one (odd)
        assert window % 2 == (0 if status == "Unknown" else 1), (status, at - flap.start)


def test_node_readiness_measurement_counts_each_node_that_turned_not_ready(
        observed: dict[str, Any]) -> None:
    readiness = observed["readiness"]
    # the stopped node once, the flapping node once per down window; the restarted
    # node is back before the grace period, so it never turned
    assert readiness.turned == {f"{PREFIX}-0": 1, f"{PREFIX}-1": 2}, (
        readiness.figures(), readiness.samples[-5:])
    figures = readiness.figures()
    assert figures["notReadyAtStart"] == 0 and figures["notReadyAtEnd"] == 0
    [slo] = readiness.slos()
    assert (slo.value, slo.verdict) == (2.0, "fail")
    [path] = readiness.output.directory.glob("NodeReadiness_chaos_*.json")
    assert json.loads(path.read_text())["dataItems"][0]["data"]["turnedNotReady"] == 2


def test_restarted_node_registers_again_and_adopts_its_pod(chaos_cluster: Cluster,
                                                           observed: dict[str, Any]) -> None:
    restart = next(a for a in observed["plan"].actions if a.failure.action == "restart")
    node = f"{PREFIX}-2"
    since = dt.datetime.fromtimestamp(restart.start - 1, dt.UTC)
    requests = list(hollow_audit(chaos_cluster.audit_log, since=since,
                                 users=(KUBELET_USER,)))
    # as a restarted kubelet: its Node exists (409), it lists its pods again
    assert any(r.verb == "create" and r.resource == "nodes" and r.code == 409
               for r in requests)
    assert any(r.initial_list and r.resource == "pods"
               and r.selectors().get("fieldSelector") == f"spec.nodeName={node}"
               for r in requests)
    # its pod was adopted, not restarted; the node never stopped being Ready
    before = observed["survivor"]["status"]
    after = observed["samples"][-1]["survivor"]["status"]
    assert after["podIP"] == before["podIP"]
    assert after["containerStatuses"] == before["containerStatuses"]
    assert {_ready(s["nodes"][node])["status"] for s in observed["samples"]} == {"True"}


def test_bad_node_failure_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(run_cli("chaos", "flap", "--file", str(tmp_path / "c.json"),
                                  "--nodes", "x", check=False))
    assert "period" in line
    line = one_line_error(run_cli("chaos", "stop", "--file", str(tmp_path / "c.json"),
                                  check=False))
    assert "fraction" in line
    assert not (tmp_path / "c.json").exists()
