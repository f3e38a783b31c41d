"""pykubemark's own hollow nodes (``hollow/``) as an engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pykubemark.cluster.hollow import HollowArgs, start_hollow
from pykubemark.engines.base import (
    HollowOptions,
    NodeOptions,
    Progress,
    register_rate,
    stop_recorded,
)

if TYPE_CHECKING:
    from pykubemark.cluster.control_plane import LocalCluster
    from pykubemark.provision.binaries import Binaries


class PykubemarkEngine:
    name = "pykubemark"
    title = "hollow nodes"
    default_register_rate = 50.0

    def check(self, nodes: NodeOptions) -> None:
        # hollow.launch brings the fleet's code (aiohttp, protobuf): only when nodes start
        from pykubemark.hollow.launch import check_node_addresses, node_profile

        profile = node_profile(nodes)
        if nodes.kubelet_api is not False and nodes.count:
            check_node_addresses(profile, nodes.count)

    def check_runtime(self, binaries: Binaries, nodes: NodeOptions) -> None:
        """The nodes are this Python: nothing more to find."""

    def start(self, cluster: LocalCluster, binaries: Binaries, nodes: NodeOptions,
              progress: Progress) -> None:
        start_hollow(cluster, HollowArgs(
            nodes=nodes.count, prefix=nodes.prefix, fidelity=nodes.fidelity,
            processes=nodes.processes, profile=nodes.profile_file, events=nodes.events,
            endpoint_slices=nodes.endpoint_slices,
            register_rate=register_rate(self, nodes.register_rate),
            # `up` made the cluster, so it can let every node bootstrap its own identity
            node_credentials="shared" if nodes.node_credentials == "shared" else "bootstrap",
            transport=nodes.transport, content_type=nodes.content_type,
            kubelet_api=nodes.kubelet_api is not False), progress)

    def stop(self, cluster: LocalCluster, nodes: NodeOptions) -> list[str]:
        return stop_recorded(cluster, {"hollow"})

    def node_names(self, nodes: NodeOptions) -> list[str]:
        return nodes.names

    def run_foreground(self, options: HollowOptions, say: Progress) -> None:
        from pykubemark.hollow.launch import run_fleet_foreground

        run_fleet_foreground(options, say)
