"""`pykubemark image`: the container image `deploy` runs."""

from __future__ import annotations

from pathlib import Path

import click

from pykubemark.cli.options import name_option
from pykubemark.cli.output import console, err_console
from pykubemark.cluster.lifecycle import import_image
from pykubemark.image.build import build_image, project_dir


@click.group()
def image() -> None:
    """The pykubemark container image (for `deploy`)."""


@image.command(name="build")
@click.option("--out", type=click.Path(path_type=Path), default=Path("pykubemark-image.tar"),
              show_default=True, help="OCI archive to write.")
def image_build(out: Path) -> None:
    """Build the image from a Debian minbase root (debootstrap) and the pinned wheels.

    Needs root and only Debian's and PyPI's registries. The root is cached in
    ~/.cache/pykubemark/image. Load the archive with `ctr -n k8s.io images import FILE`,
    `podman load -i FILE` or `docker load -i FILE`; it is named
    localhost/pykubemark:VERSION, the default image of `deploy`.
    """
    with err_console.status("building the image") as shown:
        built = build_image(project_dir(), out, shown.update)
    layers = ", ".join(f"{layer['bytes'] / 2**20:.1f} MiB" for layer in built["layers"])
    console.print(f"{built['name']}: {out} ({built['archive_bytes'] / 2**20:.1f} MiB; "
                  f"gzipped layers {layers})")


@image.command(name="load")
@name_option
@click.argument("archive", type=click.Path(path_type=Path))
def image_load(name: str, archive: Path) -> None:
    """Import an image archive into every real node of a local cluster."""
    count = import_image(name, archive)
    console.print(f"imported {archive} into {count} real node(s) of cluster '{name}'")
