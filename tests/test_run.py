"""`pykubemark run` against the real control plane with hollow nodes: every measurement
with plausible values, the reports, Ctrl-C, and `compare`."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from helpers import CLI, Cluster, Fleet, run_cli, wait_for
from test_cluster import one_line_error

NODES = 20
PODS_PER_NODE = 10
LABEL = "pykubemark.io/fleet=run"


@pytest.fixture(scope="module")
def fleet(cluster: Cluster, tmp_path_factory) -> Iterator[Fleet]:
    profile = tmp_path_factory.mktemp("run") / "profile.yaml"
    profile.write_text(yaml.safe_dump({"extra_labels": {"pykubemark.io/fleet": "run"}}))
    fleet = Fleet(cluster, NODES, "run", "--profile", str(profile), "--delete-nodes-on-exit")
    try:
        fleet.wait_ready()
        yield fleet
    finally:
        fleet.stop()


def run(cluster: Cluster, scenario: str, out: Path, *args: str) -> dict:
    result = run_cli("run", scenario, "--cluster", cluster.name, "--out", str(out), "--quiet",
                     "--node-selector", LABEL, *args, check=False, timeout=900)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    return json.loads((out / "summary.json").read_text())


def perfdata(out: Path, summary_name: str) -> list[dict]:
    files = [p for p in out.glob(f"{summary_name}_*.json")]
    assert len(files) == 1, (summary_name, sorted(p.name for p in out.iterdir()))
    doc = json.loads(files[0].read_text())
    assert doc["version"] and isinstance(doc["dataItems"], list)
    return doc["dataItems"]


def ordered(item: dict) -> bool:
    data = item["data"]
    return 0 <= data["Perc50"] <= data["Perc90"] <= data["Perc99"]


def run_objects(cluster: Cluster, run_id: str) -> list[str]:
    out = cluster.kubectl("get", "namespaces", "-l", f"pykubemark.io/run={run_id}", "-o", "name")
    return out.split()


@pytest.fixture(scope="module")
def density(cluster: Cluster, fleet: Fleet, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("density") / "out"
    summary = run(cluster, "density", out, "--pods-per-node", str(PODS_PER_NODE))
    assert summary["status"] == "completed", summary["status"]
    return out


def test_density_measures_every_pod_it_created(density: Path) -> None:
    summary = json.loads((density / "summary.json").read_text())
    assert summary["cluster"]["nodes"] == NODES and not summary["partial"]
    assert [p["name"] for p in summary["phases"]] == [
        "saturation", "latency", "delete-latency", "cleanup"]
    raw = json.loads((density / "raw" / "PodStartupLatency_SaturationPodStartupLatency.json")
                     .read_text())
    assert len(raw["pods"]) == NODES * PODS_PER_NODE
    latency_raw = json.loads((density / "raw" / "PodStartupLatency_PodStartupLatency.json")
                             .read_text())
    assert len(latency_raw["pods"]) == summary["parameters"]["latency_pods"]
    for name in ("SaturationPodStartupLatency", "PodStartupLatency"):
        items = perfdata(density, f"PodStartupLatency_{name}")
        metrics = {i["labels"]["Metric"]: i for i in items}
        assert set(metrics) >= {"create_to_schedule", "schedule_to_run", "run_to_watch",
                                "schedule_to_watch", "pod_startup"}
        assert all(ordered(i) for i in items) and all(i["unit"] == "ms" for i in items)
        assert metrics["pod_startup"]["data"]["Perc99"] > 0
    names = {s["name"] for s in summary["slos"]}
    assert any("SaturationPodStartupLatency" in n for n in names)
    assert summary["verdict"] in ("pass", "fail")


def test_density_api_calls_come_from_the_apiserver(density: Path) -> None:
    items = perfdata(density, "APIResponsivenessPrometheus")
    calls = {(i["labels"]["Verb"], i["labels"]["Resource"], i["labels"].get("Subresource", "")):
             i for i in items}
    creates = calls[("POST", "pods", "")]
    # the controller-manager created every saturation and latency pod
    assert int(creates["labels"]["Count"]) >= NODES * PODS_PER_NODE
    assert int(calls[("PUT", "leases", "")]["labels"]["Count"]) > 0
    assert all(ordered(i) for i in items)
    assert not any(i["labels"]["Verb"] in ("WATCH", "CONNECT") for i in items)


def test_density_throughput_resources_and_etcd(density: Path) -> None:
    throughput = perfdata(density, "SchedulingThroughput")[0]["data"]
    assert throughput["Max"] > 0 and throughput["Perc50"] <= throughput["Max"]
    usage = perfdata(density, "ResourceUsageSummary")
    components = {i["labels"]["Name"] for i in usage}
    assert {"kube-apiserver", "etcd", "kube-scheduler", "kube-controller-manager"} <= components
    apiserver_cpu = next(i for i in usage if i["labels"]["Name"] == "kube-apiserver"
                         and i["labels"]["Resource"] == "cpu")
    assert apiserver_cpu["data"]["Max"] > 0
    etcd = perfdata(density, "EtcdMetrics")
    assert etcd and all(ordered(i) for i in etcd if "Perc50" in i["data"])
    for series in ("SchedulingThroughput", "ResourceUsage_cpu", "ResourceUsage_memory"):
        doc = json.loads((density / "series" / f"{series}.json").read_text())
        assert any(len(points) > 1 for points in doc["series"].values()), series


def test_density_judges_the_readiness_of_its_own_nodes(density: Path) -> None:
    """Only the run's nodes (its --node-selector): other modules' fleets on this shared
    cluster come and go. The run's own fleet stays Ready throughout."""
    summary = json.loads((density / "summary.json").read_text())
    [item] = perfdata(density, "NodeReadiness")
    assert item["data"]["turnedNotReady"] == 0 and item["data"]["notReadyAtEnd"] == 0
    [slo] = [s for s in summary["slos"] if s["measurement"] == "NodeReadiness"]
    assert (slo["value"], slo["verdict"]) == (0, "pass")
    doc = json.loads((density / "series" / "NodeReadiness.json").read_text())
    points = doc["series"]["nodes not Ready"]
    assert points and all(n == 0 for _, n in points)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_density_report_is_one_page_with_plots(density: Path) -> None:
    page = (density / "report.html").read_text()
    parser = _Tags()
    parser.feed(page)
    assert parser.tags.count("svg") >= 4
    text = " ".join(parser.text)
    assert "SaturationPodStartupLatency" in text and "--kube-api-qps=100" in text
    # self-contained: nothing to fetch when the page is opened
    assert not re.search(r'(src|href)="https?://', page)


def test_load_scenario_creates_and_removes_everything(cluster: Cluster, fleet: Fleet,
                                                      tmp_path) -> None:
    out = tmp_path / "load"
    summary = run(cluster, "load", out, "--pods-per-node", "5", "--set", "job_run_seconds=5")
    assert summary["status"] == "completed", summary["status"]
    phases = {p["name"]: p for p in summary["phases"]}
    created = phases["create"]["objects"]
    assert created["Deployment"] == created["ConfigMap"] == created["Secret"] > 0
    assert created["Job"] >= 2 and created["DaemonSet"] == 1 and created["Service"] > 0
    # every Deployment but the ones an HPA scales
    assert created["HorizontalPodAutoscaler"] >= 1
    assert phases["scale"]["objects"]["scaled"] == (created["Deployment"]
                                                    - created["HorizontalPodAutoscaler"])
    raw = json.loads((out / "raw" / "PodStartupLatency_LoadPodStartupLatency.json").read_text())
    assert len(raw["pods"]) >= NODES * 5 // 2
    assert not run_objects(cluster, summary["run_id"])


def test_ctrl_c_leaves_a_partial_report_and_no_object(cluster: Cluster, fleet: Fleet,
                                                      tmp_path) -> None:
    out = tmp_path / "interrupted"
    proc = subprocess.Popen([*CLI, "run", "density", "--cluster", cluster.name, "--out",
                             str(out), "--quiet", "--node-selector", LABEL,
                             "--pods-per-node", "10", "--qps", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def saturating() -> bool:
            summary = out / "summary.json"
            if not summary.exists():
                return False
            doc = json.loads(summary.read_text())
            return bool(doc["phases"]) and bool(run_objects(cluster, doc["run_id"]))

        wait_for("the saturation phase to create objects", saturating, 120, 0.5)
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["partial"] and summary["status"] == "interrupted"
    assert (out / "report.html").exists()
    assert json.loads((out / "raw" / "PodStartupLatency_SaturationPodStartupLatency.json")
                      .read_text())["pods"]
    assert not run_objects(cluster, summary["run_id"])
    pods = cluster.kubectl("get", "pods", "-A", "-l", f"pykubemark.io/run={summary['run_id']}",
                           "-o", "name")
    assert not pods.split()


def test_compare_run_with_itself_and_with_a_regression(density: Path, tmp_path) -> None:
    same = run_cli("compare", str(density), str(density), check=False)
    assert same.returncode == 0, same.stdout + same.stderr
    worse = tmp_path / "worse"
    shutil.copytree(density, worse)
    path = next(worse.glob("PodStartupLatency_SaturationPodStartupLatency_*.json"))
    doc = json.loads(path.read_text())
    for item in doc["dataItems"]:
        if item["labels"]["Metric"] == "pod_startup":
            item["data"]["Perc99"] = item["data"]["Perc99"] * 2 + 1000
    path.write_text(json.dumps(doc))
    regressed = run_cli("compare", str(density), str(worse), "--html",
                        str(tmp_path / "compare.html"), check=False)
    assert regressed.returncode == 1, regressed.stdout + regressed.stderr
    assert "pod_startup" in regressed.stdout
    assert (tmp_path / "compare.html").stat().st_size > 0


def test_bad_input_is_one_line_and_creates_nothing(cluster: Cluster, fleet: Fleet,
                                                   tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nphases:\n  - name: x\n    wait: sometimes\n")
    line = one_line_error(run_cli("run", str(bad), "--cluster", cluster.name,
                                  "--out", str(tmp_path / "o1"), check=False))
    assert "line 4" in line and "wait" in line
    assert not (tmp_path / "o1").exists()
    line = one_line_error(run_cli("run", "density", "--cluster", "no-such-cluster",
                                  check=False))
    assert "no-such-cluster" in line
    unreachable = tmp_path / "kubeconfig"
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    unreachable.write_text(yaml.safe_dump(config))
    line = one_line_error(run_cli("run", "density", "--kubeconfig", str(unreachable),
                                  "--out", str(tmp_path / "o2"), check=False))
    assert "cannot reach" in line
    assert not (tmp_path / "o2").exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = one_line_error(run_cli("run", "density", "--cluster", cluster.name, "--node-selector",
                                  LABEL, "--out", str(blocker / "sub"), check=False))
    assert "cannot be written" in line
