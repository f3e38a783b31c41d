"""report.html from hand-made run directories: complete, partial, and with files missing."""

from __future__ import annotations

import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from helpers import run_cli
from run_files import make_run, perfdata_name, write

from pykubemark.errors import UserError
from pykubemark.report.compare import compare_runs, load_run
from pykubemark.report.html import write_compare_html, write_html

VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "source", "wbr"}


class Page(HTMLParser):
    """The parts of a page the tests look at; also checks that every tag is closed."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.svgs = 0
        self.external: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.ids: list[str] = []
        self._cell: list[str] | None = None
        self.texts: list[str] = []
        self.feed(text)
        self.close()
        assert self.stack == [], self.stack

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "svg" and "svg" not in self.stack:
            self.svgs += 1
        if tag in ("script", "link", "img", "iframe") or any(
                (values.get(a) or "").startswith(("http:", "https:", "//"))
                for a in ("src", "href")):
            self.external.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        if "id" in values and "svg" not in self.stack:
            self.ids.append(values["id"] or "")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.stack.append(tag)
        self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if "svg" not in self.stack:
            self.texts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.texts).split())

    def table_with(self, header: str) -> list[list[str]]:
        return next(t for t in self.tables if t and header in t[0])


def render(directory: Path) -> Page:
    path = write_html(directory)
    assert path == directory / "report.html"
    return Page(path.read_text())


def test_complete_run(tmp_path: Path) -> None:
    page = render(make_run(tmp_path / "run"))
    assert page.external == []  # self-contained
    slos = page.table_with("threshold")
    assert slos[0][:3] == ["measurement", "SLO", "value"]
    assert slos[1][:2] == ["PodStartupLatency", "pod startup p99 (SaturationPodStartupLatency)"]
    assert all(row[-1] == "pass" for row in slos[1:])
    assert len(slos) == 4
    # 2 pod startup distributions, API bars, throughput, nodes not Ready, CPU, memory
    assert page.svgs == 7
    assert "SaturationPodStartupLatency" in page.text and "LatencyPodStartupLatency" in page.text
    # which timestamp each phase comes from
    phases = page.table_with("from → to")
    assert phases[-1][:2] == ["pod_startup", "create → watch"]
    assert "metadata.creationTimestamp" in page.text
    api = page.table_with("SlowCount")
    # closest to its threshold first: POST pods 35 ms of 1 s before LIST pods 900 ms of 30 s
    assert [row[0] for row in api[1:3]] == ["POST pods", "LIST pods"]
    assert "--kube-api-qps=100" in page.text and "saturation" in page.text
    assert "no data" not in page.text
    assert "Partial run" not in page.text


def test_failed_slo_and_partial_run(tmp_path: Path) -> None:
    page = render(make_run(tmp_path / "run", startup_scale=3.0, partial=True))
    assert "Partial run" in page.text
    assert "verdict: fail" in page.text
    slos = page.table_with("threshold")
    assert "fail" in [row[-1] for row in slos[1:]]


def test_renders_with_files_missing(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", extra_perfdata=False)
    shutil.rmtree(run / "series")
    (run / "raw" / "PodStartupLatency_LatencyPodStartupLatency.json").unlink()
    (run / perfdata_name("PodStartupLatency_SaturationPodStartupLatency")).unlink()
    (run / perfdata_name("APIResponsivenessPrometheus")).write_text("{trunc")
    page = render(run)
    assert page.svgs == 1  # the saturation distribution, from raw/ alone
    assert "no data: no APIResponsivenessPrometheus measurement" in page.text
    assert "no data: no series/SchedulingThroughput.json" in page.text
    assert "no data: no CPU series" in page.text
    assert "no per-pod values" in page.text  # latency pods: perfdata but no raw file
    assert "percentiles not written" in page.text  # saturation pods: raw but no perfdata


def test_summary_only_and_perfdata_only(tmp_path: Path) -> None:
    only_summary = tmp_path / "s"
    write(only_summary / "summary.json", {"test": "density", "started": "2026-11-23T05:14:00Z",
                                          "finished": None, "partial": True,
                                          "status": "running", "slos": [], "verdict": "no data"})
    page = render(only_summary)
    assert page.svgs == 0 and "verdict: no data" in page.text and "Partial run" in page.text
    only_perfdata = tmp_path / "p"
    run = make_run(tmp_path / "full")
    only_perfdata.mkdir()
    for f in run.glob("*_density_*.json"):
        shutil.copy(f, only_perfdata)
    write(only_perfdata / "Custom_density_2026-11-23T05:14:00Z.json", {
        "version": "v1", "dataItems": [{"data": {"Perc99": 7.5}, "unit": "ms",
                                        "labels": {"Metric": "custom"}}]})
    page = render(only_perfdata)
    assert page.svgs == 1  # API bars
    assert page.table_with("Metric")  # EtcdMetrics / Custom as generic tables
    assert "Other measurements" in page.text and "Custom" in page.text


def test_files_of_the_wrong_shape_do_not_break_the_page(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    write(run / "summary.json", {"test": "density", "slos": {"not": "a list"}, "parameters": [1],
                                 "cluster": "local", "phases": "none", "verdict": "pass"})
    write(run / "series" / "SchedulingThroughput.json",
          {"unit": "1/s", "series": {"a": [[1, "x"], [2], "bad", [3, 4.0]], "b": "nope"}})
    write(run / perfdata_name("APIResponsivenessPrometheus"), {"version": "v1", "dataItems": [
        {"data": {"Perc99": "slow"}, "labels": {"Verb": "GET"}}, {"data": {}}, "junk"]})
    raw = run / "raw" / "PodStartupLatency_SaturationPodStartupLatency.json"
    write(raw, {"unit": "ms", "pods": {"a/b": {"pod_startup": None}, "a/c": "x",
                                       "a/d": {"pod_startup": 1500}}})
    page = render(run)
    assert "no data: no SLO measured" in page.text
    assert "GET ?" in page.text


def test_verdict_from_the_slos_while_summary_has_none(tmp_path: Path) -> None:
    slo = {"measurement": "PodStartupLatency", "name": "p99", "value": 6000.0,
           "threshold": 5000.0, "unit": "ms"}
    write(tmp_path / "summary.json", {"test": "density", "status": "running", "slos": [
        {**slo, "verdict": "pass"}, {**slo, "verdict": "fail"}]})
    assert "verdict: fail" in render(tmp_path).text
    write(tmp_path / "summary.json", {"test": "density", "slos": [{**slo, "verdict": "pass"}]})
    assert "verdict: pass" in render(tmp_path).text


def test_deterministic(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    first = write_html(run).read_bytes()
    assert write_html(run).read_bytes() == first


def test_bad_directories(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a directory"):
        write_html(tmp_path / "missing")
    with pytest.raises(UserError, match="no run output"):
        write_html(tmp_path)


def test_compare_page_overlays_both_distributions(tmp_path: Path) -> None:
    base = make_run(tmp_path / "a")
    cand = make_run(tmp_path / "b", startup_scale=2.0)
    out = write_compare_html(compare_runs(load_run(base), load_run(cand)), tmp_path / "c.html")
    page = Page(out.read_text())
    assert page.external == []
    assert page.svgs == 2  # saturation and latency pods
    rows = page.table_with("candidate")
    assert rows[1][-1] == "regression"
    assert "regressions" in page.text


def test_cli_report_prints_the_path(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    result = run_cli("report", str(run))
    assert result.stdout.strip() == str(run / "report.html")
    assert (run / "report.html").stat().st_size > 0
