"""The image store: import a rootfs (directory or `docker export`-style tarball), list, remove.

An image is a read-only directory tree, images/NAME/rootfs, used as the lower layer of
every container's overlay; minibox never writes into it. image.json beside it records
when it was imported and how big it is.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from minibox import config, store
from minibox.errors import Conflict, InvalidSpec, MiniboxError, NotFound

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Image:
    name: str
    created: float
    size: int

    @property
    def rootfs(self) -> Path:
        return config.paths().image(self.name) / "rootfs"


def normalize(name: str) -> str:
    """Users type `busybox` or `busybox:latest`; both are the image `busybox`."""
    return name[:-7] if name.endswith(":latest") else name


def validate_name(name: str) -> str:
    name = normalize(name)
    if not NAME_RE.match(name):
        raise InvalidSpec(f'invalid image name "{name}": use lower-case letters, digits, ".", "_" or "-", '
                          "starting with a letter or digit")
    return name


def get(name: str) -> Image:
    name = normalize(name)
    meta = config.paths().image(name) / "image.json"
    try:
        data = store.read_json(meta)
    except FileNotFoundError:
        known = ", ".join(i.name for i in list_images()) or "none yet"
        raise NotFound(f'unknown image "{name}" (images here: {known}; add one with '
                       "`minibox image import TARBALL|DIR NAME`)") from None
    return Image(name=name, created=data["created"], size=data["size"])


def list_images() -> list[Image]:
    d = config.paths().images
    if not d.is_dir():
        return []
    out = []
    for p in sorted(d.iterdir()):
        try:
            data = store.read_json(p / "image.json")
            out.append(Image(name=p.name, created=data["created"], size=data["size"]))
        except (FileNotFoundError, KeyError, ValueError):
            continue
    return out


def import_image(source: str, name: str) -> Image:
    name = validate_name(name)
    src = Path(source)
    if not src.exists():
        raise NotFound(f'nothing to import at "{source}": give a rootfs directory or a tar archive')
    import tarfile  # only import needs it, and it is slow to load

    if src.is_file() and not tarfile.is_tarfile(src):
        raise InvalidSpec(f'"{source}" is not a tar archive (or a directory): export one with '
                          "`docker export CTR > rootfs.tar` or `tar -C ROOTFS -cf rootfs.tar .`")
    final = config.paths().image(name)
    if final.exists():
        raise Conflict(f'image "{name}" already exists; remove it first with `minibox image rm {name}`')
    config.paths().images.mkdir(parents=True, exist_ok=True)
    tmp = config.paths().images / f".import-{name}-{os.getpid()}"
    rootfs = tmp / "rootfs"
    try:
        rootfs.mkdir(parents=True)
        if src.is_dir():
            cmd = ["cp", "-a", f"{src}/.", str(rootfs)]
        else:
            cmd = ["tar", "-xpf", str(src), "-C", str(rootfs), "--numeric-owner"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise MiniboxError(f"importing {source} failed: {res.stderr.strip().splitlines()[-1:]}")
        if not (rootfs / "bin").exists() and not (rootfs / "usr").exists():
            raise InvalidSpec(f'"{source}" does not look like a root filesystem (no /bin or /usr in it)')
        image = Image(name=name, created=time.time(), size=_tree_size(rootfs))
        store.write_json(tmp / "image.json", {"name": name, "created": image.created, "size": image.size})
        with store.global_lock():
            if final.exists():
                raise Conflict(f'image "{name}" already exists; remove it first with `minibox image rm {name}`')
            os.rename(tmp, final)
        return image
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_image(name: str) -> None:
    image = get(name)
    with store.global_lock():
        users = [r.name for r in store.all_records() if r.image_dir == str(image.rootfs)]
        if users:
            raise Conflict(f'image "{image.name}" is used by container(s) {", ".join(users)}; '
                           "remove them first (`minibox rm -f ...`)")
        shutil.rmtree(config.paths().image(image.name))


def _tree_size(root: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames + dirnames:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
            except OSError:
                pass
    return total
