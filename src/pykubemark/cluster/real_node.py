"""One real node for a local cluster (`up --real-node`): a kubelet built from the same
Kubernetes source, on Debian's containerd, runc and CNI plugins.

It gives the machine a base cluster that runs real containers, for `deploy` and its
tests, without any registry: the pause image is compiled from the Kubernetes tree
(build/pause) and imported, and other images come from archives (`--load-image`).
Everything is private to the cluster's state directory (containerd's root, state and
socket, the kubelet's root) and listens on loopback only; `down` stops it all, including
the containers, which containerd's shims would otherwise keep running.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import yaml

from pykubemark.cluster import health, ports
from pykubemark.cluster.control_plane import LocalCluster, _wait
from pykubemark.cluster.pki import issue_node_cert
from pykubemark.errors import UserError
from pykubemark.files import write_atomic
from pykubemark.provision import Binaries

PACKAGES = ("containerd", "runc", "containernetworking-plugins", "gcc", "libc6-dev")
CNI_BIN = Path("/usr/lib/cni")
PAUSE_IMAGE = "localhost/pykubemark-pause:3.4"
POD_CIDR = "10.250.0.0/24"
CLUSTER_DNS = "10.0.0.10"  # private, used by the bridge plugin only for non-host pods


def _ensure_packages(progress: Callable[[str], None]) -> None:
    missing = [p for p, probe in (("containerd", "containerd"), ("runc", "runc"),
                                  ("gcc", "gcc")) if shutil.which(probe) is None]
    if not (CNI_BIN / "bridge").is_file():
        missing.append("containernetworking-plugins")
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise UserError(f"--real-node needs {', '.join(missing)}: run as root on Debian "
                        "(apt-get installs them)")
    progress(f"apt-get install {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"],
                 ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise UserError(f"{' '.join(argv[:2])} failed: "
                            f"{(result.stderr or result.stdout).strip().splitlines()[-1:]}")


def pause_archive(pause_c: Path, out: Path) -> Path:
    """The pause image, compiled from the release's build/pause/linux/pause.c."""
    from pykubemark.image.build import pack_layer, write_archive

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
        write_archive(out, [layer], work / "oci", name=PAUSE_IMAGE,
                      config={"Entrypoint": ["/pause"], "User": "65535:65535"},
                      history=["gcc -static build/pause/linux/pause.c"])
    return out


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
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
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


def _cni_config(bridge: str) -> str:
    return json.dumps({
        "cniVersion": "0.4.0", "name": "pykubemark", "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "loopback"}]})


def ctr(cluster: LocalCluster, *args: str, timeout: float = 300) -> str:
    sock = cluster.dir / "containerd" / "containerd.sock"
    result = subprocess.run(["ctr", "--address", str(sock), "-n", "k8s.io", *args],
                            capture_output=True, text=True, check=False, timeout=timeout)
    if result.returncode != 0:
        raise UserError(f"ctr {' '.join(args)}: {result.stderr.strip()[-300:]}")
    return result.stdout


def load_image(cluster: LocalCluster, archive: Path) -> None:
    if not archive.is_file():
        raise UserError(f"image archive {archive} does not exist")
    ctr(cluster, "images", "import", "--all-platforms", str(archive))


def start_real_node(cluster: LocalCluster, binaries: Binaries, images: tuple[Path, ...] = (),
                    progress: Callable[[str], None] = lambda _msg: None) -> str:
    """Start containerd and a kubelet for node NAME-node; return once it is Ready."""
    _ensure_packages(progress)
    kubelet = binaries.kubelet
    if kubelet is None:
        raise UserError(f"--real-node needs a kubelet beside {binaries.kube_apiserver}")
    pause_c = binaries.pause_source
    if pause_c is None:
        raise UserError("--real-node needs the release's build/pause/linux/pause.c (kept "
                        "with a release built by `pykubemark provision`)")
    release = binaries.release
    d = cluster.dir
    node = f"{cluster.state.name}-node"
    cd = d / "containerd"
    (cd / "net.d").mkdir(parents=True, exist_ok=True)
    bridge = f"pkm{abs(hash(str(d))) % 10**8}"[:15]
    write_atomic(cd / "config.toml", _containerd_config(cd))
    write_atomic(cd / "net.d" / "10-pykubemark.conflist", _cni_config(bridge))
    cluster.state.options["real_node"] = node
    cluster.state.save()
    containerd = cluster.add_process("containerd", ["containerd", "--config",
                                                    str(cd / "config.toml")])
    _wait("containerd", lambda: (cd / "containerd.sock").exists(), containerd, 60)
    progress("importing the pause image")
    load_image(cluster, pause_archive(pause_c, d / "pause-image.tar"))
    for archive in images:
        progress(f"importing {archive}")
        load_image(cluster, archive)

    cert, key = issue_node_cert(d / "pki", f"system:node:{node}", "system:nodes", "kubelet")
    kubeconfig = d / "kubelet.kubeconfig"
    write_atomic(kubeconfig, yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "node",
        "clusters": [{"name": "local", "cluster": {
            "server": cluster.state.server, "certificate-authority": str(d / "pki" / "ca.crt")}}],
        "users": [{"name": "node", "user": {"client-certificate": str(cert),
                                            "client-key": str(key)}}],
        "contexts": [{"name": "node", "context": {"cluster": "local", "user": "node"}}]}),
        mode=0o600)
    kubelet_port, healthz_port = ports.free_ports(2)
    cluster.state.ports.update({"kubelet": kubelet_port, "kubelet-healthz": healthz_port})
    write_atomic(d / "kubelet-config.yaml", yaml.safe_dump({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": "127.0.0.1", "port": kubelet_port, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": healthz_port,
        "tlsCertFile": str(cert), "tlsPrivateKeyFile": str(key),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(d / "pki" / "ca.crt")}},
        "authorization": {"mode": "AlwaysAllow"},
        # containerd runs runc with cgroupfs (SystemdCgroup = false): the same here.
        "cgroupDriver": "cgroupfs", "failSwapOn": False,
        # A cluster DNS address, as every real cluster has (no server answers there: no
        # pod resolves names here); without one each pod gets a MissingClusterDNS event.
        "clusterDomain": "cluster.local", "clusterDNS": [CLUSTER_DNS],
        "resolvConf": "/etc/resolv.conf",
        # a shared build machine: never evict the shards for its disk or memory
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "maxPods": 110, "serializeImagePulls": False,
        "containerRuntimeEndpoint": f"unix://{cd / 'containerd.sock'}",
        # Since 1.35 a kubelet refuses cgroup v1 hosts unless told (KEP-5573); these
        # machines mount v1.
        **({"failCgroupV1": False} if release.minor_version >= (1, 31) else {}),
    }))
    proc = cluster.add_process("kubelet", [
        str(kubelet), f"--config={d / 'kubelet-config.yaml'}", f"--kubeconfig={kubeconfig}",
        *(["--container-runtime=remote",
           f"--container-runtime-endpoint=unix://{cd / 'containerd.sock'}",
           f"--pod-infra-container-image={PAUSE_IMAGE}"]
          if release.minor_version < (1, 27) else []),
        f"--root-dir={d / 'kubelet'}", f"--cert-dir={d / 'kubelet' / 'pki'}",
        # kubelet 1.20 refuses a loopback --node-ip: the Node reports the machine's
        # address, but the kubelet listens on 127.0.0.1 only (address in its config).
        f"--hostname-override={node}",
        "--v=1",
    ], health_url=f"http://127.0.0.1:{healthz_port}/healthz")
    progress(f"waiting for node {node} to be Ready")
    _wait(f"node {node} Ready", lambda: _node_ready(cluster, node), proc, 180)
    return node


def start_real_nodes(cluster: LocalCluster, binaries: Binaries, count: int, *,
                     progress: Callable[[str], None] = lambda _msg: None) -> list[str]:
    """``count`` real nodes; their names."""
    if count != 1:
        raise UserError("one real node per local cluster for now")
    return [start_real_node(cluster, binaries, (), progress)]


def _node_ready(cluster: LocalCluster, node: str) -> bool:
    status, body = health.get(f"{cluster.state.server}/api/v1/nodes/{node}",
                              token=cluster.token("admin"), ca_cert=cluster.dir / "pki" / "ca.crt")
    if status != 200:
        return False
    conditions = json.loads(body).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def stop_containers(directory: Path) -> int:
    """Kill the containers of this cluster's containerd (its shims outlive it, in their
    own process groups) and unmount what they left; the number of processes killed."""
    sock = str(directory / "containerd" / "containerd.sock")
    victims: list[psutil.Process] = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if "containerd-shim" in " ".join(cmdline[:1]) and sock in cmdline:
            with contextlib.suppress(psutil.Error):
                victims += [*proc.children(recursive=True), proc]
    for proc in victims:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(victims, timeout=10)
    prefix = str(directory) + "/"
    with open("/proc/self/mountinfo") as handle:
        mounts = [line.split()[4] for line in handle]
    for mount in reversed(mounts):
        if mount.startswith(prefix):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
    time.sleep(0.1)
    return len(victims)
