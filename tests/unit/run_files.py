"""Hand-made run output directories, shaped as spec-run-output.md says the runner writes them,
so that reports and comparisons are tested from files alone."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson

TEST = "density"
STARTED = "2026-11-23T05:14:00Z"
PHASES = ("create_to_schedule", "schedule_to_run", "run_to_watch", "schedule_to_watch",
          "pod_startup")
SOURCES = {  # keyed by instant, as measure.pod_startup writes it
    "create": "metadata.creationTimestamp (apiserver clock, 1 s resolution, truncated)",
    "schedule": "status.conditions[type=PodScheduled].lastTransitionTime (apiserver clock)",
    "run": "max of status.containerStatuses[].state.running.startedAt (kubelet clock)",
    "watch": "time the measuring process received the watch event (local clock)",
    "note": "the apiserver's timestamps have 1 s resolution",
}


def write(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(obj, option=orjson.OPT_INDENT_2))
    return path


def perfdata_name(summary: str, test: str = TEST, started: str = STARTED) -> str:
    return f"{summary}_{test}_{started}.json"


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"Perc50": at(0.5), "Perc90": at(0.9), "Perc99": at(0.99)}


def pod_values(count: int, seed: int, scale: float = 1.0) -> dict[str, dict[str, float]]:
    rng = random.Random(seed)
    pods = {}
    for i in range(count):
        c2s = rng.choice([0.0, 0.0, 1000.0])
        s2r = rng.choice([1000.0, 1000.0, 2000.0])
        r2w = rng.uniform(20, 400)
        pods[f"density-{i % 3}/pod-{i}"] = {
            "create_to_schedule": c2s * scale, "schedule_to_run": s2r * scale,
            "run_to_watch": r2w * scale, "schedule_to_watch": (s2r + r2w) * scale,
            "pod_startup": (c2s + s2r + r2w) * scale,
        }
    return pods


def api_items() -> list[dict[str, Any]]:
    calls = [
        ("POST", "pods", "", "namespace", 200, 35.0),
        ("GET", "pods", "", "resource", 1500, 8.0),
        ("PATCH", "pods", "status", "resource", 600, 22.0),
        ("PUT", "leases", "", "resource", 2400, 6.0),
        ("LIST", "pods", "", "cluster", 12, 900.0),
        ("LIST", "nodes", "", "cluster", 30, 180.0),
        ("POST", "bindings", "", "namespace", 200, 15.0),
        ("PATCH", "nodes", "status", "resource", 240, 12.0),
        ("LIST", "configmaps", "", "namespace", 40, 4.0),
    ]
    return [{"data": {"Perc50": p99 / 4, "Perc90": p99 / 2, "Perc99": p99}, "unit": "ms",
             "labels": {"Verb": verb, "Resource": res, "Subresource": sub, "Scope": scope,
                        "Count": str(count), "SlowCount": "0"}}
            for verb, res, sub, scope, count, p99 in calls]


def make_run(directory: Path, *, seed: int = 1, startup_scale: float = 1.0,
             throughput_scale: float = 1.0, partial: bool = False,
             extra_perfdata: bool = True) -> Path:
    """A complete density run in `directory` (returned)."""
    directory.mkdir(parents=True, exist_ok=True)
    perf_files = []
    slos = []
    for identifier, count in (("SaturationPodStartupLatency", 60),
                              ("LatencyPodStartupLatency", 12)):
        summary = f"PodStartupLatency_{identifier}"
        pods = pod_values(count, seed + len(identifier), startup_scale)
        items = [{"data": percentiles([p[m] for p in pods.values()]), "unit": "ms",
                  "labels": {"Metric": m}} for m in PHASES]
        perf_files.append(write(directory / perfdata_name(summary),
                                {"version": "v1", "dataItems": items}).name)
        write(directory / "raw" / f"{summary}.json",
              {"unit": "ms", "pods": pods, "sources": SOURCES})
        p99 = items[-1]["data"]["Perc99"]
        slos.append({"measurement": "PodStartupLatency",
                     "name": f"pod startup p99 ({identifier})", "value": p99,
                     "threshold": 5000.0, "unit": "ms",
                     "verdict": "pass" if p99 <= 5000 else "fail"})
    perf_files.append(write(directory / perfdata_name("APIResponsivenessPrometheus"),
                            {"version": "v1", "dataItems": api_items()}).name)
    slos.append({"measurement": "APIResponsivenessPrometheus",
                 "name": "LIST pods cluster p99", "value": 900.0, "threshold": 30000.0,
                 "unit": "ms", "verdict": "pass"})
    rate = [[5.0 * i, (20 + (i % 3)) * throughput_scale] for i in range(1, 13)]
    write(directory / "series" / "SchedulingThroughput.json",
          {"unit": "1/s", "series": {"scheduled": rate}})
    perf_files.append(write(directory / perfdata_name("SchedulingThroughput"), {
        "version": "v1", "dataItems": [{"data": {
            "Perc50": 20.0 * throughput_scale, "Perc90": 22.0 * throughput_scale,
            "Perc99": 22.0 * throughput_scale, "Max": 22.0 * throughput_scale},
            "unit": "1/s", "labels": {}}]}).name)
    if extra_perfdata:
        procs = {"etcd": (0.1, 60.0), "kube-apiserver": (0.6, 420.0),
                 "kube-scheduler": (0.2, 40.0), "kube-controller-manager": (0.15, 55.0),
                 "hollow-nodes": (0.8, 300.0)}
        cpu = {n: [[5.0 * i, c * (1 + (i % 4) / 4)] for i in range(20)]
               for n, (c, _) in procs.items()}
        mem = {n: [[5.0 * i, m + 2 * i] for i in range(20)] for n, (_, m) in procs.items()}
        write(directory / "series" / "ResourceUsage_cpu.json", {"unit": "cores", "series": cpu})
        write(directory / "series" / "ResourceUsage_memory.json", {"unit": "MiB", "series": mem})
        items = []
        for n, (c, m) in procs.items():
            items.append({"data": {"Perc50": c, "Perc90": c * 1.5, "Perc99": c * 1.7,
                                   "Max": c * 1.75}, "unit": "cores",
                          "labels": {"Name": n, "Resource": "cpu"}})
            items.append({"data": {"Perc50": m + 20, "Perc90": m + 34, "Perc99": m + 38,
                                   "Max": m + 38}, "unit": "MiB",
                          "labels": {"Name": n, "Resource": "memory"}})
        perf_files.append(write(directory / perfdata_name("ResourceUsageSummary"),
                                {"version": "v1", "dataItems": items}).name)
        perf_files.append(write(directory / perfdata_name("EtcdMetrics"), {
            "version": "v1", "dataItems": [
                {"data": {"Perc50": 2.0, "Perc90": 6.0, "Perc99": 14.0}, "unit": "ms",
                 "labels": {"Metric": "backend_commit_duration"}},
                {"data": {"Perc50": 1.0, "Perc90": 3.0, "Perc99": 9.0}, "unit": "ms",
                 "labels": {"Metric": "wal_fsync_duration"}},
                {"data": {"Max": 24.5}, "unit": "MiB", "labels": {"Metric": "dbSize"}}]}).name)
        write(directory / "series" / "NodeReadiness.json",
              {"unit": "nodes", "series": {"nodes not Ready": [[5.0 * i, 0] for i in range(20)]}})
        perf_files.append(write(directory / perfdata_name("NodeReadiness"), {
            "version": "v1", "dataItems": [{"data": {
                "notReadyAtStart": 0, "turnedNotReady": 0, "transitionsToNotReady": 0,
                "maxNotReady": 0, "notReadyAtEnd": 0}, "unit": "nodes", "labels": {}}]}).name)
    failed = any(s["verdict"] == "fail" for s in slos)
    write(directory / "summary.json", {
        "pykubemark": "0.1.0", "test": TEST, "scenario": "density", "started": STARTED,
        "finished": None if partial else "2026-11-23T05:20:00Z", "partial": partial,
        "status": "interrupted" if partial else "completed",
        "cluster": {"server": "https://127.0.0.1:40123", "version": "v1.20.2", "nodes": 20,
                    "local": "demo",
                    "flags": {"kube-apiserver": ["--max-requests-inflight=400",
                                                 "--max-mutating-requests-inflight=200"],
                              "kube-scheduler": ["--kube-api-qps=100", "--kube-api-burst=200"]}},
        "parameters": {"nodes": 20, "pods_per_node": 3, "qps": 20},
        "phases": [{"name": "saturation", "started": "2026-11-23T05:14:05Z",
                    "finished": "2026-11-23T05:16:00Z", "objects": {"pods": 60}},
                   {"name": "latency", "started": "2026-11-23T05:16:00Z",
                    "finished": None if partial else "2026-11-23T05:18:00Z",
                    "objects": {"pods": 12}}],
        "slos": slos, "verdict": "fail" if failed else "pass",
        "files": {"perfdata": perf_files, "report": "report.html"},
    })
    return directory


def clusterloader2_results(directory: Path, test: str = "load",
                           started: str = "2021-01-12T03:43:21Z", p99_scale: float = 1.0) -> Path:
    """A flat directory of clusterloader2 result files, as its --report-dir holds them."""
    directory.mkdir(parents=True, exist_ok=True)
    write(directory / f"PodStartupLatency_PodStartupLatency_{test}_{started}.json", {
        "version": "v1", "dataItems": [
            {"data": {"Perc50": 1200.0, "Perc90": 1900.0, "Perc99": 2400.0 * p99_scale},
             "unit": "ms", "labels": {"Metric": "pod_startup"}}]})
    write(directory / f"APIResponsivenessPrometheus_simple_{test}_{started}.json",
          {"version": "v1", "dataItems": api_items()})
    (directory / "junit.xml").write_text("<testsuite/>")
    write(directory / "generatedConfig_load.yaml.json", {"not": "perfdata"})
    return directory
