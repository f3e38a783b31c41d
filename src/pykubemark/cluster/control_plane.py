"""A local Kubernetes control plane as child processes: `up`, `status`, `down`.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler run unmodified, each on
a free loopback port, with certificates, tokens, kubeconfigs and logs in the cluster's
state directory. Two names never share a port or a file, so clusters run side by side.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from pykubemark import interrupts
from pykubemark.cluster import health, ports, processes
from pykubemark.cluster.kubeconfig import write_kubeconfig
from pykubemark.cluster.node_bootstrap import (
    BOOTSTRAP_GROUP,
    BOOTSTRAP_USER,
    allow_node_bootstrap,
)
from pykubemark.cluster.pki import FRONT_PROXY_CLIENT, issue_client_cert, write_pki
from pykubemark.cluster.state import ClusterState, Proc, cluster_dir, load, validate_name
from pykubemark.errors import UserError
from pykubemark.files import write_atomic
from pykubemark.provision import Binaries
from pykubemark.provision.releases import Release

SERVICE_CIDR = "10.0.0.0/16"
#: The controller-manager's and scheduler's client budget. Their defaults (20/30 and
#: 50/100) would make them, not the scenario's --qps, set the pace of pod creation and
#: binding; clusterloader2's kubemark clusters raise them too.
COMPONENT_QPS = ("--kube-api-qps=100", "--kube-api-burst=200")


def sized_apiserver_flags(nodes: int, release: Release | None = None) -> list[str]:
    """The apiserver flags Kubernetes' own kubemark master sets for a cluster of this many
    nodes (test/kubemark/resources/start-kubemark-master.sh): in-flight limits raised at
    1000 and 3000 nodes and, on old releases that still take it (current ones size their
    watch caches themselves and refuse the flag), --target-ram-mb. Explicit --apiserver-arg flags
    come after these, so the last one of a name wins."""
    if nodes <= 0:
        return []
    flags = []
    if release is not None and release.minor_version < (1, 24):
        flags.append(f"--target-ram-mb={nodes * 60}")
    if nodes >= 3000:
        flags += ["--max-requests-inflight=3000", "--max-mutating-requests-inflight=1000"]
    elif nodes >= 1000:
        flags += ["--max-requests-inflight=1500", "--max-mutating-requests-inflight=500"]
    return flags


#: Users in the token file: (user, groups). Hollow kubelets join as real ones do, by TLS
#: bootstrap with the `kubelet-bootstrap` credential (each then is system:node:<name>);
#: hollow kube-proxies are `system:kube-proxy`, bound to system:node-proxier by default.
#: `hollow-kubelet` is the old shared identity, for `--node-credentials shared`.
USERS = {
    "admin": ("admin", "system:masters"),
    "scheduler": ("system:kube-scheduler", ""),
    "controller-manager": ("system:kube-controller-manager", ""),
    "kubelet-bootstrap": (BOOTSTRAP_USER, BOOTSTRAP_GROUP),
    "hollow-kubelet": ("pykubemark:hollow-kubelet", "system:masters,system:nodes"),
    "hollow-proxy": ("system:kube-proxy", ""),
    # The Go kubemark, run beside ours by the benchmarks: its kubelets get per-node
    # certificates (`node_kubeconfig`), go-kubelet is the old shared identity; its
    # proxies are bound to system:node-proxier like system:kube-proxy.
    "go-kubelet": ("kubemark:go-kubelet", "system:masters,system:nodes"),
    "go-proxy": ("kubemark:go-proxy", ""),
    # KWOK's controller (`--engine kwok`), bound to KWOK's own ClusterRole when it starts.
    "kwok-controller": ("kwok:controller", ""),
}
#: What `restart` accepts besides a component's own name.
ALIASES = {"apiserver": "kube-apiserver", "scheduler": "kube-scheduler",
           "controller-manager": "kube-controller-manager"}
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
"""
#: The same, with the bodies of status writes and events from nodes: what a release's
#: kubelet writes, for recording its profile (`benchmarks/fidelity.py --record`).
AUDIT_POLICY_BODIES = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Request
  userGroups: ["system:nodes"]
  verbs: ["patch", "update", "create"]
  resources:
  - {group: "", resources: ["pods/status", "nodes/status", "events"]}
- level: Metadata
"""


@dataclass
class UpOptions:
    name: str
    apiserver_port: int | None = None
    audit: bool = False
    #: With `audit`: also the bodies of node status writes (AUDIT_POLICY_BODIES).
    audit_bodies: bool = False
    etcd_tmpfs: bool = False
    apiserver_args: tuple[str, ...] = ()
    controller_manager_args: tuple[str, ...] = ()
    scheduler_args: tuple[str, ...] = ()
    #: Extra etcd flags, after pykubemark's own (etcd takes the last of a name).
    etcd_args: tuple[str, ...] = ()
    timeout: float = 120.0
    #: Nodes the control plane is sized for (`up --nodes`, or `--size`): see
    #: `sized_apiserver_flags`.
    size: int = 0


def wait_until(what: str, check: Callable[[], bool], proc: Proc | None,
               timeout: float) -> None:
    """Poll ``check`` until it holds; a one-line `UserError` if ``proc`` exits first (with
    its log's last lines) or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and not proc.alive():
            raise UserError(
                f"{proc.name} exited during start-up: {processes.last_lines(proc.log, 2)} "
                f"(log: {proc.log})"
            )
        time.sleep(0.25)
    where = f" (log: {proc.log})" if proc else ""
    raise UserError(f"timed out after {timeout:.0f}s waiting for {what}{where}")


class LocalCluster:
    """Start, inspect and stop one named local control plane."""

    def __init__(self, state: ClusterState) -> None:
        self.state = state

    @property
    def dir(self) -> Path:
        return self.state.path

    def token(self, user: str) -> str:
        return json.loads((self.dir / "tokens.json").read_text())[user]

    def kubeconfig_for(self, user: str) -> Path:
        return self.dir / f"{user}.kubeconfig"

    def node_kubeconfig(self, node: str) -> Path:
        """A kubeconfig for system:node:<node> with a certificate from the cluster CA,
        for kubelets that do not bootstrap through the CSR API (the Go kubemark's)."""
        pki = self.dir / "pki"
        cert, key = issue_client_cert(pki / "ca.crt", pki / "ca.key", f"system:node:{node}",
                                      ("system:nodes",))
        directory = self.dir / "node-kubeconfigs"
        directory.mkdir(mode=0o700, exist_ok=True)
        return write_kubeconfig(directory / f"{node}.kubeconfig", server=self.state.server,
                                ca_cert=pki / "ca.crt", user=f"system:node:{node}",
                                cluster=self.state.name, client_cert=cert, client_key=key)

    # -- lifecycle ---------------------------------------------------------------
    @classmethod
    def up(cls, options: UpOptions, binaries: Binaries, *,
           extra: Callable[[LocalCluster], None] | None = None) -> LocalCluster:
        name = validate_name(options.name)
        directory = cluster_dir(name)
        if (directory / "state.json").is_file():
            old = load(name)
            if old.running():
                raise UserError(
                    f"cluster '{name}' is already running (pykubemark down --name {name})"
                )
            # What a crashed `up` may have left outside the directory (real nodes'
            # namespaces, cgroups, mounts) is undone before the directory goes.
            cls(old).down()
            shutil.rmtree(directory)
        if options.apiserver_port is not None:
            ports.require_free(options.apiserver_port, "apiserver")
        wanted = ports.free_ports(
            5, taken={options.apiserver_port} if options.apiserver_port else None
        )
        port = dict(zip(["apiserver", "etcd", "etcd-peer", "scheduler", "controller-manager"],
                        wanted, strict=True))
        if options.apiserver_port is not None:
            port["apiserver"] = options.apiserver_port
        directory.mkdir(parents=True)
        directory.chmod(0o700)
        server = f"https://127.0.0.1:{port['apiserver']}"
        state = ClusterState(
            name=name, directory=str(directory), server=server,
            kubeconfig=str(directory / "kubeconfig"), ports=port,
            options={"audit": options.audit, "etcd_tmpfs": options.etcd_tmpfs},
        )
        cluster = cls(state)
        state.save()
        try:
            cluster._start(options, binaries)
            if extra is not None:
                extra(cluster)
        except BaseException:
            with interrupts.cleaning_up():
                cluster.down()
            raise
        return cluster

    def _write_credentials(self) -> dict[str, Path]:
        pki = write_pki(self.dir / "pki")
        cert, key = issue_client_cert(pki["ca_cert"], pki["ca_key"],
                                      "kube-apiserver-kubelet-client", ("system:masters",))
        pki["kubelet_client_cert"] = self.dir / "pki" / "apiserver-kubelet-client.crt"
        pki["kubelet_client_key"] = self.dir / "pki" / "apiserver-kubelet-client.key"
        write_atomic(pki["kubelet_client_cert"], cert)
        write_atomic(pki["kubelet_client_key"], key, mode=0o600)
        tokens = {user: secrets.token_hex(16) for user in USERS}
        lines = [f'{tokens[u]},{USERS[u][0]},{USERS[u][0]},"{USERS[u][1]}"' for u in USERS]
        write_atomic(self.dir / "tokens.csv", "\n".join(lines) + "\n", mode=0o600)
        write_atomic(self.dir / "tokens.json", json.dumps(tokens), mode=0o600)
        for user in USERS:
            target = self.dir / "kubeconfig" if user == "admin" else self.kubeconfig_for(user)
            write_kubeconfig(target, server=self.state.server, ca_cert=pki["ca_cert"],
                             user=USERS[user][0], token=tokens[user], cluster=self.state.name)
        return pki

    def _launch(self, name: str, argv: list[str], *, port: int, health_url: str) -> Proc:
        with interrupts.critical():  # never a child that `down` does not know of
            proc = processes.start(name, argv, self.dir / "logs" / f"{name}.log", port=port,
                                   health_url=health_url)
            self.state.processes.append(proc)
            self.state.save()
        return proc

    def _start(self, options: UpOptions, binaries: Binaries) -> None:
        release = binaries.release
        self.state.options["release"] = str(release)
        # where `real-nodes add` finds the same kubelet and kube-proxy
        self.state.options["bin_dir"] = str(binaries.kube_apiserver.parent)
        self.state.save()
        #: Before 1.24 the apiserver and the controllers served plain HTTP unless told not to.
        legacy = release.minor_version < (1, 24)
        pki = self._write_credentials()
        port = self.state.ports
        d = self.dir
        etcd_data = d / "etcd"
        if options.etcd_tmpfs:
            etcd_data = Path("/dev/shm") / f"pykubemark-{self.state.name}-etcd"
            shutil.rmtree(etcd_data, ignore_errors=True)
            self.state.options["etcd_data"] = str(etcd_data)
        etcd_url = f"http://127.0.0.1:{port['etcd']}"
        peer_url = f"http://127.0.0.1:{port['etcd-peer']}"
        etcd = self._launch("etcd", [
            str(binaries.etcd), "--name", "default", "--data-dir", str(etcd_data),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"default={peer_url}", "--quota-backend-bytes", str(8 << 30),
            *options.etcd_args,
        ], port=port["etcd"], health_url=f"{etcd_url}/health")
        wait_until("etcd to be healthy", lambda: health.healthy(etcd.health_url or ""), etcd,
              options.timeout)

        apiserver_argv = [
            str(binaries.kube_apiserver),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={port['apiserver']}",
            f"--tls-cert-file={pki['server_cert']}", f"--tls-private-key-file={pki['server_key']}",
            f"--client-ca-file={pki['ca_cert']}",
            f"--token-auth-file={d / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki['sa_pub']}",
            f"--service-account-signing-key-file={pki['sa_key']}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # kubectl logs/exec and the node proxy: the apiserver calls a kubelet as
            # kubeadm's kube-apiserver-kubelet-client, at the node's InternalIP first
            # (a hollow node's own loopback address; its Hostname resolves nowhere).
            f"--kubelet-client-certificate={pki['kubelet_client_cert']}",
            f"--kubelet-client-key={pki['kubelet_client_key']}",
            "--kubelet-preferred-address-types=InternalIP,Hostname,InternalDNS,ExternalDNS,"
            "ExternalIP",
            # The aggregation layer (kubeadm's flags): the apiserver proxies an
            # APIService's requests (metrics.k8s.io to the metrics-server addon) with the
            # front-proxy client certificate, to an endpoint of its Service (there is no
            # kube-proxy to route a ClusterIP).
            f"--requestheader-client-ca-file={pki['front_proxy_ca']}",
            f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki['front_proxy_client_cert']}",
            f"--proxy-client-key-file={pki['front_proxy_client_key']}",
            "--enable-aggregator-routing=true",
            # Loopback addresses may not be endpoints of the `kubernetes` service.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--profiling=true",
        ]
        if legacy:
            apiserver_argv.append("--insecure-port=0")
        if options.audit:
            write_atomic(d / "audit-policy.yaml",
                         AUDIT_POLICY_BODIES if options.audit_bodies else AUDIT_POLICY)
            apiserver_argv += [
                f"--audit-policy-file={d / 'audit-policy.yaml'}",
                f"--audit-log-path={d / 'logs' / 'audit.log'}",
                "--audit-log-format=json",
                "--audit-log-maxsize=2000",
            ]
        apiserver_argv += [*sized_apiserver_flags(options.size, release), *options.apiserver_args]
        apiserver = self._launch("kube-apiserver", apiserver_argv, port=port["apiserver"],
                                 health_url=f"{self.state.server}/readyz")
        admin_token = self.token("admin")
        wait_until("kube-apiserver /readyz",
              lambda: health.healthy(self.state.server + "/readyz", token=admin_token,
                                     ca_cert=pki["ca_cert"]),
              apiserver, options.timeout)
        allow_node_bootstrap(self.state.server, admin_token, pki["ca_cert"])

        cm = self._launch_controller("kube-controller-manager", binaries.kube_controller_manager,
                                     "controller-manager", legacy, [
            f"--cluster-name={self.state.name}",
            f"--service-account-private-key-file={pki['sa_key']}",
            f"--root-ca-file={pki['ca_cert']}",
            # Signs the hollow kubelets' client CSRs (TLS bootstrap), as in kubeadm.
            f"--cluster-signing-cert-file={pki['ca_cert']}",
            f"--cluster-signing-key-file={pki['ca_key']}",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            *COMPONENT_QPS, *options.controller_manager_args,
        ])
        sched = self._launch_controller("kube-scheduler", binaries.kube_scheduler, "scheduler",
                                        legacy, [*COMPONENT_QPS, *options.scheduler_args])
        for proc in (cm, sched):
            wait_until(f"{proc.name} /healthz",
                  lambda p=proc: health.healthy(p.health_url or ""), proc, options.timeout)
        wait_until("the default namespace to take pods", self.namespace_ready, cm,
                   options.timeout)
        if os.geteuid() == 0 and shutil.which("ip") is not None:
            # Addresses for hollow nodes' kubelet APIs that the node proxy accepts.
            from pykubemark.cluster import hollow_net

            hollow_net.create(self.state)

    def _launch_controller(self, name: str, binary: Path, user: str, legacy: bool,
                           extra: list[str]) -> Proc:
        """The scheduler and controller-manager: their own user's kubeconfig for API,
        authentication and authorization; secure port only; no leader election."""
        config = self.kubeconfig_for(user)
        port = self.state.ports[user]
        return self._launch(name, [
            str(binary), f"--kubeconfig={config}", f"--authentication-kubeconfig={config}",
            f"--authorization-kubeconfig={config}", "--bind-address=127.0.0.1",
            f"--secure-port={port}", *(["--port=0"] if legacy else []),
            "--leader-elect=false", *extra,
        ], port=port, health_url=f"https://127.0.0.1:{port}/healthz")

    def namespace_ready(self, namespace: str = "default") -> bool:
        """Whether the controllers have readied a namespace for pods: its default service
        account exists (the apiserver refuses pods without it) with, before 1.24, its token
        secret, and its ``kube-root-ca.crt`` ConfigMap, which every pod's projected token
        volume mounts (a kubelet waits for it)."""
        ca = self.dir / "pki" / "ca.crt"
        token = self.token("admin")
        base = f"{self.state.server}/api/v1/namespaces/{namespace}"
        status, body = health.get(f"{base}/serviceaccounts/default", token=token, ca_cert=ca)
        if status != 200:
            return False
        release = self.state.options.get("release")
        if release and Release.parse(str(release)).minor_version < (1, 24):
            return bool(json.loads(body).get("secrets"))
        status, _ = health.get(f"{base}/configmaps/kube-root-ca.crt", token=token, ca_cert=ca)
        return status == 200

    def add_process(self, name: str, argv: list[str], *, health_url: str | None = None,
                    port: int | None = None) -> Proc:
        """Run another child (e.g. a hollow fleet) that `down` stops with the rest."""
        with interrupts.critical():
            proc = processes.start(name, argv, self.dir / "logs" / f"{name}.log",
                                   health_url=health_url, port=port)
            self.state.processes.append(proc)
            self.state.save()
        return proc

    def restart(self, name: str, *, downtime: float = 0.0, kill: bool = True) -> Proc:
        """Stop one component (SIGKILL by default, as a crash would) and start it again
        with the same command line; for resilience tests and experiments."""
        name = ALIASES.get(name, name)
        old = self.state.proc(name)
        if old is None:
            known = ", ".join(p.name for p in self.state.processes)
            raise UserError(f"cluster '{self.state.name}' has no component '{name}' "
                            f"(it has: {known})")
        if self.state.options.get("stopped") or not self.state.running():
            raise UserError(f"cluster '{self.state.name}' is not running "
                            f"(pykubemark up --name {self.state.name})")
        live = old.process()
        if live is not None:
            if kill:
                live.kill()
            else:
                live.terminate()
            try:
                live.wait(30)
            except psutil.TimeoutExpired:
                raise UserError(f"{name} (pid {live.pid}) did not stop within 30 s of SIGTERM; "
                                f"try --signal kill") from None
        time.sleep(downtime)
        with interrupts.critical():
            proc = processes.start(name, old.argv, Path(old.log), port=old.port,
                                   health_url=old.health_url)
            proc.restarts = old.restarts + 1
            self.state.processes[self.state.processes.index(old)] = proc
            self.state.save()
        if proc.health_url:
            wait_until(f"{name} to be healthy again", lambda: self.healthy(proc), proc, 120)
        return proc

    def healthy(self, proc: Proc) -> bool:
        """Probe a component's health URL; the apiserver's needs the admin token."""
        url = proc.health_url or ""
        if url.startswith(self.state.server):
            return health.healthy(url, token=self.token("admin"),
                                  ca_cert=self.dir / "pki" / "ca.crt")
        return health.healthy(url)

    def down(self) -> list[str]:
        """Stop every process this cluster started, servers last; return their names."""
        live = self.state.running()
        processes.stop_in_waves(list(reversed(live)))
        if self.state.real_nodes or self.state.network or self.state.options.get("real_node"):
            from pykubemark.cluster.real_node import teardown

            teardown(self)
        if self.state.hollow_network is not None:
            from pykubemark.cluster import hollow_net

            hollow_net.teardown(self.state)
        etcd_data = self.state.options.get("etcd_data")
        if isinstance(etcd_data, str):
            shutil.rmtree(etcd_data, ignore_errors=True)
        self.state.options["stopped"] = True
        self.state.save()
        return [p.name for p in live]

    def status(self) -> list[dict[str, object]]:
        rows = []
        # A process gone from a cluster nobody stopped died (killed, or crashed: its log
        # says which).
        gone = "stopped" if self.state.options.get("stopped") else "died"
        for proc in self.state.processes:
            alive = proc.alive()
            if not alive:
                verdict = gone
            elif proc.health_url is None:
                verdict = "running"
            else:
                verdict = "healthy" if self.healthy(proc) else "unhealthy"
            rows.append({"component": proc.name, "pid": proc.pid if alive else None,
                         "port": proc.port, "health": verdict, "log": proc.log,
                         "restarts": proc.restarts + self.supervised_restarts(proc.name)})
        return rows

    def restarts_file(self, name: str) -> Path:
        """Where a supervising child (the hollow fleet) records the restarts of its own
        children: JSON with at least ``{"restarts": N}``."""
        return self.dir / f"{name}.restarts.json"

    def supervised_restarts(self, name: str) -> int:
        try:
            return int(json.loads(self.restarts_file(name).read_text()).get("restarts", 0))
        except (OSError, ValueError, AttributeError):
            return 0

    def left_behind(self) -> str:
        """One line for an interrupted command: what of this cluster still runs."""
        live = self.state.running()
        if not live:
            return "nothing"
        procs = ", ".join(f"{p.name} (pid {p.pid})" for p in live)
        return f"{procs} of cluster '{self.state.name}'; stop them with: " \
               f"pykubemark down --name {self.state.name}"

    @classmethod
    def load(cls, name: str) -> LocalCluster:
        return cls(load(name))


def python_argv(*args: str) -> list[str]:
    """argv that runs pykubemark with this interpreter, wherever it is installed."""
    return [sys.executable, "-m", "pykubemark", *args]
