"""`pykubemark provision`: the Kubernetes binaries, found or built."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from pykubemark.cli.options import bin_dir_option, release_option
from pykubemark.cli.output import console
from pykubemark.provision import find_or_build, listed_releases


@click.command()
@bin_dir_option
@release_option
@click.option("--no-build", is_flag=True, help="Fail instead of building when nothing is found.")
@click.option("--list", "list_releases", is_flag=True,
              help="List the releases the Go module proxy serves and those built here.")
@click.option("--kwok", is_flag=True,
              help="Also build KWOK (for --engine kwok; $PYKUBEMARK_KWOK_VERSION, else the "
              "pinned release) with the Stages and CRD it applies.")
def provision(bin_dir: Path | None, kubernetes_version: str | None, no_build: bool,
              list_releases: bool, kwok: bool) -> None:
    """Build a Kubernetes release (and its etcd) from Go modules once, or check --bin-dir."""
    if list_releases:
        for release, marks in listed_releases():
            console.print(f"{release}" + (f"  ({', '.join(marks)})" if marks else ""))
        return
    found = find_or_build(bin_dir, kubernetes_version, allow_build=not no_build)
    table = Table(title=f"Kubernetes {found.release} (from {found.source})")
    table.add_column("binary")
    table.add_column("path")
    table.add_column("version")
    for name in ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager",
                 "kubelet", "kube-proxy", "kubemark", "kubectl"):
        path = found.path(name)
        table.add_row(name, str(path) if path else "-", found.versions.get(name, "-"))
    if kwok:
        from pykubemark.provision.kwok import ensure_kwok

        built = ensure_kwok(allow_build=not no_build)
        table.add_row("kwok", str(built.binary), built.version)
    console.print(table)
