"""The image verbs: images, image ls|import|rm."""

import sys
from typing import List

import typer

from minibox import lifecycle
from minibox.cli.app import app, image_app, say


@app.command(name="images")
def images_() -> None:
    """List images."""
    lifecycle.require_root()
    from minibox import images, present

    rows = [[i.name, present.ago(i.created), present.human_size(i.size)] for i in images.list_images()]
    say(present.table(["IMAGE", "CREATED", "SIZE"], rows))

@image_app.command(name="ls")
def image_ls() -> None:
    """List images."""
    images_()

@image_app.command(name="import")
def image_import(
    source: str = typer.Argument(..., help="a rootfs directory or tar archive (`docker export` output)"),
    name: str = typer.Argument(..., help="name for the image"),
) -> None:
    """Import a root filesystem as an image."""
    lifecycle.require_root()
    from minibox import images, present

    img = images.import_image(source, name)
    say(f"{img.name} ({present.human_size(img.size)})")
    if img.device_nodes:
        print(f"minibox: note: {img.device_nodes} device node(s) in this image will not open in a container: its "
              "root is mounted nodev, and the device cgroup allows only /dev/null, zero, full, random, urandom, "
              "tty, ptmx and pts", file=sys.stderr)

@image_app.command(name="rm")
def image_rm(names: List[str] = typer.Argument(..., help="image names")) -> None:
    """Remove images no container uses."""
    lifecycle.require_root()
    from minibox import images

    for n in names:
        images.remove_image(n)
        say(f"Deleted: {images.normalize(n)}")
