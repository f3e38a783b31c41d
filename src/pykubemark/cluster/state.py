"""What `up` leaves on disk for `status` and `down`: one directory per cluster name.

The state file records every child process with its start time, so `down` can stop
exactly what `up` started — never a stranger that reused the pid.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import psutil

from pykubemark.errors import UserError
from pykubemark.files import write_atomic
from pykubemark.paths import state_home

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")


class Proc(msgspec.Struct):
    name: str
    pid: int
    create_time: float
    argv: list[str]
    log: str
    port: int | None = None
    health_url: str | None = None
    #: Times `pykubemark restart` started it again.
    restarts: int = 0

    def process(self) -> psutil.Process | None:
        """The live process, if it is still the one we started."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 1.0:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None

    def alive(self) -> bool:
        return self.process() is not None


class NodeNetwork(msgspec.Struct):
    """The host's side of a cluster's real nodes (cluster/netns.py): a bridge holding the
    first address of a /24 whose other addresses are the nodes'."""

    bridge: str
    subnet: str
    gateway: str


class HollowNetwork(msgspec.Struct):
    """Where a local cluster's hollow nodes have their addresses (cluster/hollow_net.py):
    the host's end of a veth, the /16 routed through it, and once made, the network
    namespace in which that /16 is local."""

    veth: str
    cidr: str
    netns: str | None = None


class RealNode(msgspec.Struct):
    """One real node (cluster/real_node.py) and what was made for it. A field is set
    only once its thing exists, so `down` undoes exactly what was made, after a crash
    too, and never a namesake that was there before."""

    name: str
    index: int
    directory: str
    address: str
    pod_cidr: str
    #: Network namespace (/run/netns/NAME); None: the host's network (`up --real-node`).
    netns: str | None = None
    #: The host's end of the node's veth pair, on the cluster's bridge.
    veth: str | None = None
    #: The node's cgroup (cgroupfs path, in every hierarchy): its agents and its pods.
    cgroup: str | None = None
    #: In the host's network: the CNI bridge its pods hang on.
    cni_bridge: str | None = None
    #: The CNI network name (its cached results in /var/lib/cni are removed by `down`).
    cni_network: str | None = None


class ClusterState(msgspec.Struct):
    name: str
    directory: str
    server: str
    kubeconfig: str
    ports: dict[str, int] = {}
    processes: list[Proc] = []
    options: dict[str, str | int | bool | None] = {}
    network: NodeNetwork | None = None
    real_nodes: list[RealNode] = []
    hollow_network: HollowNetwork | None = None
    #: Addons started beside the control plane (cluster/addons): name -> version.
    addons: dict[str, str] = {}

    @property
    def path(self) -> Path:
        return Path(self.directory)

    def save(self) -> None:
        write_atomic(self.path / "state.json", msgspec.json.format(msgspec.json.encode(self)),
                     mode=0o600)

    def proc(self, name: str) -> Proc | None:
        return next((p for p in self.processes if p.name == name), None)

    def running(self) -> list[Proc]:
        return [p for p in self.processes if p.alive()]


#: Words Go's YAML 1.1 reader takes for booleans: a kubeconfig naming the cluster `y`
#: makes the controller-manager exit at start.
YAML_BOOLEANS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false"})


def validate_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise UserError(
            f"cluster name '{name}' is not valid: use 1-40 lowercase letters, digits and '-'"
        )
    if name in YAML_BOOLEANS:
        raise UserError(f"cluster name '{name}' reads as a boolean in a kubeconfig: "
                        "choose another")
    return name


def clusters_dir() -> Path:
    return state_home() / "clusters"


def cluster_dir(name: str) -> Path:
    return clusters_dir() / validate_name(name)


def load(name: str) -> ClusterState:
    path = cluster_dir(name) / "state.json"
    if not path.is_file():
        known = ", ".join(all_names()) or "none"
        raise UserError(f"no cluster named '{name}' (known: {known})")
    try:
        return msgspec.json.decode(path.read_bytes(), type=ClusterState)
    except msgspec.DecodeError as exc:
        raise UserError(f"state of cluster '{name}' at {path} is unreadable: {exc}") from None


def all_names() -> list[str]:
    base = clusters_dir()
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / "state.json").is_file())
