"""`up --prometheus`: Debian's Prometheus beside a local cluster, on loopback.

It scrapes what a scalability test's Prometheus scrapes (clusterloader2's stack): the
apiserver, etcd, the scheduler and the controller-manager, and beyond that the hollow
fleet's own metrics (hollow/metrics.py, one target per fleet process) and the addons
(metrics-server, CoreDNS). It listens on 127.0.0.1 only, keeps its data in the cluster's
state directory, and is stopped by `down` with the rest; `status` shows its address, and
`run --prometheus URL` reads a run's measurements from it (measure/promql.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from pykubemark.cluster import health, ports
from pykubemark.errors import UserError
from pykubemark.files import write_atomic

if TYPE_CHECKING:
    from pykubemark.cluster.control_plane import LocalCluster

PACKAGE = "prometheus"
#: Seconds between scrapes (and the evaluation interval).
SCRAPE_INTERVAL = "5s"


def ensure_installed(progress=lambda _m: None) -> Path:  # type: ignore[no-untyped-def]
    """Debian's ``prometheus`` binary, installed with apt-get when missing (as root)."""
    found = shutil.which("prometheus")
    if found:
        return Path(found)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise UserError("--prometheus needs Debian's prometheus package: run as root on "
                        "Debian (apt-get installs it), or `apt-get install prometheus`")
    progress("apt-get install prometheus")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"],
                 ["apt-get", "install", "-y", "-q", "--no-install-recommends", PACKAGE]):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False,
                                stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            raise UserError(f"{' '.join(argv[:3])} failed: {lines[-1] if lines else ''}")
    # The package enables a service listening on every address: never ours to run.
    subprocess.run(["systemctl", "disable", "--now", "prometheus"], capture_output=True,
                   check=False, stdin=subprocess.DEVNULL)
    found = shutil.which("prometheus")
    if not found:
        raise UserError("apt-get installed prometheus, but it is not on PATH")
    return Path(found)


def _job(name: str, targets: list[str], *, scheme: str = "http",
         token_file: Path | None = None, ca_file: Path | None = None) -> dict:
    job: dict = {"job_name": name, "scheme": scheme,
                 "static_configs": [{"targets": targets}]}
    if token_file is not None:
        job["authorization"] = {"type": "Bearer", "credentials_file": str(token_file)}
    if scheme == "https":
        job["tls_config"] = ({"ca_file": str(ca_file)} if ca_file
                             else {"insecure_skip_verify": True})
    return job


def config(cluster: LocalCluster, token_file: Path) -> dict:
    """prometheus.yml: a job per component, named as clusterloader2's stack names them
    where it has one (apiserver, etcd, kube-scheduler, kube-controller-manager)."""
    state = cluster.state
    p = state.ports
    ca = cluster.dir / "pki" / "ca.crt"
    host = "127.0.0.1"
    jobs = [
        _job("apiserver", [f"{host}:{p['apiserver']}"], scheme="https",
             token_file=token_file, ca_file=ca),
        _job("etcd", [f"{host}:{p['etcd']}"]),
        _job("kube-scheduler", [f"{host}:{p['scheduler']}"], scheme="https",
             token_file=token_file),
        _job("kube-controller-manager", [f"{host}:{p['controller-manager']}"],
             scheme="https", token_file=token_file),
    ]
    hollow = state.proc("hollow")
    if hollow is not None and p.get("hollow-metrics"):
        count = _processes(hollow.argv)
        jobs.append(_job("pykubemark-fleet", [f"{host}:{p['hollow-metrics'] + k}"
                                              for k in range(count)]))
    if "metrics-server" in state.addons:
        jobs.append(_job("metrics-server", [f"{host}:{p['metrics-server']}"],
                         scheme="https", token_file=token_file))
    if "coredns" in state.addons:
        jobs.append(_job("coredns", [f"{host}:{p['coredns-metrics']}"]))
    return {"global": {"scrape_interval": SCRAPE_INTERVAL,
                       "evaluation_interval": SCRAPE_INTERVAL,
                       "external_labels": {"cluster": state.name}},
            "scrape_configs": jobs}


def _processes(argv: list[str]) -> int:
    try:
        return int(argv[argv.index("--processes") + 1])
    except (ValueError, IndexError):
        return 1


def url(cluster: LocalCluster) -> str | None:
    value = cluster.state.options.get("prometheus")
    return value if isinstance(value, str) else None


def start(cluster: LocalCluster, progress=lambda _m: None) -> str:  # type: ignore[no-untyped-def]
    """Start Prometheus for the cluster; its URL (also in the state, for `status`)."""
    from pykubemark.cluster.control_plane import wait_until

    binary = ensure_installed(progress)
    directory = cluster.dir / "prometheus"
    directory.mkdir(mode=0o700, exist_ok=True)
    token_file = write_atomic(directory / "token", cluster.token("admin"), mode=0o600)
    config_file = write_atomic(directory / "prometheus.yml",
                               yaml.safe_dump(config(cluster, token_file), sort_keys=False))
    port = ports.free_ports(1)[0]
    cluster.state.ports["prometheus"] = port
    address = f"http://127.0.0.1:{port}"
    progress(f"starting prometheus at {address}")
    proc = cluster._launch("prometheus", [
        str(binary), f"--config.file={config_file}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=7d",
        f"--web.console.templates={directory}", f"--web.console.libraries={directory}",
    ], port=port, health_url=f"{address}/-/ready")
    wait_until("prometheus /-/ready", lambda: ready(address), proc, 60)
    cluster.state.options["prometheus"] = address
    cluster.state.save()
    return address


def ready(address: str) -> bool:
    status, _body = health.get(f"{address}/-/ready")
    return status == 200
