"""APIResponsiveness from two scrapes of a real 1.20 apiserver's /metrics.

The fixtures are excerpts of kube-apiserver 1.20.2's /metrics before and after a
Deployment of 5 pods ran on 2 hollow nodes (25 s apart). Every call in the window took
under 50 ms, so each lands in the first bucket (0, 0.05]: p50 = 0.05 * 0.5 = 25 ms,
p90 = 45 ms, p99 = 49.5 ms by PromQL's linear interpolation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pykubemark.measure.api_responsiveness import METRIC, ApiResponsiveness, Call, aggregate, slos
from pykubemark.measure.metrics import histograms, parse
from pykubemark.measure.slos import COLLECTION_DELETE, api_call_threshold
from pykubemark.report.html import api_threshold, report_context
from pykubemark.report.output import Output
from pykubemark.report.rundir import read_run
from pykubemark.report.summary import RunSummary, encode_summary

DATA = Path(__file__).parent / "data"


def snapshot(text: str):
    return histograms(parse(text, [METRIC]), METRIC)


def fixture(name: str):
    return snapshot((DATA / f"apiserver_metrics_{name}.txt").read_text())


def test_parse_reads_every_series_of_the_histogram_only():
    before, after = fixture("a"), fixture("b")
    assert len(before) == 4 and len(after) == 8
    post = next(h for labels, h in after.items()
                if dict(labels)["verb"] == "POST" and dict(labels)["resource"] == "pods")
    assert post.count == 5 and len(post.buckets) == 38  # 37 bounds + Inf


def test_parse_keeps_only_the_families_asked_for():
    text = (DATA / "apiserver_metrics_b.txt").read_text()
    assert set(parse(text)) == {METRIC, "etcd_object_counts"}
    assert set(parse(text, [METRIC])) == {METRIC}
    assert parse(text, [METRIC])[METRIC] == parse(text)[METRIC]


def test_window_between_two_real_scrapes():
    calls = aggregate(fixture("a"), fixture("b"))
    table = {(c.call.verb, c.call.resource, c.call.subresource, c.call.scope): c
             for c in calls}
    # Unchanged series (GET leases, LIST pods cluster-wide, /readyz) made no call in the
    # window; the WATCH of configmaps did but is excluded.
    assert set(table) == {
        ("POST", "pods", "", "resource"),
        ("PATCH", "pods", "status", "resource"),
        ("PUT", "leases", "", "resource"),
        ("LIST", "pods", "", "namespace"),
    }
    assert {k: c.count for k, c in table.items()} == {
        ("POST", "pods", "", "resource"): 5,
        ("PATCH", "pods", "status", "resource"): 10,
        ("PUT", "leases", "", "resource"): 6,
        ("LIST", "pods", "", "namespace"): 1,
    }
    item = table[("POST", "pods", "", "resource")].item()
    assert item.unit == "ms"
    assert item.data == pytest.approx({"Perc50": 25.0, "Perc90": 45.0, "Perc99": 49.5})
    assert item.labels == {"Verb": "POST", "Resource": "pods", "Subresource": "",
                           "Scope": "resource", "Count": "5", "SlowCount": "0"}


# Hand-made: LISTs of pods in a namespace and cluster-wide, PUTs of deployments in two
# API versions, and pod execs (CONNECT), with observations spread over the SLO thresholds.
SLOW = (DATA / "apiserver_metrics_slow.txt").read_text()


def test_slow_counts_use_the_threshold_of_each_kind_of_call():
    calls = {c.call: c for c in aggregate({}, snapshot(SLOW))}
    # Same four observations (2 <= 1 s, 1 in (1, 5], 1 in (5, 30]) against 5 s, 30 s, 1 s.
    assert calls[Call("LIST", "pods", "", "namespace")].slow_count == 1
    assert calls[Call("LIST", "pods", "", "cluster")].slow_count == 0
    # Two versions of the same call are summed: 5 calls, 3 of them within 1 s.
    put = calls[Call("PUT", "deployments", "", "resource")]
    assert (put.count, put.slow_count) == (5, 2)
    assert Call("CONNECT", "pods", "exec", "resource") not in calls


def test_a_restarted_apiserver_counts_from_its_restart():
    before = snapshot(SLOW.replace("} 4\n", "} 400\n"))
    calls = {c.call: c for c in aggregate(before, snapshot(SLOW))}
    assert calls[Call("LIST", "pods", "", "cluster")].count == 4


def test_one_slo_per_kind_with_the_worst_p99():
    verdicts = {s.name.split(" (worst")[0]: s for s in slos(aggregate({}, snapshot(SLOW)))}
    single = verdicts["API call latency p99, mutating and single-object calls"]
    assert any("(worst: PUT deployments, resource scope)" in s.name
               for s in slos(aggregate({}, snapshot(SLOW))))
    # PUT deployments: rank 4.95 of 5 falls in (5, 30]: 5 + 25 * (4.95 - 4)/1 = 28.75 s.
    assert single.value == pytest.approx(28750.0)
    assert (single.threshold, single.verdict) == (1000.0, "fail")
    # Cluster LIST: rank 3.96 of 4 in (5, 30]: 5 + 25 * 0.96 = 29 s, under 30 s.
    cluster = verdicts["API call latency p99, cluster LIST calls"]
    assert cluster.value == pytest.approx(29000.0) and cluster.verdict == "pass"
    assert verdicts["API call latency p99, namespace LIST calls"].verdict == "fail"
    assert all(s.verdict == "no data" for s in slos([]))


def test_a_collection_delete_is_judged_apart_from_single_object_calls():
    # The namespace controller's DELETE of all events in a namespace took 40 s; a single
    # DELETE of a pod 0.5 s.
    def bucket(scope: str, resource: str, le: str, n: int) -> str:
        return (f'apiserver_request_duration_seconds_bucket{{verb="DELETE",group="",'
                f'version="v1",resource="{resource}",subresource="",scope="{scope}",'
                f'le="{le}"}} {n}\n')
    text = "# TYPE apiserver_request_duration_seconds histogram\n" + "".join(
        bucket("namespace", "events", le, n) for le, n in
        (("1", 0), ("30", 0), ("60", 1), ("+Inf", 1))) + "".join(
        bucket("resource", "pods", le, 1) for le in ("1", "30", "60", "+Inf"))
    verdicts = {s.name.split(" (worst")[0]: s for s in slos(aggregate({}, snapshot(text)))}
    single = verdicts["API call latency p99, mutating and single-object calls"]
    assert single.verdict == "pass" and single.value < 1000.0
    collection = verdicts["API call latency p99, collection DELETE calls"]
    assert (collection.threshold, collection.verdict) == (30000.0, "fail")
    # no collection DELETE, no row: the SLO does not define one
    assert not any("collection" in s.name for s in slos(aggregate({}, snapshot(SLOW))))


def test_a_delete_of_the_pods_of_a_namespace_is_judged_against_one_threshold(tmp_path):
    """`DELETE pods` at namespace scope (the namespace controller deleting every pod of a
    namespace) took 29.7 s: a collection DELETE, 30 s, in its SLO row, its SlowCount and
    the report's per-call table alike (the table once judged it against 1 s)."""
    assert Call("DELETE", "pods", "", "namespace").kind == COLLECTION_DELETE
    assert api_call_threshold("DELETE", "namespace") == 30.0
    assert api_threshold({"Verb": "DELETE", "Resource": "pods", "Scope": "namespace"}) == 30000.0
    # one call each way: single objects stay at 1 s, whatever their scope label says
    assert api_call_threshold("DELETE", "resource") == 1.0
    assert api_call_threshold("POST", "namespace") == 1.0
    assert api_call_threshold("LIST", "namespace") == 5.0
    assert api_call_threshold("LIST", "cluster") == 30.0

    text = "# TYPE apiserver_request_duration_seconds histogram\n" + "".join(
        f'apiserver_request_duration_seconds_bucket{{verb="DELETE",group="",version="v1",'
        f'resource="pods",subresource="",scope="namespace",le="{le}"}} {n}\n'
        for le, n in (("1", 0), ("30", 1), ("60", 1), ("+Inf", 1)))
    calls = aggregate({}, snapshot(text))
    [item] = [c.item() for c in calls]
    assert item.data["Perc99"] == pytest.approx(29710.0) and item.labels["SlowCount"] == "0"
    [row] = [s for s in slos(calls) if "collection DELETE" in s.name]
    assert (row.threshold, row.verdict) == (30000.0, "pass")

    out = Output(tmp_path, "density")
    out.perfdata(ApiResponsiveness.name, [item])
    out.write_json("summary.json", encode_summary(RunSummary(test="density", slos=slos(calls))))
    context = report_context(read_run(tmp_path))
    [table_row] = context["api"]["rows"]
    assert (table_row["kind"], table_row["scope"]) == ("DELETE pods", "namespace")
    assert (table_row["threshold"], table_row["fail"]) == (row.threshold, False)
    [judged] = [s for s in context["slos"] if "collection DELETE" in s.name]
    assert (judged.threshold, judged.verdict) == (30000.0, "pass")
