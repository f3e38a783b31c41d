"""`pykubemark restart`: components of the session cluster killed and started again.

etcd killed with SIGKILL while 20 hollow nodes run: the apiserver (the same process)
reconnects by itself, every node renews its lease again once etcd is back, none is
marked NotReady (the outage is far shorter than the controller-manager's 40 s
node-monitor grace period), and the reflectors do not relist in a storm.
"""

from __future__ import annotations

import time
from collections import Counter

from helpers import (
    KUBELET_USER,
    PROXY_USER,
    Cluster,
    Fleet,
    is_ready,
    ready_transition,
    run_cli,
    utcnow,
    wait_for,
)

from pykubemark.hollow.profile import load_profile
from pykubemark.measure.audit import read_audit
from pykubemark.provision.releases import default_release

NODES = 20
DOWNTIME = 5.0
#: kube-controller-manager's --node-monitor-grace-period (default) plus one monitor period.
GRACE = 40.0 + 5.0
#: Reflectors per hollow node: kubelet (its node, its pods, the profile's informers) and
#: kube-proxy's. No pod references a secret or configmap here.
_PROFILE = load_profile(None, default_release())
REFLECTORS = 2 + len(_PROFILE.kubelet_watches) + len(_PROFILE.proxy_watches)


def renewed_after(cluster: Cluster, names: list[str], since: str) -> list[str]:
    """Names whose lease was not renewed after ``since`` (an RFC 3339 string)."""
    leases = {item["metadata"]["name"]: item["spec"].get("renewTime", "")
              for item in cluster.get_json("leases", "-n", "kube-node-lease")["items"]}
    return [n for n in names if leases.get(n, "").replace("Z", "+00:00") <= since]


def test_etcd_kill_and_restart_is_survived(cluster: Cluster) -> None:
    fleet = Fleet(cluster, NODES, "etcdkill", "--delete-nodes-on-exit")
    try:
        fleet.wait_ready()
        before = {n["metadata"]["name"]: ready_transition(n) for n in fleet.nodes_json()}
        pids = {p.name: p.pid for p in cluster.state.processes}
        restarts = cluster.state.proc("etcd").restarts
        killed = utcnow()
        out = run_cli("restart", "--name", cluster.name, "etcd", "--downtime", str(DOWNTIME),
                      "--signal", "kill").stdout
        back = utcnow()
        assert "etcd" in out and "healthy" in out, out

        state = cluster.state
        etcd = state.proc("etcd")
        assert etcd is not None and etcd.pid != pids["etcd"] and etcd.restarts == restarts + 1
        # The apiserver, scheduler and controller-manager were not restarted: they
        # reconnect to etcd (through the apiserver) by themselves.
        for name in ("kube-apiserver", "kube-scheduler", "kube-controller-manager"):
            proc = state.proc(name)
            assert proc is not None and proc.pid == pids[name] and proc.alive(), name
        apiserver = state.proc("kube-apiserver")
        wait_for("the same kube-apiserver to be ready again",
                 lambda: cluster.local.healthy(apiserver), 60, 1)

        wait_for(f"every lease renewed after etcd is back at {back.isoformat()}",
                 lambda: not renewed_after(cluster, fleet.names, back.isoformat()), 60, 2)
        # Had the node-lifecycle controller missed the leases for its grace period,
        # it would have marked nodes NotReady by now.
        time.sleep(max(0.0, GRACE - (utcnow() - killed).total_seconds()))
        nodes = fleet.nodes_json()

        requests = list(read_audit(cluster.audit_log, since=killed))
        lists = Counter(f"{r.user} {r.resource}" for r in requests if r.initial_list)
        # Only this fleet runs now (the other modules' fleets are stopped).
        hollow_lists = sum(n for key, n in lists.items()
                           if key.split(" ")[0] in (KUBELET_USER, PROXY_USER))
        report = (f"LIST requests after the etcd kill ({len(requests)} requests in all): "
                  f"{dict(sorted(lists.items()))}")
        print(report)
        assert len(nodes) == NODES and all(is_ready(n) for n in nodes), report
        after = {n["metadata"]["name"]: ready_transition(n) for n in nodes}
        assert after == before, f"Ready changed: {after} vs {before}; {report}"
        assert not any(n["spec"].get("taints") for n in nodes), report
        # At most one relist per reflector: no relist loop.
        assert hollow_lists <= REFLECTORS * NODES, report
    finally:
        code = fleet.stop()
    assert code == 0, fleet.log.read_text()[-2000:]


def test_restart_refuses_unknown_component_and_cluster(cluster: Cluster) -> None:
    for args, words in ((("--name", cluster.name, "kube-proxy"), ("no component", "etcd")),
                        (("--name", "absent", "etcd"), ("no cluster named 'absent'",))):
        result = run_cli("restart", *args, check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert lines[0].startswith("pykubemark: ") and all(w in lines[0] for w in words)
