"""What a hollow kubelet does when its Node is deleted: the Go kubemark and pykubemark
side by side, on one cluster, each node with its own identity.

One Go hollow node (``go-0``) and one pykubemark hollow node (``py-0``) register; both
Nodes are deleted at once; then every request each kubelet sends for ``--watch``
seconds is counted from the audit log (verb, resource, response code), and whether
each Node came back. The Go kubelets run with a private /tmp, so the cluster state
must live outside /tmp (``PYKUBEMARK_STATE``).

    PYKUBEMARK_STATE=~/pkm-bench .venv/bin/python benchmarks/deleted_node.py --watch 60

Writes ``results/deleted-node-<timestamp>.json``.
"""

from __future__ import annotations

import time
from collections import Counter

import click
from benchlib import (
    Api,
    ApiFailure,
    ResultFile,
    console,
    environment,
    run_cli,
    shielded,
    start_cluster,
    start_py_hollow,
    utcnow,
)

from pykubemark.engines.gokubemark import GoFleet
from pykubemark.measure.audit import read_audit

NODES = {"go": "go-0", "py": "py-0"}


def _ready(api: Api, name: str) -> bool:
    try:
        node = api.request("GET", f"/api/v1/nodes/{name}")
    except (ApiFailure, OSError):  # not there yet
        return False
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in node.get("status", {}).get("conditions", []))


def _exists(api: Api, name: str) -> bool:
    try:
        api.request("GET", f"/api/v1/nodes/{name}")
        return True
    except ApiFailure:  # 404
        return False


@click.command()
@click.option("--watch", "seconds", type=float, default=60.0, show_default=True,
              help="Seconds to watch after the deletion.")
@click.option("--name", default="bench-deleted", show_default=True)
def main(seconds: float, name: str) -> None:
    def body() -> None:
        result = ResultFile("deleted-node")
        result.data = {"environment": environment(), "watch_seconds": seconds}
        cluster = start_cluster(name, audit=True)
        try:
            fleet = GoFleet.for_cluster(cluster, 1)
            fleet.start()
            start_py_hollow(cluster, 1, prefix="py")
            api = Api(cluster)
            deadline = time.monotonic() + 180
            while not all(_ready(api, n) for n in NODES.values()):
                if time.monotonic() > deadline:
                    raise click.ClickException("hollow nodes not Ready in 180 s")
                time.sleep(2)
            time.sleep(15)  # past start-up
            deleted = utcnow()
            for node in NODES.values():
                api.request("DELETE", f"/api/v1/nodes/{node}")
            time.sleep(seconds)
            until = utcnow()
            users = {f"system:node:{n}": side for side, n in NODES.items()}
            counts: dict[str, Counter[str]] = {side: Counter() for side in NODES}
            for r in read_audit(cluster.dir / "logs" / "audit.log", since=deleted, until=until,
                                users=users):
                resource = f"{r.resource}/{r.subresource}" if r.subresource else r.resource
                counts[users[r.user]][f"{r.verb} {resource} {r.code}"] += 1
            result.data["after_deletion"] = {side: dict(sorted(c.items()))
                                             for side, c in counts.items()}
            result.data["node_back"] = {side: _exists(api, n) for side, n in NODES.items()}
            result.save()
            console.print(result.data["after_deletion"], result.data["node_back"])
            console.print(f"written to {result.path}")
            fleet.stop()
        finally:
            with shielded():
                cluster.down()

    run_cli(body)


if __name__ == "__main__":
    main()
