"""`diff`: what a container changed in its image, read from its overlay's upper layer: A added, C changed, D deleted.

overlayfs writes every change to the upper directory: a new or modified file is there
whole, a deleted one is a whiteout (a 0/0 character device), as the kernel's
Documentation/filesystems/overlayfs.rst says. A path in the upper layer that an image
layer also has was changed (C, as are the directories holding a change); one no layer has
was added (A). Each layer is asked inside itself (fs.inroot): a layer's symlinks lead to
nothing on the host.
"""

from __future__ import annotations

import os
import stat

from minibox import config
from minibox.fs import inroot
from minibox.model import ContainerRecord


def changes(rec: ContainerRecord) -> list[tuple[str, str]]:
    upper = str(config.paths().container(rec.id) / "upper")
    roots = []
    for layer in rec.image_layers:
        try:
            roots.append(inroot.Root(layer))
        except OSError:
            continue
    try:
        out = []
        for top, dirs, files in os.walk(upper):
            for name in dirs + files:
                path = os.path.join(top, name)
                rel = "/" + os.path.relpath(path, upper)
                st = os.lstat(path)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    out.append(("D", rel))
                else:
                    out.append(("C" if any(_has(r, rel) for r in roots) else "A", rel))
        return sorted(out, key=lambda c: c[1])
    finally:
        for r in roots:
            r.close()


def _has(root: inroot.Root, rel: str) -> bool:
    try:
        os.close(root.open(rel.lstrip("/"), os.O_PATH | os.O_NOFOLLOW))
    except OSError:
        return False
    return True
