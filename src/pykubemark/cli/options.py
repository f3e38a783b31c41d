"""Options more than one command takes, declared once so that they read the same."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from pykubemark.engines import ENGINES, NodeOptions

F = TypeVar("F", bound=Callable[..., Any])

bin_dir_option = click.option(
    "--bin-dir", type=click.Path(path_type=Path), default=None,
    help="Directory with kube-apiserver, kube-scheduler, kube-controller-manager "
    "(and optionally etcd, kubemark, kubectl). Default: $PYKUBEMARK_BIN_DIR, PATH, the cache.",
)
release_option = click.option(
    "--kubernetes-version", default=None, metavar="X.Y.Z",
    help="Kubernetes release to build from Go modules and run (default: "
    "$PYKUBEMARK_KUBERNETES_VERSION, else the newest release when this pykubemark was made).")
name_option = click.option("--name", default="pykubemark", show_default=True,
                           help="Cluster name; several can run at once.")

_NODE_OPTIONS = [
    click.option("--prefix", default="hollow", show_default=True,
                 help="Node names are PREFIX-0, PREFIX-1, ...; one prefix per shard."),
    click.option("--fidelity", type=click.Choice(["kubelet", "lite"]), default=None,
                 help="kubelet (default): every node watches like kubelet/kube-proxy; lite: "
                 "one shared watch per resource for the process."),
    click.option("--processes", type=click.IntRange(1, 64), default=1, show_default=True,
                 help="Processes (event loops) to spread the nodes over."),
    click.option("--profile", "profile_file", type=click.Path(path_type=Path), default=None,
                 help="YAML file on top of the release's hollow-node profile, its sections "
                 "merged (see hollow/profile.py; a runtime's time: profiles/runtime/)."),
    click.option("--events/--no-events", default=None,
                 help="Post the events a real kubelet posts "
                 "(Pulled, Created, Started, Killing; for failures Pulling, Failed, "
                 "BackOff, Unhealthy)."),
    click.option("--endpoint-slices", is_flag=True,
                 help="kube-proxy 1.21+: watch EndpointSlices instead of Endpoints."),
    click.option("--transport", type=click.Choice(["h2", "h1"]), default="h2",
                 show_default=True,
                 help="h2: one HTTP/2 connection per hollow kubelet and per hollow proxy, "
                 "as client-go; h1: a shared HTTP/1.1 pool, one connection per watch "
                 "(7 or more per node)."),
    click.option("--content-type", type=click.Choice(["protobuf", "json"]),
                 default="protobuf", show_default=True,
                 help="protobuf: gets, lists, watches, creates and updates of built-in "
                 "types in the apiserver's protobuf, as the kubelet; json: everything JSON "
                 "(for servers or types without protobuf). Patches are JSON either way."),
    click.option("--register-rate", type=float, default=None,
                 help="Nodes started per second (0: all at once). Default: 50, "
                 "or 2 for the kubemark engine (a Go kubelet's start-up costs ~1 CPU-s)."),
    click.option("--engine", type=click.Choice(list(ENGINES)), default="pykubemark",
                 show_default=True,
                 help="pykubemark's hollow nodes, the Go kubemark's (the reference: "
                 "kubelet + proxy processes per node; needs root and unshare), or KWOK "
                 "(one controller patching every node's and pod's status; built once)."),
    click.option("--node-credentials", type=click.Choice(["auto", "bootstrap", "shared"]),
                 default="auto", show_default=True,
                 help="bootstrap: each kubelet gets its own certificate (system:node:NAME) "
                 "through the CSR API, as the kubelet's TLS bootstrap; shared: every kubelet "
                 "uses the kubeconfig's user; auto: bootstrap when that user may create CSRs "
                 "but not Nodes (a bootstrap token), else shared. `up`: auto = bootstrap."),
    click.option("--kubelet-api/--no-kubelet-api", "kubelet_api", default=None,
                 help="Serve the kubelet's own HTTPS API (logs, /stats/summary, /pods, "
                 "/metrics/resource; exec refused) for every node, each on its own "
                 "loopback address (default: on)."),
]
#: The parameters of `_NODE_OPTIONS` that make a `NodeOptions` (--engine stays apart).
_NODE_FIELDS = ("prefix", "fidelity", "processes", "profile_file", "events",
                "endpoint_slices", "transport", "content_type", "register_rate",
                "node_credentials", "kubelet_api")


def node_options(func: F) -> F:
    """The node options of `hollow` and `up --nodes`: the command gets them as one
    `NodeOptions` ``nodes`` (its own --nodes the count) and the engine's name ``engine``."""

    @functools.wraps(func)
    def collect(*args: Any, **kwargs: Any) -> Any:
        fields = {name: kwargs.pop(name) for name in _NODE_FIELDS}
        kwargs["nodes"] = NodeOptions(count=kwargs["nodes"], **fields)
        return func(*args, **kwargs)

    for option in reversed(_NODE_OPTIONS):
        collect = option(collect)
    return collect  # type: ignore[return-value]
