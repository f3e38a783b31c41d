"""A hollow kubelet's watch survives a 410 the way client-go's reflector does: it lists
again at its last synced resourceVersion, and only if that is gone too from the start
("" : a consistent read). Since 1.35 the list is a streaming one (a WATCH with
sendInitialEvents), as the real kubelet's.

A cluster of its own, with the apiserver's watch cache off, so watches are served by
etcd and an etcd compaction (what the apiserver itself does every 5 minutes) makes the
next watch from an older resourceVersion fail with 410 Expired.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Iterator

import pytest
import yaml
from helpers import Cluster, Fleet, run_cli, utcnow, wait_for

from pykubemark.measure.audit import read_audit

#: Tests that start a cluster without a watch cache: `pytest -m "not slow"` leaves them out.
pytestmark = pytest.mark.slow

NAME = "nocache"


def etcd(cluster: Cluster, call: str, body: dict) -> dict:
    url = f"http://127.0.0.1:{cluster.state.ports['etcd']}/v3/kv/{call}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def nocache(binaries) -> Iterator[Cluster]:
    run_cli("up", "--name", NAME, "--audit", "--apiserver-arg=--watch-cache=false")
    try:
        yield Cluster(NAME)
    finally:
        run_cli("down", "--name", NAME, check=False)


def csidriver_lists(cluster: Cluster, since) -> list:
    return [r for r in read_audit(cluster.audit_log, since=since, users=["system:node:gone-0"])
            if r.resource == "csidrivers" and r.initial_list]


def rv(request) -> str | None:
    query = request.uri.partition("?")[2]
    return next((p.partition("=")[2] for p in query.split("&")
                 if p.startswith("resourceVersion=")), None)


def test_watch_410_relists_at_the_last_resource_version(nocache: Cluster, tmp_path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump({"min_watch_timeout": 3}))
    fleet = Fleet(nocache, 1, "gone", "--profile", str(profile))
    try:
        fleet.wait_ready()
        wait_for("the first csidrivers LIST", lambda: csidriver_lists(nocache, fleet.started))
        # Two writes move etcd's revision past the (event-less) csidrivers watch's
        # resourceVersion + 1, where its next watch starts; compact all before them.
        for name in ("gone-a", "gone-b"):
            nocache.kubectl("create", "configmap", name)
        revision = int(etcd(nocache, "range", {"key": base64.b64encode(b"/").decode()})
                       ["header"]["revision"])
        etcd(nocache, "compaction", {"revision": str(revision), "physical": True})
        compacted = utcnow()
        relists = wait_for("a relist after the 410", lambda: csidriver_lists(nocache, compacted),
                           90, 2)
    finally:
        assert fleet.stop() == 0
    first = csidriver_lists(nocache, fleet.started)[0]
    assert rv(first) in (None, "")  # a stream of the current state
    assert rv(relists[0]) not in (None, "", "0"), relists[0].uri  # the last synced RV
    assert int(rv(relists[0])) < revision  # the one etcd no longer had
    # A stream from a compacted revision is refused too (410); only then from the start.
    if relists[0].code == 410:
        assert len(relists) > 1 and rv(relists[1]) in (None, "") and relists[1].code == 200
