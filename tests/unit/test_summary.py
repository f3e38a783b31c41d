"""summary.json as `RunSummary`: committed result files read, the runner's JSON shape kept,
and foreign or damaged files read without failing."""

from __future__ import annotations

from pathlib import Path

import orjson
from msgspec import UNSET
from run_files import clusterloader2_results, make_run, write

from pykubemark.measure.slos import Slo
from pykubemark.report.output import Output
from pykubemark.report.rundir import read_run
from pykubemark.report.summary import (
    Cluster,
    LeftBehind,
    NodeFailureRecord,
    PhaseRecord,
    RunSummary,
    decode_summary,
    encode_summary,
    read_summary,
)

DEMO = Path(__file__).parents[2] / "benchmarks" / "results" / "demo-density-200-nodes.json"


def test_a_committed_summary_file_reads_and_writes_back_unchanged() -> None:
    original = orjson.loads(DEMO.read_bytes())
    summary = read_summary(DEMO)
    assert summary is not None
    assert (summary.test, summary.status, summary.verdict, summary.partial) == (
        "density", "completed", "fail", False)
    assert summary.cluster == Cluster(
        server="https://127.0.0.1:60383", version="v1.20.2", nodes=200, ready_nodes=200,
        local="demo", flags=original["cluster"]["flags"])
    assert summary.parameters["pods_per_node"] == 5
    assert [p.name for p in summary.phases] == ["saturation", "latency", "delete-latency",
                                                "cleanup"]
    assert summary.phases[0].objects == {"Deployment": 34}
    assert summary.slos[0] == Slo("PodStartupLatency",
                                  "pod startup p99 (SaturationPodStartupLatency)",
                                  8374.338388442993, 5000.0, "ms", "fail")
    assert len(summary.files.perfdata) == 6
    # written back: the same JSON, but for the node failures it predates (now always listed)
    assert encode_summary(summary) == {**original, "node_failures": []}


def test_the_runner_shape_field_for_field() -> None:
    """What Run writes while a phase runs, then at the end: the keys and their order of the
    hand-built dicts it wrote before summary.json had a type."""
    summary = RunSummary(pykubemark="0.1.0", test="density", scenario="density", run_id="abc",
                         started="2026-11-23T05:14:00Z", partial=True, status="running",
                         cluster=Cluster(server="https://127.0.0.1:1", version="v1.37.2",
                                         nodes=3, ready_nodes=3, local=None, flags={}),
                         parameters={"nodes": 3, "qps": 20.5}, verdict="no data")
    summary.phases.append(PhaseRecord(name="saturation", started="2026-11-23T05:14:01Z"))
    written = encode_summary(summary)
    assert list(written) == ["pykubemark", "test", "scenario", "run_id", "started", "finished",
                             "partial", "status", "cluster", "parameters", "node_selector",
                             "phases", "node_failures", "slos", "verdict", "files"]
    assert written["finished"] is None and written["files"] == {"perfdata": [],
                                                               "report": "report.html"}
    assert written["cluster"] == {"server": "https://127.0.0.1:1", "version": "v1.37.2",
                                  "nodes": 3, "ready_nodes": 3, "local": None, "flags": {}}
    # a phase has no objects until it ends
    assert written["phases"] == [{"name": "saturation", "started": "2026-11-23T05:14:01Z",
                                  "finished": None}]
    summary.phases[0].objects = {"Deployment": 3}
    summary.node_failures.append(NodeFailureRecord(phase=None, id="f1",
                                                   failure={"action": "stop"},
                                                   start="2026-11-23T05:14:02Z"))
    summary.slos = [Slo.judge("NodeReadiness", "nodes turned NotReady during the run", 0.0,
                              0.0, "nodes")]
    summary.left_behind = LeftBehind(namespaces=["density-1"])
    written = encode_summary(summary)
    assert list(written)[-2:] == ["files", "left_behind"]
    assert written["phases"][0]["objects"] == {"Deployment": 3}
    assert written["node_failures"] == [{"phase": None, "id": "f1", "failure": {"action": "stop"},
                                         "start": "2026-11-23T05:14:02Z", "end": None}]
    assert written["slos"] == [{"measurement": "NodeReadiness",
                                "name": "nodes turned NotReady during the run", "value": 0.0,
                                "threshold": 0.0, "unit": "nodes", "verdict": "pass"}]
    assert written["left_behind"] == {"namespaces": ["density-1"]}


def test_written_as_output_writes_json(tmp_path: Path) -> None:
    summary = RunSummary(test="density", slos=[Slo.judge("X", "x", None, 1.0, "ms")])
    path = Output(tmp_path, "density").write_json("summary.json", encode_summary(summary))
    assert read_summary(path) == summary
    assert path.read_bytes() == orjson.dumps(encode_summary(summary),
                                             option=orjson.OPT_INDENT_2) + b"\n"


def test_unknown_fields_are_ignored() -> None:
    summary = decode_summary({"test": "density", "written_by": "a future pykubemark",
                              "cluster": {"server": "s", "zone": "z"},
                              "slos": [{"name": "x", "value": 1, "threshold": 2, "unit": "ms",
                                        "verdict": "pass", "window": "5m"}]})
    assert summary.test == "density" and summary.cluster == Cluster(server="s")
    assert summary.slos == [Slo(name="x", value=1.0, threshold=2.0, unit="ms", verdict="pass")]


def test_fields_of_the_wrong_type_read_as_their_defaults() -> None:
    summary = decode_summary({
        "test": "density", "verdict": "pass", "slos": {"not": "a list"}, "parameters": [1],
        "cluster": "local", "partial": "yes",
        "phases": ["junk", {"name": "a", "objects": "none", "finished": 3},
                   {"name": "b", "started": "2026-11-23T05:14:00Z"}],
        "files": {"perfdata": "x", "report": "r.html"}})
    assert (summary.test, summary.verdict, summary.slos, summary.parameters) == (
        "density", "pass", [], {})
    assert summary.cluster is None and summary.partial is False
    assert summary.phases == [PhaseRecord(name="a"),
                              PhaseRecord(name="b", started="2026-11-23T05:14:00Z")]
    assert summary.phases[0].objects is UNSET
    assert (summary.files.perfdata, summary.files.report) == ([], "r.html")
    assert decode_summary(["not", "an", "object"]) == RunSummary()


def test_a_summary_missing_fields_reads(tmp_path: Path) -> None:
    run = read_run(make_run(tmp_path / "run", partial=True))
    assert run.summary is not None
    assert (run.summary.run_id, run.summary.node_failures) == ("", [])
    assert run.summary.partial and run.summary.phases[-1].finished is None
    assert run.summary.cluster is not None and run.summary.cluster.ready_nodes is None


def test_no_summary_or_not_json(tmp_path: Path) -> None:
    assert read_run(clusterloader2_results(tmp_path / "cl2")).summary is None
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "summary.json").write_text('{"test": "den')
    assert read_summary(tmp_path / "cut" / "summary.json") is None
    write(tmp_path / "list" / "summary.json", [1, 2])
    assert read_run(tmp_path / "list").summary is None
