"""Real nodes, several on one machine (`up --real-nodes`, `real-nodes add`): each with its
own namespace, address, containerd and kube-proxy; real containers on all of them; pods
reaching a Service whose endpoint is on another node; `down` leaving nothing; a setup
failure that is one line and leaves nothing either."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml
from helpers import CLI, Cluster, is_ready, run_cli, wait_for

from pykubemark.cluster.state import all_names, load

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="real nodes need root")]

NAME = "rnt"
IMAGE = "localhost/pykubemark-busybox:1"


def _nodes(cluster: Cluster) -> list[dict]:
    return sorted(cluster.get_json("nodes")["items"], key=lambda n: n["metadata"]["name"])


def _internal_ip(node: dict) -> str:
    return next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")


def _netns_inode(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def leftovers(name: str, directory: Path, links: set[str]) -> list[str]:
    """Whatever of cluster ``name`` is still there: namespaces, links, mounts, cgroups,
    processes (the containers' shims among them)."""
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {line.split()[0]}" for line in netns.splitlines()
              if line.startswith(f"pkm-{name}-")]
    ip_links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True,
                                         text=True).stdout)
    found += [f"link {link['ifname']}" for link in ip_links if link["ifname"] in links]
    with open("/proc/self/mountinfo") as handle:
        found += [f"mount {line.split()[4]}" for line in handle
                  if line.split()[4].startswith(str(directory) + "/")]
    found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"*/pkm-{name}-*")]
    for proc in psutil.process_iter(["cmdline", "pid"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if str(directory) in cmdline:
            found.append(f"process {proc.info['pid']} {cmdline[:80]}")
    return found


@pytest.fixture(scope="module")
def real(binaries) -> Iterator[Cluster]:
    run_cli("up", "--name", NAME, "--real-nodes", "3", timeout=900)
    try:
        yield Cluster(NAME)
    finally:
        run_cli("down", "--name", NAME, check=False)


def test_three_nodes_each_with_its_own_address_network_and_runtime(real: Cluster) -> None:
    nodes = _nodes(real)
    names = [n["metadata"]["name"] for n in nodes]
    assert names == [f"{NAME}-node-{i}" for i in range(3)]
    assert all(is_ready(n) for n in nodes)
    assert len({_internal_ip(n) for n in nodes}) == 3
    assert {n["spec"]["podCIDR"] for n in nodes} == {f"10.244.{i}.0/24" for i in range(3)}
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes} == {"v1.37.2"}

    state = real.state
    records = {n.name: n for n in state.real_nodes}
    assert set(records) == set(names)
    assert [_internal_ip(n) for n in nodes] == [records[name].address for name in names]
    # each containerd runs in its node's namespace, with its own socket
    containerds = {p.name: p for p in state.processes if p.name.endswith("-containerd")}
    assert len(containerds) == 3
    inodes = {_netns_inode(p.pid) for p in containerds.values()}
    assert len(inodes) == 3 and _netns_inode(os.getpid()) not in inodes
    sockets = {arg for p in containerds.values() for arg in p.argv if arg.endswith(".toml")}
    assert len(sockets) == 3
    # the client certificates came by TLS bootstrap through the CSR API
    csrs = real.get_json("csr")["items"]
    approved = [c for c in csrs if c["spec"]["username"] == "kubelet-bootstrap"
                and any(x["type"] == "Approved" for x in c["status"].get("conditions", []))]
    assert len(approved) == 3

    out = run_cli("status", "--name", NAME, env={"COLUMNS": "300"}).stdout
    for name in names:
        row = next(line for line in out.splitlines() if f" {name} " in line)
        assert records[name].address in row and f"pkm-{NAME}-" in row, row
    for node in state.real_nodes:
        assert f"nodes/{node.index}/containerd/containerd.sock" in out


def _deployment(name: str, replicas: int, command: str) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "topologySpreadConstraints": [{
                         "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                         "whenUnsatisfiable": "DoNotSchedule",
                         "labelSelector": {"matchLabels": labels}}],
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": IMAGE, "imagePullPolicy": "Never",
                                     "command": ["sh", "-c", command]}]}}},
    }


def test_a_deployment_runs_real_containers_on_every_node(real: Cluster) -> None:
    real.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(_deployment(
        "spread", 3, "echo hello from $(hostname) on $(cat /proc/net/route | wc -l); "
                     "exec sleep 3600")))
    try:
        real.kubectl("rollout", "status", "deployment/spread", "--timeout=180s", timeout=200)
        pods = real.get_json("pods", "-l", "app=spread")["items"]
        assert {p["spec"]["nodeName"] for p in pods} == {f"{NAME}-node-{i}" for i in range(3)}
        for pod in pods:
            index = int(pod["spec"]["nodeName"].rsplit("-", 1)[1])
            assert pod["status"]["podIP"].startswith(f"10.244.{index}.")
            name = pod["metadata"]["name"]
            logs = wait_for(f"{name}'s output", lambda n=name: real.kubectl("logs", n),
                            timeout=30)
            assert f"hello from {name}" in str(logs)
    finally:
        real.kubectl("delete", "deployment", "spread", "--wait=false", check=False)


def _pod(name: str, node: str, command: str, labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels or {}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": IMAGE, "imagePullPolicy": "Never",
                                     "command": ["sh", "-c", command]}]}}


def test_a_pod_reaches_a_service_whose_endpoint_is_on_another_node(real: Cluster) -> None:
    web = _pod("web", f"{NAME}-node-2", "echo served by $(hostname) > /var/www/index.html; "
               "exec httpd -f -p 8080 -h /var/www", labels={"app": "web"})
    client = _pod("client", f"{NAME}-node-0", "exec sleep 3600")
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "default"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80,
                                                               "targetPort": 8080}]}}
    real.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([web, client, service]))
    try:
        real.kubectl("wait", "--for=condition=Ready", "pod/web", "pod/client",
                     "--timeout=120s", timeout=150)
        ip = real.get_json("service", "web")["spec"]["clusterIP"]

        def fetched() -> str:
            # busybox's wget crashes on -T: `timeout` bounds it instead
            result = subprocess.run(
                [*_kubectl(real), "exec", "client", "--", "timeout", "5", "wget", "-qO-",
                 f"http://{ip}/"], capture_output=True, text=True, timeout=30)
            return result.stdout

        assert "served by web" in str(wait_for(f"the service {ip} from node 0", fetched,
                                               timeout=60, interval=2))
    finally:
        real.kubectl("delete", "pod", "web", "client", "--wait=false", check=False)
        real.kubectl("delete", "service", "web", check=False)


def _kubectl(cluster: Cluster) -> list[str]:
    from pykubemark.provision.binaries import find_kubectl

    return [str(find_kubectl()), "--kubeconfig", cluster.kubeconfig]


def test_real_nodes_add_joins_a_fourth_node(real: Cluster) -> None:
    out = run_cli("real-nodes", "add", "--name", NAME, "--count", "1", timeout=600).stdout
    assert f"{NAME}-node-3" in out
    nodes = {n["metadata"]["name"]: n for n in _nodes(real)}
    node = nodes.pop(f"{NAME}-node-3")
    assert is_ready(node) and _internal_ip(node) not in {_internal_ip(n) for n in nodes.values()}
    # its pods reach pods on the first node through the routes every node got
    real.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([
        _pod("far", f"{NAME}-node-0", "echo far > /var/www/index.html; "
             "exec httpd -f -p 8080 -h /var/www"),
        _pod("near", f"{NAME}-node-3", "exec sleep 3600")]))
    try:
        real.kubectl("wait", "--for=condition=Ready", "pod/far", "pod/near",
                     "--timeout=120s", timeout=150)
        far_ip = real.get_json("pod", "far")["status"]["podIP"]
        out = real.kubectl("exec", "near", "--", "timeout", "5", "wget", "-qO-",
                           f"http://{far_ip}:8080/")
        assert out.strip() == "far"
    finally:
        real.kubectl("delete", "pod", "far", "near", "--wait=false", check=False)


def test_down_leaves_nothing_behind(real: Cluster) -> None:
    state = real.state
    directory = state.path
    assert state.network is not None
    links = {state.network.bridge, *(n.veth for n in state.real_nodes if n.veth)}
    run_cli("down", "--name", NAME, timeout=300)
    assert leftovers(NAME, directory, links) == []
    after = real.state
    assert after.real_nodes == [] and after.network is None
    run_cli("down", "--name", NAME, timeout=120)  # a second one has nothing to do
    assert leftovers(NAME, directory, links) == []


def _bridges() -> set[str]:
    links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True,
                                      text=True).stdout)
    return {link["ifname"] for link in links if link["ifname"].startswith("pkmbr-")}


def _unclaimed_bridges(before: set[str]) -> set[str]:
    """Bridges made since ``before`` that no cluster's state claims: tests on other
    workers make and remove their own meanwhile (a claim is recorded right after its
    bridge is made, hence the second look)."""
    def unclaimed() -> set[str]:
        claimed = set()
        for other in all_names():
            with contextlib.suppress(Exception):
                network = load(other).network
                if network is not None:
                    claimed.add(network.bridge)
        return _bridges() - before - claimed
    if not unclaimed():
        return set()
    time.sleep(5)
    return unclaimed()


def test_a_setup_failure_is_one_line_and_leaves_nothing(binaries) -> None:
    """A namespace of the second node's name that someone else made: that node cannot
    be set up; the first node, the bridge and the control plane are undone, and the
    stranger's namespace is left alone."""
    name = "rnf"
    taken = f"pkm-{name}-1"
    bridges = _bridges()
    subprocess.run(["ip", "netns", "add", taken], check=True)
    try:
        result = run_cli("up", "--name", name, "--real-nodes", "2", check=False, timeout=600)
        assert result.returncode == 2, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("pykubemark: "), result.stderr
        assert taken in lines[0] and "already exists" in lines[0]
        state = Cluster(name).state
        assert state.real_nodes == [] and state.network is None
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert taken in netns
        assert leftovers(name, state.path, set()) == [f"netns {taken}"]
        assert not _unclaimed_bridges(bridges)
    finally:
        subprocess.run(["ip", "netns", "delete", taken], check=False)
        run_cli("down", "--name", name, check=False)


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "crash"])
def test_an_up_stopped_while_making_nodes_leaves_nothing(binaries, how: int) -> None:
    """Ctrl-C while the nodes are being made: `up` undoes it all itself. A crash
    (SIGKILL) there: `down` undoes it all from the recorded state."""
    name = "rni"
    up = subprocess.Popen([*CLI, "up", "--name", name, "--real-nodes", "2"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          stdin=subprocess.DEVNULL)
    try:
        def made() -> object:
            from pykubemark.cluster.state import load
            from pykubemark.errors import UserError

            try:
                state = load(name)
            except UserError:
                return None
            return state if any(n.netns for n in state.real_nodes) else None

        state = wait_for("a real node's namespace", made, timeout=300, interval=0.05)
        up.send_signal(how)
        _out, err = up.communicate(timeout=180)
    finally:
        if up.poll() is None:
            up.kill()
    directory = state.path  # type: ignore[attr-defined]
    network = state.network  # type: ignore[attr-defined]
    links = {network.bridge} if network else set()
    links |= {n.veth for n in state.real_nodes if n.veth}  # type: ignore[attr-defined]
    if how == signal.SIGINT:
        assert up.returncode == 130, err
        assert "interrupted" in err and "Traceback" not in err
    else:
        run_cli("down", "--name", name, timeout=300)
    assert leftovers(name, directory, links) == []
    assert not any(p.alive() for p in Cluster(name).state.processes)
