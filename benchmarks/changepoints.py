"""Which change-point library `pykubemark trend` uses: each candidate on one synthetic
history of runs with known shifts, scored the same way.

The history: series of 30–60 runs of a metric whose run-to-run noise is like this
machine's (log-normal, 8 % spread, and one run in 20 an outlier 1.3–1.8× slower), half
of them flat and half with one or two shifts of 10–40 % up or down at known runs. A shift
counts as found when a change point is named within 2 runs of it; any other change point
is a false one. The candidates, each at its documented default threshold:

- ruptures 1.1.10: PELT, cost "l2" on the log values, penalty 2·σ²·ln n (σ from the
  median absolute difference of successive runs: a BIC-like penalty that needs no noise
  model to be known), min_size 3;
- signal-processing-algorithms 2.1.6 (MongoDB): E-divisive means, p 0.05, 100
  permutations;
- apache-otava 0.8.0 (Hunter): compute_change_points, window 50, p 0.001.

signal-processing-algorithms needs numpy < 2 and otava pins numpy 2.2.0 and scipy < 1.17,
so neither installs beside pykubemark's numpy 2.4; each runs in its own virtualenv
(--spa-python, --otava-python), fed the same series as JSON.

    python benchmarks/changepoints.py --spa-python /tmp/spa/bin/python \
        --otava-python /tmp/otava/bin/python
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

RESULTS = Path(__file__).resolve().parent / "results"
TOLERANCE = 2
#: ruptures' penalty factors tried besides the default 4 (penalty = factor·σ²·ln n).
PENALTY_FACTORS = (2.0, 6.0, 8.0, 12.0)


def history(seed: int, count: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        n = rng.randint(30, 60)
        shifts: list[int] = []
        if i % 2:
            k = rng.choice((1, 1, 2))
            while len(shifts) < k:
                at = rng.randint(6, n - 6)
                if all(abs(at - s) >= 8 for s in shifts):
                    shifts.append(at)
            shifts.sort()
        level = 100.0
        values = []
        factors = {s: rng.choice((-1, 1)) * rng.uniform(0.10, 0.40) for s in shifts}
        for t in range(n):
            if t in factors:
                level *= 1 + factors[t]
            value = level * math.exp(rng.gauss(0, 0.08))
            if rng.random() < 0.05:
                value *= rng.uniform(1.3, 1.8)
            values.append(value)
        out.append({"values": values, "shifts": shifts,
                    "sizes": [round(factors[s], 3) for s in shifts]})
    return out


# -- the candidates (each run in the interpreter that has it) -----------------------------
def detect_ruptures(values: list[float], factor: float = 4.0) -> list[int]:
    import numpy as np
    import ruptures

    logs = np.log(np.asarray(values, dtype=float))
    sigma = 1.4826 * float(np.median(np.abs(np.diff(logs)))) / math.sqrt(2) or 1e-6
    algo = ruptures.Pelt(model="l2", min_size=3, jump=1).fit(logs)
    return [b for b in algo.predict(pen=factor * sigma ** 2 * math.log(len(values)))
            if b < len(values)]


def detect_spa(values: list[float]) -> list[int]:
    import numpy as np
    from signal_processing_algorithms.energy_statistics.energy_statistics import e_divisive

    np.random.seed(0)
    return sorted(int(i) for i in e_divisive(values, pvalue=0.05, permutations=100))


def detect_otava(values: list[float]) -> list[int]:
    from otava.analysis import compute_change_points

    points, _weak = compute_change_points(values, window_len=50, max_pvalue=0.001)
    return sorted(int(p.index) for p in points)


DETECTORS = {"ruptures": detect_ruptures, "signal-processing-algorithms": detect_spa,
             "apache-otava": detect_otava}


def worker(name: str, data: Path) -> None:
    series = json.loads(data.read_text())
    started = time.process_time()
    if name.startswith("ruptures:"):
        factor = float(name.partition(":")[2])
        found = [detect_ruptures(s["values"], factor) for s in series]
    else:
        found = [DETECTORS[name](s["values"]) for s in series]
    print(json.dumps({"found": found, "cpu_seconds": time.process_time() - started}))


def score(series: list[dict[str, Any]], found: list[list[int]]) -> dict[str, Any]:
    true_pos = false_pos = missed = flat_alarms = 0
    errors = []
    for s, points in zip(series, found, strict=True):
        left = list(points)
        for shift in s["shifts"]:
            near = [p for p in left if abs(p - shift) <= TOLERANCE]
            if near:
                best = min(near, key=lambda p: abs(p - shift))
                errors.append(abs(best - shift))
                left.remove(best)
                true_pos += 1
            else:
                missed += 1
        false_pos += len(left)
        if not s["shifts"] and points:
            flat_alarms += 1
    shifts = sum(len(s["shifts"]) for s in series)
    flat = sum(1 for s in series if not s["shifts"])
    return {"shifts": shifts, "found": true_pos, "missed": missed,
            "recall": round(true_pos / shifts, 3) if shifts else None,
            "false_change_points": false_pos,
            "precision": round(true_pos / (true_pos + false_pos), 3)
            if true_pos + false_pos else None,
            "flat_series": flat, "flat_series_with_a_change_point": flat_alarms,
            "mean_position_error": round(sum(errors) / len(errors), 2) if errors else None}


@click.command()
@click.option("--series", "count", type=int, default=200, show_default=True)
@click.option("--seed", type=int, default=25, show_default=True)
@click.option("--spa-python", default=None, help="A python with signal-processing-algorithms.")
@click.option("--otava-python", default=None, help="A python with apache-otava.")
@click.option("--worker", "worker_name", default=None, hidden=True)
@click.option("--data", type=click.Path(path_type=Path), default=None, hidden=True)
# click only: the worker runs under other virtualenvs, without benchlib or pykubemark
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path),
              default=RESULTS, show_default=True)
def main(count: int, seed: int, spa_python: str | None, otava_python: str | None,
         worker_name: str | None, data: Path | None, results_dir: Path) -> None:
    if worker_name:
        assert data is not None
        worker(worker_name, data)
        return
    series = history(seed, count)
    results_dir.mkdir(parents=True, exist_ok=True)
    data = results_dir / ".changepoints-series.json"
    data.write_text(json.dumps(series))
    pythons = {"ruptures": sys.executable, "signal-processing-algorithms": spa_python,
               "apache-otava": otava_python}
    # ruptures' threshold is a penalty, not a p-value: its trade-off at other factors
    pythons |= {f"ruptures:{f:g}": sys.executable for f in PENALTY_FACTORS}
    results: dict[str, Any] = {}
    try:
        for name, python in pythons.items():
            if python is None:
                results[name] = {"skipped": "no interpreter given"}
                continue
            started = time.monotonic()
            out = subprocess.run([python, __file__, "--worker", name, "--data", str(data)],
                                 capture_output=True, text=True, check=True)
            reply = json.loads(out.stdout.strip().splitlines()[-1])
            results[name] = {**score(series, reply["found"]),
                             "cpu_seconds": round(reply["cpu_seconds"], 2),
                             "wall_seconds": round(time.monotonic() - started, 2)}
            print(name, results[name], flush=True)
    finally:
        data.unlink(missing_ok=True)
    path = results_dir / f"changepoints-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"benchmark": "changepoints", "series": count, "seed": seed,
                                "tolerance_runs": TOLERANCE, "argv": sys.argv,
                                "results": results}, indent=2) + "\n")
    print(path)


if __name__ == "__main__":
    main()
