"""Scrape a Prometheus /metrics endpoint and read its histograms and gauges.

The apiserver's and etcd's own metrics are the judge of fidelity (not our counters), so
every latency figure comes from here. Text is parsed with prometheus_client's parser, the
reference implementation of the exposition format.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from prometheus_client.parser import text_string_to_metric_families

from pykubemark.kube import Client, KubeConfig
from pykubemark.measure.stats import Histogram

Labels = tuple[tuple[str, str], ...]
Families = dict[str, list[tuple[str, dict[str, str], float]]]


async def scrape(client: Client, path: str = "/metrics") -> str:
    return (await client.get(path)).decode()


def plain_client(url: str) -> tuple[Client, str]:
    """A client for an unauthenticated http endpoint (a local etcd), and the path."""
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    return Client(KubeConfig(server=f"{scheme}://{host}", ssl_context=None)), slash + path


def parse(text: str, names: Iterable[str] | None = None) -> Families:
    """Samples of each family: (sample name, labels, value); only ``names`` if given.

    With ``names``, lines of other families are dropped before parsing: the apiserver's
    /metrics is megabytes, and parsing all of it would hold the event loop (and the
    watches whose receive times we measure) for a second or more.
    """
    wanted = set(names) if names is not None else None
    if wanted is not None:
        text = select(text, wanted)
    families: Families = {}
    for family in text_string_to_metric_families(text):
        if wanted is not None and family.name not in wanted:
            continue
        families[family.name] = [(s.name, dict(s.labels), float(s.value))
                                 for s in family.samples]
    return families


def select(text: str, names: Iterable[str]) -> str:
    """Only the lines (samples, HELP and TYPE) of the families ``names``."""
    prefixes = tuple(p for name in names
                     for p in (name, f"# HELP {name} ", f"# TYPE {name} "))
    return "\n".join(line for line in text.splitlines() if line.startswith(prefixes)) + "\n"


async def parse_off_loop(text: str, names: Iterable[str]) -> Families:
    """`parse` in a worker thread, so the event loop keeps receiving watch events."""
    return await asyncio.to_thread(parse, text, list(names))


def histograms(families: Families, name: str) -> dict[Labels, Histogram]:
    """Each series of histogram ``name``, keyed by its labels (without ``le``)."""
    buckets: dict[Labels, dict[float, float]] = {}
    sums: dict[Labels, float] = {}
    for sample, labels, value in families.get(name, []):
        if sample == f"{name}_bucket":
            le = float(labels.pop("le"))
            buckets.setdefault(_key(labels), {})[le] = value
        elif sample == f"{name}_sum":
            sums[_key(labels)] = value
    return {key: Histogram.from_buckets(b, sums.get(key, 0.0))
            for key, b in buckets.items() if float("inf") in b}


def gauge(families: Families, *names: str) -> float | None:
    """The (summed) value of the first of ``names`` that is present."""
    for name in names:
        samples = families.get(name)
        if samples:
            return sum(value for _, _, value in samples)
    return None


def _key(labels: Mapping[str, str]) -> Labels:
    return tuple(sorted(labels.items()))
