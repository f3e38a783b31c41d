"""A fleet process that dies is replaced: `up --nodes` supervises its hollow nodes.

The worker of a 10-node fleet running 20 pods is killed with SIGKILL. Its supervisor
starts it again under the same shard index: the nodes come back under the same names
and adopt their pods — same uid, same podIP, still Running, containers not restarted —
no node is ever marked NotReady, and `pykubemark status` counts the restart. Then the
supervisor itself is killed: its workers exit with it and `status` says it died.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator

import psutil
import pytest
from helpers import Cluster, is_ready, ready_transition, run_cli, utcnow, wait_for

#: Tests that start a cluster of its own: `pytest -m "not slow"` leaves them out.
pytestmark = pytest.mark.slow

NODES = 10
PODS = 20
#: kube-controller-manager's --node-monitor-grace-period (default) plus one monitor period.
GRACE = 40.0 + 5.0
DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "heal", "namespace": "default"},
    "spec": {
        "replicas": PODS,
        "selector": {"matchLabels": {"app": "heal"}},
        "template": {"metadata": {"labels": {"app": "heal"}},
                     "spec": {"containers": [{"name": "c", "image": "k8s.gcr.io/pause:3.2"}]}},
    },
}


@pytest.fixture(scope="module")
def heal(binaries) -> Iterator[Cluster]:
    run_cli("up", "--name", "heal", "--nodes", str(NODES), "--prefix", "heal", timeout=600)
    try:
        yield Cluster("heal")
    finally:
        run_cli("down", "--name", "heal", check=False)


def pods_by_name(cluster: Cluster) -> dict[str, dict]:
    return {p["metadata"]["name"]: p
            for p in cluster.get_json("pods", "-n", "default", "-l", "app=heal")["items"]}


def running(pod: dict) -> bool:
    return pod["status"].get("phase") == "Running" and bool(pod["status"].get("podIP"))


def identity(pod: dict) -> tuple:
    """What a restart of its containers or a new pod would change."""
    status = pod["status"]
    container = status["containerStatuses"][0]
    return (pod["metadata"]["uid"], pod["spec"]["nodeName"], status["podIP"],
            status["phase"], container["restartCount"], container["containerID"],
            container["state"]["running"]["startedAt"])


def restarts_record(cluster: Cluster) -> dict:
    return json.loads(cluster.local.restarts_file("hollow").read_text())


def test_killed_fleet_process_is_replaced_and_adopts_its_pods(heal: Cluster) -> None:
    cluster = heal
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(DEPLOYMENT))
    wait_for(f"{PODS} pods Running", lambda: (
        len(pods := pods_by_name(cluster)) == PODS and all(running(p) for p in pods.values())),
        180, 2)
    before = {name: identity(pod) for name, pod in pods_by_name(cluster).items()}
    nodes = [n for n in cluster.get_json("nodes")["items"]
             if n["metadata"]["name"].startswith("heal-")]
    transitions = {n["metadata"]["name"]: ready_transition(n) for n in nodes}
    assert len(transitions) == NODES and all(is_ready(n) for n in nodes)

    supervisor = cluster.state.proc("hollow")
    assert supervisor is not None and supervisor.alive()
    record = restarts_record(cluster)
    assert record["restarts"] == 0
    worker = psutil.Process(record["shards"][0]["pid"])
    assert worker.ppid() == supervisor.pid
    killed = utcnow()
    os.kill(worker.pid, signal.SIGKILL)

    def replaced() -> int | None:
        shard = restarts_record(cluster)["shards"][0]
        return shard["pid"] if shard["restarts"] == 1 and shard["pid"] != worker.pid else None

    new_pid = wait_for("the worker to be replaced", replaced, 60, 0.5)
    assert psutil.Process(new_pid).ppid() == supervisor.pid and supervisor.alive()

    def leases_renewed() -> bool:
        leases = cluster.get_json("leases", "-n", "kube-node-lease")["items"]
        renewed = {item["metadata"]["name"] for item in leases
                   if item["spec"]["renewTime"].replace("Z", "+00:00") > killed.isoformat()}
        return set(transitions) <= renewed

    wait_for("every node's lease renewed by the new worker", leases_renewed, 60, 2)
    log = cluster.local.dir / "logs" / "hollow.log"

    def adopted() -> int:
        return sum(int(n) for n in re.findall(r"adopted (\d+) pods", log.read_text()))

    wait_for(f"{PODS} pods adopted", lambda: adopted() == PODS, 60, 1)
    # Past the node-monitor grace period since the kill: a node whose lease was missed
    # for that long would be NotReady by now.
    time.sleep(max(0.0, GRACE - (utcnow() - killed).total_seconds()))

    nodes = [n for n in cluster.get_json("nodes")["items"]
             if n["metadata"]["name"].startswith("heal-")]
    assert all(is_ready(n) for n in nodes) and not any(n["spec"].get("taints") for n in nodes)
    assert {n["metadata"]["name"]: ready_transition(n) for n in nodes} == transitions
    after = {name: identity(pod) for name, pod in pods_by_name(cluster).items()}
    assert after == before

    status = run_cli("status", "--name", "heal").stdout
    row = next(line for line in status.splitlines() if re.search(r"\bhollow\b", line))
    cells = [cell.strip() for cell in re.split(r"[│|]", row) if cell.strip()]
    assert cells[0] == "hollow" and cells[-1] == "1", status


def test_a_killed_supervisor_takes_its_workers_with_it_and_status_says_it_died(
        heal: Cluster) -> None:
    """The supervisor is not restarted; its workers must not outlive it as orphans still
    renewing leases, and `status` must not call it stopped."""
    cluster = heal
    supervisor = cluster.state.proc("hollow")
    assert supervisor is not None and supervisor.alive()
    workers = [shard["pid"] for shard in restarts_record(cluster)["shards"]]
    assert workers and all(psutil.Process(pid).ppid() == supervisor.pid for pid in workers)
    os.kill(supervisor.pid, signal.SIGKILL)

    def gone(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for("the workers to exit after their supervisor", lambda: all(map(gone, workers)),
             30, 0.5)
    status = run_cli("status", "--name", "heal").stdout
    row = next(line for line in status.splitlines() if re.search(r"\bhollow\b", line))
    cells = [cell.strip() for cell in re.split(r"[│|]", row) if cell.strip()]
    assert cells[0] == "hollow" and "died" in cells, status
