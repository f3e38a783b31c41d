"""The plots of the reports, as inline SVG strings: the page must open with no network.

matplotlib's object API (no pyplot: no global figure state) on the Agg backend. Each plot
gets its own `svg.hashsalt`, so the ids inside two SVGs of one page never collide and the
output of the same data is the same bytes; text stays text (`svg.fonttype: none`), which
keeps the files small.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")

import itertools

import numpy as np
from matplotlib.figure import Figure

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")
PASS_COLOR = "#4c8bd6"
FAIL_COLOR = "#d64c4c"
THRESHOLD_COLOR = "#b00020"
_DASHES = ((0, (4, 2)), (0, (1, 1.5)), (0, (6, 2, 1, 2)), (0, (2, 2)), "-")
_STYLE = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e4e4e4",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
}


def _svg(fig: Figure, salt: str) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context({**_STYLE, "svg.hashsalt": f"pykubemark-{salt}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None},
                    bbox_inches="tight")
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    # natural size (so every plot has the same font size), shrunk on narrow screens by CSS
    return re.sub(r"<svg\b", '<svg class="plot"', text, count=1)


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(_STYLE):
        return Figure(figsize=(width, height), layout="constrained")


def ms_scale(values: Sequence[float], unit: str) -> tuple[float, str]:
    """Divisor and unit to show: seconds when latencies in ms run into seconds."""
    if unit == "ms" and len(values) and max(values) >= 2000:
        return 1000.0, "s"
    return 1.0, unit


def ecdf(distributions: Mapping[str, Sequence[float]], unit: str, *, salt: str,
         threshold: float | None = None, title: str = "",
         styles: Mapping[str, str] | None = None) -> str:
    """Cumulative distribution of each named set of values (one line each)."""
    everything = [v for values in distributions.values() for v in values]
    if threshold is not None:
        everything.append(threshold)
    divisor, shown = ms_scale(everything, unit)
    with matplotlib.rc_context(_STYLE):
        fig = _figure(7.5, 3.2)
        ax = fig.add_subplot()
        # the SLI (or the candidate) drawn first and thick, the others thin and dashed on
        # top of it: phases that coincide (all zero, or equal) stay visible
        names = list(distributions)
        main = next((n for n in ("pod_startup", "candidate") if n in distributions), None)
        order = ([main] if main else []) + [n for n in names if n != main]
        handles: dict[str, Any] = {}
        for name in order:
            values = distributions[name]
            if not len(values):
                continue
            i = names.index(name)
            xs = np.sort(np.asarray(values, dtype=float)) / divisor
            ys = np.arange(1, len(xs) + 1) / len(xs)
            dash = (styles or {}).get(name) or ("-" if name == main else _DASHES[i % len(_DASHES)])
            handles[name], = ax.step(
                np.concatenate([[xs[0]], xs]), np.concatenate([[0.0], ys]), where="post",
                color=COLORS[i % len(COLORS)], linewidth=2.4 if name == main else 1.3,
                linestyle=dash, label=f"{name} (n={len(xs)})", zorder=2 if name == main else 3)
        if threshold is not None:
            handles["SLO"] = ax.axvline(threshold / divisor, color=THRESHOLD_COLOR,
                                        linestyle="--", linewidth=1,
                                        label=f"SLO {threshold / divisor:g} {shown}")
        for q in (0.5, 0.9, 0.99):
            ax.axhline(q, color="#999999", linewidth=0.5, linestyle=":")
        ax.set_ylim(0, 1.02)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 0.9, 0.99])
        ax.set_yticklabels(["0", "25%", "50%", "75%", "90%", "99%"])
        ax.set_xlim(left=min(0.0, ax.get_xlim()[0]))
        ax.set_xlabel(shown)
        ax.set_ylabel("pods at or below")
        if title:
            ax.set_title(title, loc="left", fontsize=10)
        ax.legend(handles=[handles[n] for n in [*names, "SLO"] if n in handles],
                  loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return _svg(fig, salt)


@dataclass
class Bar:
    label: str
    p50: float
    p99: float
    threshold: float | None


def latency_bars(bars: Sequence[Bar], unit: str, *, salt: str) -> str:
    """Horizontal p99 bars (p50 dots) on a log axis, each with its own threshold mark."""
    height = 0.8 + 0.24 * len(bars)
    with matplotlib.rc_context(_STYLE):
        fig = _figure(7.5, height)
        ax = fig.add_subplot()
        ys = np.arange(len(bars))[::-1]
        p99 = np.array([max(b.p99, 1e-3) for b in bars])
        colors = [FAIL_COLOR if b.threshold is not None and b.p99 > b.threshold else PASS_COLOR
                  for b in bars]
        ax.barh(ys, p99, color=colors, height=0.65, label="p99")
        ax.scatter([max(b.p50, 1e-3) for b in bars], ys, color="#222222", s=9, zorder=3,
                   label="p50")
        marked = [(y, b.threshold) for y, b in zip(ys, bars, strict=True) if b.threshold]
        if marked:
            ax.scatter([t for _, t in marked], [y for y, _ in marked], marker="|", s=140,
                       color=THRESHOLD_COLOR, zorder=4, label="SLO threshold")
        ax.set_xscale("log")
        ax.set_yticks(ys)
        ax.set_yticklabels([b.label for b in bars], fontsize=8)
        ax.set_ylim(-0.7, len(bars) - 0.3)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(f"{unit} (log scale)")
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3, fontsize=8)
    return _svg(fig, salt)


def _point(p: object) -> bool:
    return (isinstance(p, (list, tuple)) and len(p) >= 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p[:2]))


def time_series(series: Mapping[str, Sequence[Sequence[float]]], unit: str, *, salt: str,
                title: str = "") -> str:
    """Lines of value over time since the run started."""
    ends = [p[0] for points in series.values() for p in points if _point(p)]
    minutes = bool(ends) and max(ends) > 600
    with matplotlib.rc_context(_STYLE):
        fig = _figure(7.5, 2.6)
        ax = fig.add_subplot()
        for i, (name, points) in enumerate(series.items()):
            pts = np.asarray([p[:2] for p in points if _point(p)], dtype=float).reshape(-1, 2)
            if not len(pts):
                continue
            xs = pts[:, 0] / 60 if minutes else pts[:, 0]
            ax.plot(xs, pts[:, 1], color=COLORS[i % len(COLORS)], linewidth=1.3,
                    marker="." if len(pts) < 40 else None, markersize=4, label=name)
        ax.set_xlabel("minutes since start" if minutes else "seconds since start")
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
        if title:
            ax.set_title(title, loc="left", fontsize=10)
        if len(series) > 1:
            ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return _svg(fig, salt)


@dataclass
class Strip:
    """One metric of an A/B: each side's runs and the ratio's interval, all as ratios
    to the baseline's median."""

    label: str
    baseline: Sequence[float]
    candidate: Sequence[float]
    ratio: float
    low: float
    high: float
    verdict: str


_VERDICT_COLORS = {"regression": FAIL_COLOR, "improvement": "#1e7b34"}


def ab_strips(strips: Sequence[Strip], *, salt: str) -> str:
    """Per metric, a row: the baseline's runs (hollow dots) and the candidate's (filled),
    each divided by the baseline's median, and the candidate/baseline ratio with its
    interval (a bar, red for a regression, green for an improvement), on a log axis."""
    height = 0.9 + 0.34 * len(strips)
    everything = [v for s in strips for v in (*s.baseline, *s.candidate, s.ratio)
                  if v > 0 and np.isfinite(v)]
    everything += [v for s in strips for v in (s.low, s.high) if v > 0 and np.isfinite(v)]
    lo = min([*everything, 0.8]) / 1.15
    hi = max([*everything, 1.25]) * 1.15
    with matplotlib.rc_context(_STYLE):
        fig = _figure(7.5, height)
        ax = fig.add_subplot()
        ys = np.arange(len(strips))[::-1].astype(float)
        for y, s in zip(ys, strips, strict=True):
            color = _VERDICT_COLORS.get(s.verdict, "#555555")
            low = s.low if s.low > 0 else lo
            high = s.high if np.isfinite(s.high) else hi
            ax.plot([low, high], [y, y], color=color, linewidth=5, alpha=0.35,
                    solid_capstyle="butt", zorder=1)
            ax.plot([s.ratio], [y], marker="|", color=color, markersize=12, zorder=2)
            base = [max(v, lo) for v in s.baseline]
            cand = [max(v, lo) for v in s.candidate]
            ax.scatter(base, [y + 0.18] * len(base), s=14, facecolors="none",
                       edgecolors=COLORS[0], linewidths=0.9, zorder=3)
            ax.scatter(cand, [y - 0.18] * len(cand), s=14, color=COLORS[1], zorder=3)
        ax.axvline(1.0, color="#333333", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ax.set_yticks(ys)
        ax.set_yticklabels([s.label for s in strips], fontsize=8)
        ax.set_ylim(-0.7, len(strips) - 0.3)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("÷ the baseline's median (log scale); bar: the ratio's interval")
        ax.scatter([], [], s=14, facecolors="none", edgecolors=COLORS[0], label="baseline runs")
        ax.scatter([], [], s=14, color=COLORS[1], label="candidate runs")
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, fontsize=8)
    return _svg(fig, salt)


def trend_series(values: Sequence[float | None], labels: Sequence[str], unit: str, *,
                 shifts: Sequence[int], salt: str, title: str = "") -> str:
    """One metric over a history of runs, with a dashed line before the first run after
    each change point and the mean of each segment."""
    xs = np.arange(len(values))
    ys = np.array([np.nan if v is None else v for v in values], dtype=float)
    with matplotlib.rc_context(_STYLE):
        fig = _figure(7.5, 2.4)
        ax = fig.add_subplot()
        ax.plot(xs, ys, color=COLORS[0], linewidth=1.1, marker=".", markersize=5)
        edges = [0, *shifts, len(values)]
        for a, b in itertools.pairwise(edges):
            segment = ys[a:b]
            if np.isfinite(segment).any():
                ax.plot([a - 0.3, b - 0.7], [np.nanmean(segment)] * 2, color="#888888",
                        linewidth=1, linestyle=":")
        for shift in shifts:
            ax.axvline(shift - 0.5, color=THRESHOLD_COLOR, linestyle="--", linewidth=1)
        step = max(1, len(labels) // 12)
        ax.set_xticks(xs[::step])
        ax.set_xticklabels([labels[i] for i in range(0, len(labels), step)], fontsize=7,
                           rotation=30, ha="right")
        ax.set_ylabel(unit)
        if title:
            ax.set_title(title, loc="left", fontsize=10)
    return _svg(fig, salt)
