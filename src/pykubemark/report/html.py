"""report.html: one self-contained page per run, rendered from the run's files alone.

Rendered from files (not from live objects) so that it can be rewritten at every phase,
after an interrupted run, or later with `pykubemark report DIR`. Every section renders
with its files missing ("no data"): partial runs happen.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup

from pykubemark.errors import UserError
from pykubemark.files import write_atomic
from pykubemark.measure.registry import (
    API_RESPONSIVENESS,
    ETCD_METRICS,
    NODE_READINESS,
    POD_STARTUP,
    RESOURCE_USAGE,
    SCHEDULING_THROUGHPUT,
    by_perfdata,
)
from pykubemark.measure.slos import (
    Slo,
    api_call_threshold,
    api_call_thresholds_text,
    overall_verdict,
)
from pykubemark.report import plots
from pykubemark.report.rundir import Perfdata, RunFiles, perfdata_name_parts, read_run
from pykubemark.report.summary import PhaseRecord, RunSummary

if TYPE_CHECKING:
    from pykubemark.report.compare import Comparison

#: Summary names of pod-startup perfdata: this, then the pod group's identifier.
POD_STARTUP_PREFIX = f"{POD_STARTUP.perfdata}_"
PHASE_ORDER = ("create_to_schedule", "schedule_to_run", "run_to_watch", "schedule_to_watch",
               "pod_startup")
PERCENTILES = ("Perc50", "Perc90", "Perc99")
MAX_BARS = 25  # call kinds in the API latency plot (the table has them all)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("pykubemark.report", "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.ChainableUndefined)
    env.filters["num"] = number
    return env


def number(value: Any) -> str:
    """A value as a person reads it: 3 significant digits, thousands separated."""
    if value is None or value == "":
        return "–"
    if isinstance(value, str):  # perfdata labels carry counts as strings
        try:
            value = float(value) if "." in value else int(value)
        except ValueError:
            return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(**context)


def write_html(directory: Path) -> Path:
    """Render `directory/report.html` from the run's files; returns its path."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"{directory} is not a directory")
    run = read_run(directory)
    if run.summary is None and not run.perfdata:
        raise UserError(f"{directory} holds no run output (no summary.json, no perfdata)")
    try:
        return write_atomic(directory / "report.html",
                            render("report.html.j2", **report_context(run)))
    except OSError as exc:
        raise UserError(f"cannot write {directory / 'report.html'}: {exc.strerror}") from None


# --- the sections -----------------------------------------------------------------------------


def report_context(run: RunFiles) -> dict[str, Any]:
    summary = run.summary
    if summary is None:  # perfdata alone: name the run from its file names
        parts = (perfdata_name_parts(p.path) for p in run.perfdata.values())
        named = next(filter(None, parts), None)
        summary = RunSummary(test=named[0], started=named[1]) if named else RunSummary()
    slos = summary.slos
    used: set[str] = set()
    context = {
        "s": summary,
        "has_summary": run.summary is not None,
        "title": f"pykubemark {summary.test} {summary.started}".strip(),
        "directory": str(run.directory),
        "verdict": summary.verdict or overall_verdict(slos),
        "partial": summary.partial,
        "slos": slos,
        "slo_about": {s.measurement: _slo_about(s) for s in slos},
        "pod_startup": pod_startup_sections(run, slos, used),
        "api": api_section(run, used),
        "scheduling": series_section(run, used, SCHEDULING_THROUGHPUT.perfdata,
                                     SCHEDULING_THROUGHPUT.series),
        "nodes": series_section(run, used, NODE_READINESS.perfdata, NODE_READINESS.series),
        "resources": resources_section(run, used),
        "etcd": etcd_section(run, used),
        "parameters": summary.parameters,
        "phases": phases(summary.phases),
        "cluster": summary.cluster,
        "perfdata_files": sorted(p.path.name for p in run.perfdata.values()),
    }
    context["others"] = [generic_table(p) for name, p in sorted(run.perfdata.items())
                         if name not in used]
    return context


def _slo_about(slo: Slo) -> str:
    """What the measurement of an SLO row judges, in words (its registry entry's)."""
    measurement = by_perfdata(slo.measurement)
    return measurement.slo if measurement is not None else ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _values(pods: dict[str, Any], phase: str) -> list[float]:
    out = []
    for values in pods.values():
        value = _number(values.get(phase)) if isinstance(values, dict) else None
        if value is not None:
            out.append(value)
    return out


def _phase_order(names: Iterable[str]) -> list[str]:
    names = set(names)
    return [p for p in PHASE_ORDER if p in names] + sorted(names - set(PHASE_ORDER))


def phase_span(phase: str) -> str:
    """The two instants a phase lies between, by clusterloader2's naming."""
    if phase == "pod_startup":
        return "create → watch"
    start, sep, end = phase.partition("_to_")
    return f"{start} → {end}" if sep else ""


def _startup_rank(name: str) -> tuple[int, str]:
    """Saturation pods before latency pods before anything else, as clusterloader2 lists them."""
    identifier = name[len(POD_STARTUP_PREFIX):]
    return (0 if identifier.startswith("Saturation") else
            1 if identifier.startswith("Latency") else 2, name)


def pod_startup_sections(run: RunFiles, slos: list[Slo],
                         used: set[str]) -> list[dict[str, Any]]:
    summaries = {n for n in run.perfdata if n.startswith(POD_STARTUP_PREFIX)}
    summaries |= set(run.raw_names(POD_STARTUP_PREFIX))
    order = sorted(summaries, key=_startup_rank)
    sections = []
    for name in order:
        used.add(name)
        identifier = name[len(POD_STARTUP_PREFIX):]
        raw = run.raw(name) or {}
        pods = raw.get("pods") if isinstance(raw.get("pods"), dict) else {}
        unit = str(raw.get("unit") or "ms")
        perf = run.perfdata.get(name)
        by_metric = {str(i.get("labels", {}).get("Metric")): i for i in perf.items} if perf else {}
        phase_names = _phase_order(set(by_metric) | {k for v in pods.values()
                                                      if isinstance(v, dict) for k in v})
        rows = []
        distributions = {}
        for phase in phase_names:
            item = by_metric.get(phase, {})
            values = _values(pods, phase)
            if values:
                distributions[phase] = values
            rows.append({"metric": phase, "span": phase_span(phase), "unit": item.get("unit", unit),
                         "data": item.get("data", {}), "count": len(values) if pods else None})
        slo = _slo_of(slos, identifier)
        plot = None
        if distributions:
            plot = Markup(plots.ecdf(distributions, unit, salt=f"pod-{identifier}",
                                     threshold=slo.threshold if slo else None))
        sources = raw.get("sources") if isinstance(raw.get("sources"), dict) else {}
        sections.append({"identifier": identifier, "rows": rows, "plot": plot,
                         "sources": sources, "pods": len(pods), "slo": slo,
                         "perfdata": perf is not None})
    return sections


def _slo_of(slos: list[Slo], identifier: str) -> Slo | None:
    """The pod-startup SLO naming this identifier ("... (SaturationPodStartupLatency)"), where
    "PodStartupLatency" must not match the saturation one."""
    candidates = [s for s in slos if s.measurement == POD_STARTUP.perfdata]
    exact = [s for s in candidates if f"({identifier})" in s.name]
    return (exact or [s for s in candidates if s.name.endswith(identifier)] or [None])[0]


def api_threshold(labels: dict[str, Any]) -> float:
    """The API call latency SLO of a perfdata row's call, in ms: the threshold its SLO row
    judges it against (`measure.slos.api_call_threshold`)."""
    return api_call_threshold(str(labels.get("Verb", "")), str(labels.get("Scope", ""))) * 1000


def api_section(run: RunFiles, used: set[str]) -> dict[str, Any] | None:
    name = next((n for n in sorted(run.perfdata) if n == API_RESPONSIVENESS.perfdata),
                next((n for n in sorted(run.perfdata) if API_RESPONSIVENESS.owns(n)), None))
    if name is None:
        return None
    used.add(name)
    rows = []
    for item in run.perfdata[name].items:
        labels = item.get("labels") or {}
        data = item["data"]
        threshold = api_threshold(labels)
        p99 = data.get("Perc99")
        kind = f"{labels.get('Verb', '?')} {labels.get('Resource', '?')}"
        if labels.get("Subresource"):
            kind += f"/{labels['Subresource']}"
        rows.append({"kind": kind, "scope": labels.get("Scope", ""), "data": data,
                     "count": labels.get("Count"), "slow": labels.get("SlowCount"),
                     "threshold": threshold, "unit": item.get("unit", "ms"),
                     "fail": (_number(p99) or 0.0) > threshold})
    # closest to its threshold first: what matters is the margin, not the raw latency
    rows.sort(key=lambda r: (-(_number(r["data"].get("Perc99")) or 0.0) / r["threshold"],
                             r["kind"], r["scope"]))
    bars = [plots.Bar(f"{r['kind']} ({r['scope']})" if r["scope"] else r["kind"],
                      _number(r["data"].get("Perc50")) or 0.0,
                      _number(r["data"].get("Perc99")) or 0.0,
                      r["threshold"]) for r in rows[:MAX_BARS]]
    plot = Markup(plots.latency_bars(bars, "ms", salt="api")) if bars else None
    return {"name": name, "rows": rows, "plot": plot, "plotted": len(bars),
            "thresholds": api_call_thresholds_text()}


def _series_plot(run: RunFiles, name: str, title: str = "") -> Markup | None:
    series = run.series(name)
    lines = {str(k): v for k, v in (series or {}).get("series", {}).items()
             if isinstance(v, list) and v}
    if not series or not lines:
        return None
    return Markup(plots.time_series(lines, str(series.get("unit", "")),
                                    salt=f"series-{name}", title=title))


def series_section(run: RunFiles, used: set[str], name: str, series: str) -> dict[str, Any]:
    """A measurement's series plotted over time, and its perfdata file as a table."""
    used.add(name)
    perf = run.perfdata.get(name)
    return {"plot": _series_plot(run, series),
            "table": generic_table(perf) if perf else None}


def resources_section(run: RunFiles, used: set[str]) -> dict[str, Any]:
    used.add(RESOURCE_USAGE.perfdata)
    perf = run.perfdata.get(RESOURCE_USAGE.perfdata)
    rows = []
    if perf:
        for item in perf.items:
            labels = item.get("labels") or {}
            rows.append({"name": labels.get("Name", "?"), "resource": labels.get("Resource", ""),
                         "unit": item.get("unit", ""), "data": item["data"]})
        rows.sort(key=lambda r: (r["resource"], r["name"]))
    return {"cpu": _series_plot(run, f"{RESOURCE_USAGE.series}_cpu", "CPU"),
            "memory": _series_plot(run, f"{RESOURCE_USAGE.series}_memory", "memory (RSS)"),
            "rows": rows}


def etcd_section(run: RunFiles, used: set[str]) -> dict[str, Any]:
    used.add(ETCD_METRICS.perfdata)
    perf = run.perfdata.get(ETCD_METRICS.perfdata)
    names = run.series_names(ETCD_METRICS.perfdata)
    plots_ = [p for p in (_series_plot(run, n, n) for n in names) if p]
    return {"table": generic_table(perf) if perf else None, "plots": plots_}


def generic_table(perf: Perfdata) -> dict[str, Any]:
    """Any perfdata file as a table: one column per label, then one per data key."""
    label_keys: list[str] = []
    data_keys: list[str] = []
    for item in perf.items:
        for key in item.get("labels") or {}:
            if key not in label_keys:
                label_keys.append(key)
        for key in item["data"]:
            if key not in data_keys:
                data_keys.append(key)
    rows = [{"labels": [(item.get("labels") or {}).get(k, "") for k in label_keys],
             "data": [item["data"].get(k) for k in data_keys], "unit": item.get("unit", "")}
            for item in perf.items]
    return {"name": perf.summary, "file": perf.path.name, "label_keys": label_keys,
            "data_keys": data_keys, "rows": rows}


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def phases(entries: list[PhaseRecord]) -> list[dict[str, Any]]:
    out = []
    for phase in entries:
        start, end = _parse_time(phase.started), _parse_time(phase.finished)
        duration = f"{(end - start).total_seconds():.0f} s" if start and end else "–"
        objects = phase.objects if isinstance(phase.objects, dict) else {}
        out.append({"name": phase.name or "?", "started": phase.started,
                    "finished": phase.finished, "duration": duration,
                    "objects": ", ".join(f"{v} {k}" for k, v in objects.items())})
    return out


# --- the comparison page ----------------------------------------------------------------------


def write_compare_html(comparison: Comparison, out: Path) -> Path:
    """A page with the comparison table and both runs' pod-startup distributions overlaid."""
    overlays = []
    base, cand = comparison.baseline.files, comparison.candidate.files
    if base is not None and cand is not None:
        names = (set(base.raw_names(POD_STARTUP_PREFIX))
                 | set(cand.raw_names(POD_STARTUP_PREFIX)))
        for name in sorted(names, key=_startup_rank):
            braw, craw = base.raw(name) or {}, cand.raw(name) or {}
            bpods = braw.get("pods") if isinstance(braw.get("pods"), dict) else {}
            cpods = craw.get("pods") if isinstance(craw.get("pods"), dict) else {}
            phase = "pod_startup"
            distributions = {"baseline": _values(bpods, phase), "candidate": _values(cpods, phase)}
            if not any(distributions.values()):
                continue
            overlays.append({"identifier": name[len(POD_STARTUP_PREFIX):], "phase": phase,
                             "plot": Markup(plots.ecdf(
                                 distributions, str(craw.get("unit") or braw.get("unit") or "ms"),
                                 salt=f"cmp-{name}", styles={"candidate": "-",
                                                             "baseline": "--"}))})
    counts = comparison.counts()
    page = render("compare.html.j2", c=comparison, counts=counts, overlays=overlays,
                  title=f"pykubemark compare: {comparison.baseline.label} vs "
                        f"{comparison.candidate.label}",
                  verdict="regression" if comparison.regressions else "pass")
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        return write_atomic(Path(out), page)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror}") from None
