"""`minibox commit`: a container's changes (its overlay's upper directory) as one more layer on its image, and a new image of them.

What a layer is, shown by making one: the upper directory holds every file the container
added or changed, and overlayfs's marks for what it deleted (a 0/0 character device per
deleted name, an `opaque` extended attribute on a directory that replaced one). In a
layer tar those become the OCI/Docker whiteouts: an empty `.wh.NAME` beside a deleted
name, and `.wh..wh..opq` inside a replaced directory. A running container is frozen
while its upper directory is read (as Docker pauses it), and thawed on every way out.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tarfile
import tempfile
import time

from minibox import config
from minibox.errors import MiniboxError, NotFound
from minibox.model import RUNNING, ContainerRecord, ContainerState

OPAQUE = "trusted.overlay.opaque"


def commit(rec: ContainerRecord, state: ContainerState, name: str, changes: list[str], message: str = "",
           author: str = "", pause: bool = True):
    """The new image (store.Image), named `name` if given."""
    from minibox.image import ref as refs
    from minibox.image import store
    from minibox.image.config import apply_changes
    from minibox.runtime import cgroups

    base = store.get(rec.image_id or rec.spec.image)
    cfg = apply_changes(base.config, changes)  # bad input refused before anything is stored
    target = refs.normalize(name) if name else ""
    upper = config.paths().container(rec.id) / "upper"
    if not upper.is_dir():
        raise NotFound(f"container {rec.name} has no filesystem left to commit")
    tmpdir = config.paths().images / "tmp"
    tmpdir.mkdir(parents=True, exist_ok=True)
    dirs = cgroups.existing_dirs(config.cgroup_parent(), rec.id)
    with tempfile.TemporaryFile(dir=tmpdir) as layer:
        frozen = cgroups.held_frozen(dirs) if pause and state.status == RUNNING and dirs else None
        with frozen if frozen is not None else contextlib.nullcontext():
            write_layer(str(upper), layer)
        layer.seek(0)
        diff_id = store.add_layer(layer)
    doc = {"architecture": base.architecture, "os": base.os,
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "config": cfg.to_oci(),
           "rootfs": {"type": "layers", "diff_ids": [*base.layers, diff_id]},
           "history": [*_history(base), {"created_by": f"minibox commit {rec.name}", "comment": message,
                                         **({"author": author} if author else {})}],
           **({"author": author} if author else {})}
    return store.add_image(json.dumps(doc, sort_keys=True).encode(), [target] if target else [])


def write_layer(upper: str, out) -> None:
    """The upper directory as a layer tar on `out`, overlayfs's deletion marks as whiteouts."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(upper):
            dirnames.sort()
            rel = os.path.relpath(dirpath, upper)
            if rel != ".":
                tar.add(dirpath, arcname=rel, recursive=False)
                if _opaque(dirpath):
                    tar.addfile(_empty(os.path.join(rel, ".wh..wh..opq"), os.lstat(dirpath).st_mtime))
            for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                path = os.path.join(dirpath, name)
                arc = os.path.normpath(os.path.join(rel, name))
                st = os.lstat(path)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # overlayfs's mark of a deleted name
                    tar.addfile(_empty(os.path.join(os.path.dirname(arc), ".wh." + name), st.st_mtime))
                else:
                    tar.add(path, arcname=arc, recursive=False)


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _empty(name: str, mtime: float) -> tarfile.TarInfo:
    """A whiteout, dated as the mark it stands for: the same directory makes the same tar
    (a second `push` finds its layers there already)."""
    info = tarfile.TarInfo(name.removeprefix("./"))
    info.mtime = int(mtime)
    return info


def _history(base) -> list[dict]:
    from minibox.image import store as images

    try:
        doc = images.config_doc(base.id)
    except (OSError, MiniboxError):
        return []
    return [h for h in doc.get("history") or [] if isinstance(h, dict)]

