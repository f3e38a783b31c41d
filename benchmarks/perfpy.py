"""Where a Python process's CPU goes, by Python function, from a perf recording.

py-spy samples a process whether or not it is on a CPU and sees no C frames, so an
asyncio program's time in uvloop, OpenSSL and the kernel lands on the event loop's own
frame. perf samples only CPU time; with Python 3.12+'s perf trampolines
(``PYTHONPERFSUPPORT=1``) each Python call leaves a ``py::function:file`` frame in the
native stack. This charges every sample to the innermost such frame (the function plus
the C it called) and, besides, to the shared object its top frame is in.

    PYTHONPERFSUPPORT=1 python ... &                 # Python >= 3.12
    perf record -F 999 --call-graph dwarf,8192 -p PID -o p.perf -- sleep 45
    perf script -i p.perf > p.txt
    python benchmarks/perfpy.py p.txt
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import click

#: "    7fa5... py::Client.request:/path/client.py+0x5 (/tmp/perf-1.map)"
FRAME = re.compile(r"^\s*[0-9a-f]+ (\S+?)(?:\+0x[0-9a-f]+)? \((.*)\)$")


def attribute(text: str, top: int = 30) -> dict[str, object]:
    """Shares of samples by shared object and by innermost Python function."""
    by_object: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    samples = 0
    for block in text.split("\n\n"):
        frames = [m.groups() for line in block.splitlines()[1:]
                  if (m := FRAME.match(line))]
        if not frames:
            continue
        samples += 1
        # an inlined frame is charged to the object of the first real frame under it
        where = next((o for _, o in frames if o != "inlined"), "?")
        by_object[where.rsplit("/", 1)[-1]] += 1
        function = next((s for s, _ in frames if s.startswith("py::")), None)
        by_function[function[4:].split(":", 1)[0] if function else "(no Python frame)"] += 1

    def shares(counter: Counter[str]) -> list[list[object]]:
        return [[name, round(100 * n / max(samples, 1), 1)]
                for name, n in counter.most_common(top)]

    return {"samples": samples, "percent_by_object": shares(by_object),
            "percent_by_python_function": shares(by_function)}


@click.command()
@click.argument("perf_script_output", type=click.Path(exists=True, dir_okay=False,
                                                       path_type=Path))
@click.option("--top", type=click.IntRange(min=1), default=30, show_default=True)
def main(perf_script_output: Path, top: int) -> None:
    """Attribute the samples of `perf script` output to Python functions (JSON)."""
    result = attribute(perf_script_output.read_text(errors="replace"), top)
    if not result["samples"]:
        raise click.UsageError(f"{perf_script_output}: no perf samples with call stacks")
    click.echo(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
