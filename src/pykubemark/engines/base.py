"""What every engine is asked to do, and the options it is asked with.

`up --nodes` and `hollow` take the same node options whatever plays the nodes; an
engine refuses those it cannot honour rather than ignoring them, because a run that
silently differs from what was asked would be measured as if it did not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pykubemark.cluster import processes
from pykubemark.errors import UserError

if TYPE_CHECKING:
    from pykubemark.cluster.control_plane import LocalCluster
    from pykubemark.provision.binaries import Binaries

#: Where an engine reports how far it got ("hollow nodes Ready: 3/5").
Progress = Callable[[str], None]


@dataclass(frozen=True)
class NodeOptions:
    """The nodes asked for: the options `up --nodes` and `hollow` share. ``None`` means
    not given, so that the engine's or the release profile's default applies and an
    engine can tell an option given from one left alone."""

    count: int
    prefix: str = "hollow"
    fidelity: str | None = None
    processes: int = 1
    profile_file: Path | None = None
    events: bool | None = None
    endpoint_slices: bool = False
    transport: str = "h2"
    content_type: str = "protobuf"
    register_rate: float | None = None
    node_credentials: str = "auto"
    kubelet_api: bool | None = None

    @property
    def names(self) -> list[str]:
        """PREFIX-0, PREFIX-1, ...: hollow nodes of every engine so far are named so,
        which `chaos --nodes`, `deploy`'s shards and the measurements rely on."""
        return [f"{self.prefix}-{i}" for i in range(self.count)]


@dataclass(frozen=True)
class HollowOptions:
    """`pykubemark hollow`: nodes against any cluster, in the foreground."""

    nodes: NodeOptions
    engine: str = "pykubemark"
    kubeconfig: Path | None = None
    proxy_kubeconfig: Path | None = None
    cert_dir: Path | None = None
    delete_nodes_on_exit: bool = False
    supervise: bool = False
    restarts_file: Path | None = None
    #: `deploy`'s shard pods: the StatefulSet pod whose ordinal picks the shard.
    pod_name: str | None = None
    total_nodes: int | None = None
    heartbeat_file: Path | None = None
    chaos_file: Path | None = None
    kubelet_port: int = 0
    kubelet_address: str | None = None
    kubelet_client_ca: Path | None = None
    kubelet_anonymous: bool = False
    kubelet_netns: str | None = None
    node_ip_base: str | None = None
    watch_kubeconfig: Path | None = None
    kubelet_version: str | None = None
    #: Serve the fleet's own metrics (hollow/metrics.py) on 127.0.0.1:PORT (+ shard).
    metrics_port: int | None = None
    verbose: bool = False


class Engine(Protocol):
    """Plays nodes, on a local cluster (`up --engine`) or any cluster (`hollow --engine`)."""

    #: The name `--engine` takes.
    name: str
    #: What `up` calls the nodes it started: "cluster x is up: ... with 5 {title}".
    title: str
    #: Nodes started per second unless --register-rate says otherwise.
    default_register_rate: float

    def check(self, nodes: NodeOptions) -> None:
        """Refuse, before anything starts or is built, what this engine cannot do."""

    def check_runtime(self, binaries: Binaries, nodes: NodeOptions) -> None:
        """Refuse, once the release's binaries are known, what this machine lacks."""

    def start(self, cluster: LocalCluster, binaries: Binaries, nodes: NodeOptions,
              progress: Progress) -> None:
        """Start the nodes on a local cluster, every process recorded in its state (so
        that `down` stops them); return once all are Ready."""

    def stop(self, cluster: LocalCluster, nodes: NodeOptions) -> list[str]:
        """Stop the nodes `start` started; the names of the processes stopped."""

    def node_names(self, nodes: NodeOptions) -> list[str]:
        """The names of the Node objects the nodes register."""

    def run_foreground(self, options: HollowOptions, say: Progress) -> None:
        """`pykubemark hollow --engine NAME`: the nodes against the kubeconfig's cluster
        until Ctrl-C or SIGTERM; nothing of them outlives the call."""


def register_rate(engine: Engine, asked: float | None) -> float:
    if asked is None:
        return engine.default_register_rate
    if asked < 0:
        raise UserError(f"--register-rate {asked:g} is negative")
    return asked


def refuse_options(engine: str, owner: str = "pykubemark", **given: object) -> None:
    """Options that shape another engine's nodes mean nothing to this one; silently
    ignoring one would make a calibration run differ from what was asked."""
    flags = [name for name, value in given.items() if value]
    if flags:
        listed = ", ".join("--" + name.replace("_", "-") for name in flags)
        raise UserError(f"{listed} apply to the {owner} engine only, not --engine {engine}")


def stop_recorded(cluster: LocalCluster, names: set[str]) -> list[str]:
    """Stop the cluster's live processes of these names (an engine's, after `start`)."""
    live = [proc for proc in cluster.state.running() if proc.name in names]
    processes.stop(live)
    return [proc.name for proc in live]
