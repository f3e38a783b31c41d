"""Real nodes for a local cluster: the release's kubelet and kube-proxy on Debian's
containerd, runc and CNI plugins, several on one machine, each isolated from the others.

`up --real-nodes N` and `real-nodes add` run nodes NAME-node-I, each with
- its own network namespace, address, pod range and routes (cluster/netns.py), and the
  apiserver at 127.0.0.1:PORT inside it (cluster/forwarder.py);
- its own containerd (root, state, sockets, CNI config under nodes/I of the state dir,
  started inside the namespace), its own cgroup (cluster/cgroups.py) as the kubelet's
  cgroupRoot, and its own kubelet root directory;
- an identity of its own by TLS bootstrap: the kubelet asks for its client certificate
  through the CSR API with the cluster's ``kubelet-bootstrap`` token, and the
  controller-manager approves and signs it (cluster/node_bootstrap.py), as for hollow
  nodes; it serves its API on its namespace's address with a self-signed certificate;
- its own kube-proxy, in iptables mode (the default on Linux, and what Debian's
  iptables, an nf_tables backend, serves; the nftables mode would need the `nft` tool),
  as ``system:kube-proxy``.
Pods run real containers: the pause image is compiled from the release's pause.c and a
busybox image is packed from Debian's busybox-static (both cached; no registry), and
``--load-image`` archives are imported into every node.

`up --real-node` is the older single node, NAME-node, in the host's network namespace
(no kube-proxy there: it would rewrite the host's iptables): `deploy`'s shards run on it
with host networking and reach a target apiserver on the host's loopback.

Everything made is recorded in the cluster's state before or as it is made (state.py
`RealNode`), so `down` — also after a crash or a half-done `up` — undoes exactly that:
processes and containers (by cgroup), mounts under the state directory, cgroups,
namespaces, veths, the bridge, the CNI results and shim sockets left in /run and
/var/lib/cni.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import yaml

from pykubemark import interrupts
from pykubemark.cluster import cgroups, forwarder, health, netns, ports, processes
from pykubemark.cluster.control_plane import SERVICE_CIDR, LocalCluster, wait_until
from pykubemark.cluster.state import ClusterState, Proc, RealNode
from pykubemark.errors import UserError
from pykubemark.files import write_atomic
from pykubemark.kube.nodes import is_ready
from pykubemark.paths import cache_home
from pykubemark.provision import Binaries

PACKAGES = ("containerd", "runc", "containernetworking-plugins", "gcc", "libc6-dev",
            "busybox-static", "iptables")
CNI_BIN = Path("/usr/lib/cni")
PAUSE_IMAGE = "localhost/pykubemark-pause:3.4"
BUSYBOX_IMAGE = "localhost/pykubemark-busybox:1"
BUSYBOX = Path("/bin/busybox")
#: The host-network node's pods (`up --real-node`), on a CNI bridge of the host.
HOST_POD_CIDR = "10.250.0.0/24"
#: A cluster DNS address, as every real cluster has (nothing answers there: no pod here
#: resolves names); without one a kubelet posts a MissingClusterDNS event per pod.
CLUSTER_DNS = "10.0.0.10"
FORWARDER = "apiserver-forwarder"
SHIM_SOCKETS = Path("/run/containerd/s")
CNI_RESULTS = Path("/var/lib/cni/results")
LOG_LINKS = Path("/var/log/containers")


def _ensure_packages(progress: Callable[[str], None]) -> None:
    probes = (("containerd", "containerd"), ("runc", "runc"), ("gcc", "gcc"),
              ("iptables", "iptables"))
    missing = [p for p, probe in probes if shutil.which(probe) is None]
    if not (CNI_BIN / "bridge").is_file():
        missing.append("containernetworking-plugins")
    if not BUSYBOX.is_file():
        missing.append("busybox-static")
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise UserError(f"real nodes need {', '.join(missing)}: run as root on Debian "
                        "(apt-get installs them)")
    progress(f"apt-get install {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"],
                 ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise UserError(f"{' '.join(argv[:2])} failed: "
                            f"{(result.stderr or result.stdout).strip().splitlines()[-1:]}")


# -- images --------------------------------------------------------------------------

def _images_dir() -> Path:
    directory = cache_home() / "images"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def pause_archive(pause_c: Path) -> Path:
    """The pause image, compiled from the release's build/pause/linux/pause.c (cached by
    the source's digest)."""
    from pykubemark.image.build import pack_layer, write_archive

    out = _images_dir() / f"pause-{_digest(pause_c)}.tar"
    if out.is_file():
        return out
    with tempfile.TemporaryDirectory(prefix="pykubemark-pause-") as tmp:
        work = Path(tmp)
        (work / "root").mkdir()
        result = subprocess.run(["gcc", "-Os", "-Wall", "-Werror", "-static",
                                 "-DVERSION=v3.4-pykubemark", "-o", str(work / "root" / "pause"),
                                 str(pause_c)], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise UserError(f"compiling {pause_c} failed: {result.stderr.strip()[-300:]}")
        layer = pack_layer(work / "root", work / "layer.tar.gz")
        (work / "oci").mkdir()
        write_archive(work / "pause.tar", [layer], work / "oci", name=PAUSE_IMAGE,
                      config={"Entrypoint": ["/pause"], "User": "65535:65535"},
                      history=["gcc -static build/pause/linux/pause.c"])
        os.replace(work / "pause.tar", out)
    return out


def busybox_archive() -> Path:
    """``localhost/pykubemark-busybox:1``: Debian's static busybox with a link per
    applet in /bin (sh, httpd, wget, ...), for pods that do something real."""
    from pykubemark.image.build import pack_layer, write_archive

    out = _images_dir() / f"busybox-{_digest(BUSYBOX)}.tar"
    if out.is_file():
        return out
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    with tempfile.TemporaryDirectory(prefix="pykubemark-busybox-") as tmp:
        work = Path(tmp)
        root = work / "root"
        for sub in ("bin", "etc", "tmp", "var/www", "root"):
            (root / sub).mkdir(parents=True)
        (root / "tmp").chmod(0o1777)
        shutil.copy2(BUSYBOX, root / "bin" / "busybox")
        for applet in applets:
            if applet != "busybox":
                (root / "bin" / applet).symlink_to("busybox")
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (root / "etc" / "group").write_text("root:x:0:\n")
        layer = pack_layer(root, work / "layer.tar.gz")
        (work / "oci").mkdir()
        write_archive(work / "busybox.tar", [layer], work / "oci", name=BUSYBOX_IMAGE,
                      config={"Cmd": ["sh"], "Env": ["PATH=/bin"]},
                      history=["Debian busybox-static"])
        os.replace(work / "busybox.tar", out)
    return out


def _ctr(sock: Path, *args: str, timeout: float = 300) -> str:
    result = subprocess.run(["ctr", "--address", str(sock), "-n", "k8s.io", *args],
                            capture_output=True, text=True, check=False, timeout=timeout)
    if result.returncode != 0:
        raise UserError(f"ctr {' '.join(args)}: {result.stderr.strip()[-300:]}")
    return result.stdout


def _socket(node: RealNode) -> Path:
    return Path(node.directory) / "containerd" / "containerd.sock"


def load_image(cluster: LocalCluster, archive: Path) -> int:
    """Import an image archive into every real node of the cluster; how many."""
    if not archive.is_file():
        raise UserError(f"image archive {archive} does not exist")
    nodes = [n for n in cluster.state.real_nodes if _socket(n).exists()]
    if not nodes and cluster.state.options.get("real_node"):  # a state from before nodes/
        legacy = cluster.dir / "containerd" / "containerd.sock"
        _ctr(legacy, "images", "import", "--all-platforms", str(archive))
        return 1
    for node in nodes:
        _ctr(_socket(node), "images", "import", "--all-platforms", str(archive))
    return len(nodes)


# -- configuration -------------------------------------------------------------------

def _containerd_config(d: Path) -> str:
    return f"""version = 2
root = "{d / 'root'}"
state = "{d / 'state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{d / 'containerd.sock'}"
[ttrpc]
  address = "{d / 'containerd.sock.ttrpc'}"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # the node's own loopback when it has a namespace
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # pods' network namespaces are mounted under the state directory, not /run/netns
  netns_mounts_under_state_dir = true
  # The kubelet asks for negative oom_score_adj (-998 for the pause container); in a
  # container or VM without CAP_SYS_RESOURCE runc fails on it ("can't get final child's
  # PID"): never ask for less than containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{d / 'net.d'}"
"""


def _cni_config(network: str, bridge: str, pod_cidr: str, ipam_dir: Path) -> str:
    return json.dumps({
        "cniVersion": "0.4.0", "name": network, "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_cidr}]],
                      "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(ipam_dir)}},
            {"type": "loopback"}]})


def _kubelet_config(cluster: LocalCluster, node: RealNode, binaries: Binaries,
                    ports: tuple[int, int]) -> dict:
    d = Path(node.directory)
    ca = str(cluster.dir / "pki" / "ca.crt")
    write_atomic(d / "resolv.conf", "# pykubemark: real nodes have no DNS\n")
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": node.address, "port": ports[0], "readOnlyPort": 0,
        "healthzBindAddress": node.address, "healthzPort": ports[1],
        # the apiserver calls it as kube-apiserver-kubelet-client (system:masters)
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": ca}},
        "authorization": {"mode": "Webhook"},
        # containerd runs runc with cgroupfs (SystemdCgroup = false): the same here.
        "cgroupDriver": "cgroupfs", "cgroupRoot": node.cgroup, "cgroupsPerQOS": True,
        "failSwapOn": False,
        "clusterDomain": "cluster.local", "clusterDNS": [CLUSTER_DNS],
        "resolvConf": str(d / "resolv.conf"),
        # a shared build machine: never evict for its disk or memory
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "maxPods": 110, "serializeImagePulls": False,
        "containerRuntimeEndpoint": f"unix://{_socket(node)}",
        # Since 1.35 a kubelet refuses cgroup v1 hosts unless told (KEP-5573); these
        # machines mount v1.
        **({"failCgroupV1": False} if binaries.release.minor_version >= (1, 31) else {}),
        # the pods' logs in the node's directory (removed with it), not the host's
        # /var/log/pods; the kubelet refuses a path that is not ASCII
        **({"podLogsDir": str(_pod_logs(node))}
           if binaries.release.minor_version >= (1, 29) and str(_pod_logs(node)).isascii()
           else {}),
    }


def _pod_logs(node: RealNode) -> Path:
    return Path(os.path.normpath(Path(node.directory) / "pod-logs"))


def _remove_log_links(node: RealNode) -> None:
    """The kubelet's links in /var/log/containers (a fixed path) to this node's pod logs,
    which go with its directory."""
    prefix = str(_pod_logs(node)) + "/"
    for link in LOG_LINKS.glob("*.log") if LOG_LINKS.is_dir() else ():
        with contextlib.suppress(OSError):
            if link.is_symlink() and os.readlink(link).startswith(prefix):
                link.unlink()


def _kube_proxy_config(cluster: LocalCluster, node: RealNode) -> dict:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(cluster.kubeconfig_for("hollow-proxy"))},
        "hostnameOverride": node.name, "mode": "iptables",
        "clusterCIDR": netns.CLUSTER_CIDR, "detectLocalMode": "ClusterCIDR",
        "bindAddress": node.address,
        "healthzBindAddress": f"{node.address}:10256",
        "metricsBindAddress": f"{node.address}:10249",
        # conntrack's table size is the host's to set, not a namespace's
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
    }


# -- start ---------------------------------------------------------------------------

def _record(cluster: LocalCluster, node: RealNode, **fields: object) -> None:
    for key, value in fields.items():
        setattr(node, key, value)
    cluster.state.save()


def _prepare(cluster: LocalCluster, index: int, host_network: bool) -> RealNode:
    """The node's record, namespace, veth, cgroup and files (nothing runs yet)."""
    state = cluster.state
    name = f"{state.name}-node" if host_network else f"{state.name}-node-{index}"
    d = cluster.dir / "nodes" / str(index)
    if host_network:
        address, pod_cidr = "127.0.0.1", HOST_POD_CIDR
    else:
        assert state.network is not None
        address, pod_cidr = netns.node_address(state.network, index), netns.pod_cidr(index)
    node = RealNode(name=name, index=index, directory=str(d), address=address,
                    pod_cidr=pod_cidr)
    with interrupts.critical():
        state.real_nodes.append(node)
        state.save()
    if not host_network:
        assert state.network is not None
        namespace = netns.namespace_name(state.name, index)
        netns.refuse_taken(namespace)
        # Recorded before they are made, as the cgroup below: a crash between the two
        # left a namespace `down` did not know of. Both names are this cluster's alone.
        with interrupts.critical():
            _record(cluster, node, netns=namespace)
            netns.add_namespace(namespace)
        veth = netns.veth_name(state.network, index)
        with interrupts.critical():
            _record(cluster, node, veth=veth)
            netns.add_veth(state.network, namespace, veth)
        netns.configure_node(state.network, namespace, veth, address, SERVICE_CIDR)
    # Recorded first: the name is this cluster's alone, and a half-made tree is ours.
    _record(cluster, node, cgroup=f"/pkm-{state.name}-{'node' if host_network else index}",
            cni_network=f"pkm-{state.name}-{index}")
    assert node.cgroup is not None
    try:
        cgroups.create(f"{node.cgroup}/agents")
    except OSError as exc:
        raise UserError(f"cannot create cgroup {node.cgroup}: {exc}") from None
    cd = d / "containerd"
    (cd / "net.d").mkdir(parents=True, exist_ok=True)
    bridge = "cni0"
    if host_network:  # the host's interfaces: a name of this cluster's own
        bridge = f"pkm{int(hashlib.sha256(str(d).encode()).hexdigest(), 16) % 10**8}"
        _record(cluster, node, cni_bridge=bridge)
    write_atomic(cd / "config.toml", _containerd_config(cd))
    assert node.cni_network is not None
    write_atomic(cd / "net.d" / "10-pykubemark.conflist",
                 _cni_config(node.cni_network, bridge, pod_cidr, d / "cni-ipam"))
    return node


def _in_node(node: RealNode, argv: list[str]) -> list[str]:
    """argv run in the node's cgroup and, if it has one, its network namespace."""
    assert node.cgroup is not None
    inner = [*netns.enter(node.netns), *argv] if node.netns else argv
    return cgroups.join_argv(f"{node.cgroup}/agents", inner)


def _proc_name(node: RealNode, component: str) -> str:
    return component if node.netns is None else f"node-{node.index}-{component}"


def _ensure_forwarder(cluster: LocalCluster) -> None:
    """The apiserver at 127.0.0.1:PORT in every node's namespace (cluster/forwarder.py):
    started with the first node, told of new ones with SIGHUP."""
    state = cluster.state
    wanted = [str(netns.NETNS_DIR / n.netns) for n in state.real_nodes if n.netns]
    port = state.ports["apiserver"]
    config = cluster.dir / "forwarder.json"
    forwarder.write_config(config, port=port, target_port=port, netns=wanted)
    proc = state.proc(FORWARDER)
    live = proc.process() if proc else None
    if live is None:
        proc = cluster.add_process(FORWARDER, [sys.executable, "-m",
                                               "pykubemark.cluster.forwarder", str(config)])
    else:
        live.send_signal(signal.SIGHUP)
    wait_until("the apiserver forwarder to listen in every node's namespace",
               lambda: set(wanted) <= set(forwarder.serving(config)), proc, 30)


def _route_all(cluster: LocalCluster) -> None:
    """Every namespace gets a route to every other node's pod range."""
    nodes = [n for n in cluster.state.real_nodes if n.netns]
    for node in nodes:
        for other in nodes:
            if other is not node:
                assert node.netns is not None
                netns.add_pod_route(node.netns, other.pod_cidr, other.address)


def _node_ready(cluster: LocalCluster, node: str) -> bool:
    status, body = health.get(f"{cluster.state.server}/api/v1/nodes/{node}",
                              token=cluster.token("admin"), ca_cert=cluster.dir / "pki" / "ca.crt")
    return status == 200 and is_ready(json.loads(body))


def _set_pod_cidr(cluster: LocalCluster, node: RealNode) -> None:
    """Record the node's pod range on its Node, as the node-IPAM controller would."""
    from pykubemark.kube.blocking import call
    from pykubemark.kube.client import ApiError
    from pykubemark.kube.config import server_config

    config = server_config(cluster.state.server, token=cluster.token("admin"),
                           ca_cert=cluster.dir / "pki" / "ca.crt")
    with contextlib.suppress(ApiError, OSError):  # informative only
        call(config, "PATCH", f"/api/v1/nodes/{node.name}",
             body={"spec": {"podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr]}},
             content_type="application/merge-patch+json", timeout=30)


def _start_agents(cluster: LocalCluster, binaries: Binaries, nodes: list[RealNode],
                  archives: list[Path], progress: Callable[[str], None]) -> None:
    assert binaries.kubelet is not None and binaries.kube_proxy is not None
    containerds = []
    for node in nodes:
        cd = Path(node.directory) / "containerd"
        containerds.append(cluster.add_process(_proc_name(node, "containerd"), _in_node(
            node, ["containerd", "--config", str(cd / "config.toml")])))
    for node, proc in zip(nodes, containerds, strict=True):
        wait_until(f"containerd of {node.name}", _socket(node).exists, proc, 60)
        for archive in archives:
            progress(f"{node.name}: importing {archive.name}")
            _ctr(_socket(node), "images", "import", "--all-platforms", str(archive))
    kubelets: list[Proc] = []
    for node in nodes:
        d = Path(node.directory)
        host = node.netns is None
        kubelet_ports = tuple(ports.free_ports(2)) if host else (10250, 10248)
        write_atomic(d / "kubelet-config.yaml", yaml.safe_dump(
            _kubelet_config(cluster, node, binaries, kubelet_ports)))  # type: ignore[arg-type]
        health_url = f"http://{node.address}:{kubelet_ports[1]}/healthz"
        kubelets.append(cluster.add_process(_proc_name(node, "kubelet"), _in_node(node, [
            str(binaries.kubelet), f"--config={d / 'kubelet-config.yaml'}",
            f"--bootstrap-kubeconfig={cluster.kubeconfig_for('kubelet-bootstrap')}",
            f"--kubeconfig={d / 'kubelet.kubeconfig'}",
            *(["--container-runtime=remote",
               f"--container-runtime-endpoint=unix://{_socket(node)}",
               f"--pod-infra-container-image={PAUSE_IMAGE}"]
              if binaries.release.minor_version < (1, 27) else []),
            f"--root-dir={d / 'kubelet'}", f"--cert-dir={d / 'kubelet' / 'pki'}",
            f"--hostname-override={node.name}",
            # a loopback --node-ip is refused: the host-network node reports the
            # machine's address but listens on 127.0.0.1 only (address in its config)
            *([] if host else [f"--node-ip={node.address}"]),
            "--v=1",
        ]), health_url=health_url))
        if not host:
            write_atomic(d / "kube-proxy-config.yaml",
                         yaml.safe_dump(_kube_proxy_config(cluster, node)))
            cluster.add_process(_proc_name(node, "kube-proxy"), _in_node(node, [
                str(binaries.kube_proxy), f"--config={d / 'kube-proxy-config.yaml'}", "--v=1",
            ]))
    progress(f"waiting for {len(nodes)} real node(s) to be Ready")
    deadline = 120 + 30 * len(nodes)
    for node, proc in zip(nodes, kubelets, strict=True):
        wait_until(f"node {node.name} Ready", lambda n=node.name: _node_ready(cluster, n), proc,
                   deadline)
        if node.netns:
            _set_pod_cidr(cluster, node)


def start_real_nodes(cluster: LocalCluster, binaries: Binaries, count: int, *,
                     images: tuple[Path, ...] = (), host_network: bool = False,
                     progress: Callable[[str], None] = lambda _msg: None) -> list[str]:
    """Start ``count`` more real nodes (see the module doc); return their names once all
    are Ready. On failure or Ctrl-C what this call made is undone, then it raises."""
    _ensure_packages(progress)
    for what, path in (("a kubelet", binaries.kubelet), ("a kube-proxy", binaries.kube_proxy)):
        if path is None:
            raise UserError(f"real nodes need {what} beside {binaries.kube_apiserver}")
    pause_c = binaries.pause_source
    if pause_c is None:
        raise UserError("real nodes need the release's build/pause/linux/pause.c (kept "
                        "with a release built by `pykubemark provision`)")
    for archive in images:
        if not archive.is_file():
            raise UserError(f"image archive {archive} does not exist")
    state = cluster.state
    if host_network and state.real_nodes:
        raise UserError(f"cluster '{state.name}' has real nodes already")
    if any(n.netns is None for n in state.real_nodes) or state.options.get("real_node"):
        raise UserError(f"cluster '{state.name}' has a real node in the host's network "
                        "(up --real-node): real nodes with namespaces do not join it")
    first = max((n.index for n in state.real_nodes), default=-1) + 1
    if first + count > netns.MAX_NODES:
        raise UserError(f"a cluster has at most {netns.MAX_NODES} real nodes")
    progress("building the pause and busybox images")
    archives = [pause_archive(pause_c), busybox_archive(), *images]
    before = {n.name for n in state.real_nodes}
    made_network = False
    new: list[RealNode] = []
    try:
        if not host_network and state.network is None:
            with interrupts.critical():
                state.network = netns.claim_network()
                state.save()
            made_network = True
            netns.configure_bridge(state.network)
        for index in range(first, first + count):
            progress(f"setting up real node {index}")
            _prepare(cluster, index, host_network)
            new.append(state.real_nodes[-1])
        if host_network:
            state.options["real_node"] = new[0].name
            state.save()
        else:
            _route_all(cluster)
            _ensure_forwarder(cluster)
        _start_agents(cluster, binaries, new, archives, progress)
    except BaseException:
        with interrupts.cleaning_up():
            ours = [n for n in state.real_nodes if n.name not in before]
            names = {_proc_name(n, c) for n in ours for c in ("containerd", "kubelet",
                                                              "kube-proxy")}
            procs = [p for p in state.processes if p.name in names]
            if made_network:
                procs += [p for p in state.processes if p.name == FORWARDER]
            processes.stop(procs)
            state.processes = [p for p in state.processes if p not in procs]
            state.options.pop("real_node", None)
            state.save()
            with contextlib.suppress(UserError):
                teardown(cluster, ours, keep_network=not made_network)
                if not made_network:
                    _ensure_forwarder(cluster)
        raise
    return [n.name for n in new]


# -- stop ----------------------------------------------------------------------------

def _kill_shims(sock: Path) -> int:
    """Kill the shims of this containerd and their containers (they outlive it, in
    their own process groups); the number of processes killed."""
    victims: list[psutil.Process] = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if "containerd-shim" in " ".join(cmdline[:1]) and str(sock) in cmdline:
            with contextlib.suppress(psutil.Error):
                victims += [*proc.children(recursive=True), proc]
    for proc in victims:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(victims, timeout=10)
    return len(victims)


def _unmount_under(directory: Path) -> None:
    prefix = str(directory) + "/"
    for _ in range(3):
        with open("/proc/self/mountinfo") as handle:
            mounts = [line.split()[4] for line in handle]
        ours = [m for m in mounts if m.startswith(prefix)]
        if not ours:
            return
        for mount in sorted(ours, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)


def _remove_runtime_leftovers(sock: Path, state_dir: Path, cni_network: str | None) -> None:
    """What killed shims leave outside the state directory: their sockets, which
    containerd 1.6 puts in /run/containerd/s named sha256(ADDRESS/NAMESPACE/ID), and the
    CNI plugins' cached results of the pods (/var/lib/cni/results/NETWORK-ID-IFNAME)."""
    tasks = state_dir / "io.containerd.runtime.v2.task"
    ids = []
    for namespace in tasks.iterdir() if tasks.is_dir() else ():
        for task in namespace.iterdir() if namespace.is_dir() else ():
            ids.append(task.name)
            digest = hashlib.sha256(f"{sock}/{namespace.name}/{task.name}".encode()).hexdigest()
            (SHIM_SOCKETS / digest).unlink(missing_ok=True)
    if CNI_RESULTS.is_dir():
        patterns = [f"*-{task}-*" for task in ids] + ([f"{cni_network}-*"] if cni_network else [])
        for pattern in patterns:
            for result in CNI_RESULTS.glob(pattern):
                result.unlink(missing_ok=True)


def stop_containers(directory: Path) -> int:
    """A cluster whose state predates per-node directories: its one containerd's shims
    and the mounts under its directory."""
    killed = _kill_shims(directory / "containerd" / "containerd.sock")
    _unmount_under(directory)
    return killed


def _undo(cluster: LocalCluster, node: RealNode) -> list[str]:
    """Undo what was made for one node whose agents are stopped; what could not be."""
    problems = []
    d = Path(node.directory)
    sock = _socket(node)
    _kill_shims(sock)
    if node.cgroup:
        stuck = cgroups.remove(node.cgroup)
        if stuck:
            problems.append(f"cgroup {stuck[0]} cannot be removed")
        else:
            _record(cluster, node, cgroup=None)
    _unmount_under(d)
    _remove_runtime_leftovers(sock, d / "containerd" / "state", node.cni_network)
    _remove_log_links(node)
    for field, undo in (("veth", netns.delete_link), ("netns", netns.delete_namespace),
                        ("cni_bridge", netns.delete_link)):
        value = getattr(node, field)
        if value:
            try:
                undo(value)
                _record(cluster, node, **{field: None})
            except UserError as exc:
                problems.append(str(exc))
    return problems


def teardown(cluster: LocalCluster, nodes: list[RealNode] | None = None, *,
             keep_network: bool = False) -> None:
    """Undo what was made for ``nodes`` (default: all, and then the cluster's bridge);
    their processes must be stopped. Safe to repeat; a `UserError` names what is left."""
    state = cluster.state
    if nodes is None and not state.real_nodes and state.options.get("real_node"):
        stop_containers(cluster.dir)
    problems: list[str] = []
    for node in list(state.real_nodes if nodes is None else nodes):
        left = _undo(cluster, node)
        problems += left
        if not left:
            state.real_nodes.remove(node)
            state.save()
    if not keep_network and state.network is not None and not state.real_nodes:
        try:
            netns.delete_link(state.network.bridge)
            state.network = None
            state.save()
        except UserError as exc:
            problems.append(str(exc))
    if problems:
        raise UserError(f"cluster '{state.name}': {problems[0]}"
                        + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))


# -- status --------------------------------------------------------------------------

def usage(state: ClusterState, interval: float = 1.0) -> list[dict[str, object]]:
    """Per real node: its agents' (kubelet, containerd and its shims, kube-proxy) and its
    containers' resident memory and CPU, found by the node's cgroup; CPU both as the
    share of a core over ``interval`` seconds and in seconds since they started."""
    groups: list[tuple[RealNode, list[psutil.Process], list[psutil.Process]]] = []
    for node in state.real_nodes:
        if not node.cgroup:
            continue
        agent_pids = cgroups.pids(f"{node.cgroup}/agents")
        pod_pids = cgroups.pids(node.cgroup) - agent_pids
        groups.append((node, _procs(agent_pids), _procs(pod_pids)))
    everyone = [p for _, agents, pods in groups for p in (*agents, *pods)]
    for proc in everyone:
        with contextlib.suppress(psutil.Error):
            proc.cpu_percent(None)
    if everyone:
        time.sleep(interval)
    rows = []
    for node, agents, pods in groups:
        rows.append({"node": node.name, "address": node.address,
                     "netns": node.netns or "(host)", "runtime": str(_socket(node)),
                     "agents": len(agents), **_sum(agents, "agents"),
                     "containers": len(pods), **_sum(pods, "containers")})
    return rows


def _procs(pids: set[int]) -> list[psutil.Process]:
    found = []
    for pid in sorted(pids):
        with contextlib.suppress(psutil.Error):
            found.append(psutil.Process(pid))
    return found


def _sum(procs: list[psutil.Process], prefix: str) -> dict[str, float]:
    rss = cpu = seconds = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            rss += proc.memory_info().rss
            cpu += proc.cpu_percent(None)
            times = proc.cpu_times()
            seconds += times.user + times.system
    return {f"{prefix}_rss_mib": rss / 2**20, f"{prefix}_cpu_percent": cpu,
            f"{prefix}_cpu_seconds": seconds}
