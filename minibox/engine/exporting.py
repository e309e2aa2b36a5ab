"""`minibox export`: a container's filesystem as one tar stream, its image's layers and its own writes as it sees them, without its volumes.

How: in a mount namespace of this command's own, its layers are stacked again as a
read-only overlay whose top lower layer is the container's upper directory, so
overlayfs itself applies the container's deletions (whiteouts) and replaced directories
(opaque ones), and the tree is read from there. Running or stopped alike: the
container's own mounts (/proc, volumes, /etc/hosts) are not in that overlay, as Docker's
export leaves volumes out. Nothing is written to the container.
"""

from __future__ import annotations

import os
import tarfile
import tempfile

from minibox import config
from minibox.errors import MiniboxError, NotFound
from minibox.model import ContainerRecord


def export(rec: ContainerRecord, out) -> None:
    """Write `rec`'s filesystem to the binary file `out` as a tar stream."""
    from minibox import linux
    from minibox.plan.steps import MS_NODEV, MS_PRIVATE, MS_RDONLY, MS_REC, Mount
    from minibox.runtime.applier import Applier

    cdir = config.paths().container(rec.id)
    upper = cdir / "upper"
    if not upper.is_dir():
        raise NotFound(f"container {rec.name} has no filesystem left to export")
    linux.unshare(linux.CLONE_NEWNS)  # this command's own: the mount goes when it exits
    Applier("/").apply(Mount("none", "/", flags=MS_REC | MS_PRIVATE))
    view = tempfile.mkdtemp(prefix=".export-", dir=cdir)
    try:
        lowers = ":".join([str(upper), *rec.image_layers])
        try:
            linux.mount("overlay", view, "overlay", MS_RDONLY | MS_NODEV, f"lowerdir={lowers}")
        except OSError as e:
            raise MiniboxError(f"cannot stack container {rec.name}'s layers to export them: {e.strerror}") from None
        try:
            with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for name in sorted(os.listdir(view)):
                    tar.add(os.path.join(view, name), arcname=name, recursive=True)
        finally:
            linux.umount2(view)
    finally:
        os.rmdir(view)
