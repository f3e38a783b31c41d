"""What the local-cluster commands do beyond parsing: `up`, `down`, `real-nodes add`,
`image load`, `kubectl`.

Bad input is refused before anything starts, so a mistake costs one line and leaves
nothing behind. Once processes start, Ctrl-C or SIGTERM stops what the command started
and says so; a second one leaves at once and names what is left (interrupts.py).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pykubemark.cluster.control_plane import LocalCluster, UpOptions
from pykubemark.cluster.real_node import load_image, start_real_nodes
from pykubemark.cluster.state import load
from pykubemark.engines import ENGINES, Engine, NodeOptions, register_rate
from pykubemark.errors import Interrupted, UserError
from pykubemark.interrupts import Guard
from pykubemark.provision import Binaries, ensure_binaries, requested_release
from pykubemark.provision.binaries import find_kubectl
from pykubemark.provision.releases import Release


class Shown(Protocol):
    def update(self, status: str) -> None: ...


#: A status line shown while a command waits, e.g. rich's ``Console.status``: entered
#: only once the checks passed (a build of the binaries shows its own).
Status = Callable[[str], AbstractContextManager[Shown]]


class _Silent:
    def update(self, status: str) -> None:
        pass


def silent(_message: str) -> AbstractContextManager[Shown]:
    return nullcontext(_Silent())


@dataclass
class UpRequest:
    """`pykubemark up`: a control plane, and the nodes to start with it."""

    cluster: UpOptions
    bin_dir: Path | None = None
    kubernetes_version: str | None = None
    engine: str = "pykubemark"
    nodes: NodeOptions = field(default_factory=lambda: NodeOptions(count=0))
    real_nodes: int = 0
    #: One real node in the host's network (a base cluster for `deploy`).
    real_node: bool = False
    load_images: tuple[Path, ...] = ()
    #: Addons to run beside the control plane (cluster/addons); None: the default ones.
    addons: tuple[str, ...] | None = None
    #: Debian's Prometheus beside it (cluster/prometheus.py), scraping all of it.
    prometheus: bool = False


@dataclass
class Started:
    cluster: LocalCluster
    binaries: Binaries
    engine: Engine


def up(request: UpRequest, status: Status = silent) -> Started:
    """Start the control plane and its nodes; on any failure or interrupt, stop all."""
    name = request.cluster.name
    engine = ENGINES[request.engine]
    nodes = dataclasses.replace(request.nodes,
                                register_rate=register_rate(engine, request.nodes.register_rate))
    release = requested_release(request.kubernetes_version, request.bin_dir)
    # Bad input fails before anything starts.
    engine.check(nodes)
    binaries = ensure_binaries(request.bin_dir, release=release)
    engine.check_runtime(binaries, nodes)
    if request.real_node and request.real_nodes:
        raise UserError("--real-node (one node in the host's network) and --real-nodes "
                        "exclude each other")
    if request.load_images and not (request.real_node or request.real_nodes):
        raise UserError("--load-image needs --real-node or --real-nodes")
    for archive in request.load_images:
        if not archive.is_file():
            raise UserError(f"--load-image {archive} does not exist")
    real = 1 if request.real_node else request.real_nodes
    from pykubemark.cluster import addons

    # Built (once) before anything starts: a failed build leaves no cluster.
    if request.prometheus:
        from pykubemark.cluster import prometheus

        prometheus.ensure_installed()
    prepared = addons.prepare(addons.DEFAULT_ADDONS if request.addons is None
                              else request.addons, binaries.release)

    def start_nodes(cluster: LocalCluster, shown: Shown) -> None:
        addons.start(cluster, prepared, shown.update)
        if real:
            start_real_nodes(cluster, binaries, real, images=request.load_images,
                             host_network=request.real_node, progress=shown.update)
        if nodes.count:
            engine.start(cluster, binaries, nodes, shown.update)
        if request.prometheus:
            from pykubemark.cluster import prometheus

            prometheus.start(cluster, shown.update)

    try:
        with interruptible(name), status(f"starting cluster '{name}'") as shown:
            cluster = LocalCluster.up(
                request.cluster, binaries,
                extra=(lambda c: start_nodes(c, shown))
                if nodes.count or real or prepared or request.prometheus else None)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; cluster '{name}' stopped, left running: "
                          f"{left_behind(name)}") from None
    return Started(cluster, binaries, engine)


def down(name: str, *, purge: bool = False) -> list[str]:
    """Stop every process of a cluster; the names of those that ran."""
    cluster = LocalCluster.load(name)
    stopped = cluster.down()
    if purge:
        shutil.rmtree(cluster.dir, ignore_errors=True)
    return stopped


def add_real_nodes(name: str, count: int, images: tuple[Path, ...] = (),
                   status: Status = silent) -> list[str]:
    """Real nodes for a running cluster, from the binaries it was started with; on
    failure or Ctrl-C the nodes made are undone and the cluster runs on."""
    cluster = LocalCluster.load(name)
    if cluster.state.options.get("stopped") or not cluster.state.running():
        raise UserError(f"cluster '{name}' is not running (pykubemark up --name {name})")
    release, bin_dir = (cluster.state.options.get(k) for k in ("release", "bin_dir"))
    binaries = ensure_binaries(Path(str(bin_dir)) if bin_dir else None,
                               release=Release.parse(str(release)) if release else None,
                               allow_build=False)
    try:
        with interruptible(name), status(f"adding real nodes to '{name}'") as shown:
            return start_real_nodes(cluster, binaries, count, images=images,
                                    progress=shown.update)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; the nodes being added to cluster '{name}' were "
                          "removed") from None


def import_image(name: str, archive: Path) -> int:
    """Import an image archive into every real node of a cluster; how many took it."""
    cluster = LocalCluster.load(name)
    has_nodes = cluster.state.real_nodes or cluster.state.options.get("real_node")
    if not has_nodes or not cluster.state.running():
        raise UserError(f"cluster '{name}' has no running real node (up --real-node(s))")
    return load_image(cluster, archive)


def kubectl_argv(name: str, args: tuple[str, ...]) -> list[str]:
    """kubectl with the cluster's kubeconfig, then ``args``."""
    state = load(name)
    binary = find_kubectl()
    if binary is None:
        raise UserError("no kubectl found (run `pykubemark provision`)")
    return [str(binary), "--kubeconfig", state.kubeconfig, *args]


def left_behind(name: str) -> str:
    try:
        return LocalCluster.load(name).left_behind()
    except UserError:
        return "nothing"


def interruptible(name: str) -> Guard:
    """Ctrl-C or SIGTERM stops what the command started; a second one leaves at once."""
    return Guard(lambda: left_behind(name))
