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
from pathlib import Path

from minibox import config, store
from minibox.errors import Conflict, InvalidSpec, MiniboxError, NotFound
from minibox.value import Value

# Docker's reference grammar (distribution/reference): [DOMAIN[:PORT]/]PATH[:TAG][@DIGEST], where
# each path component is lower-case alphanumerics joined by one ".", "_", "__" or dashes. No
# component can be "." or "..", so no reference names a directory outside the image store.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?"
REF_RE = re.compile(rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?"
                    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$")


class Image(Value):
    name: str
    created: float
    size: int
    device_nodes: int = 0  # char/block nodes found at import: inert, the rootfs is mounted nodev

    @property
    def rootfs(self) -> Path:
        return config.paths().image(self.name) / "rootfs"


def normalize(name: str) -> str:
    """Users type `busybox` or `busybox:latest`; both are the image `busybox`."""
    return name[:-7] if name.endswith(":latest") else name


def validate_ref(name: str) -> str:
    """An image reference as Docker accepts it, normalized; anything else is refused here,
    before it can become a path."""
    if len(name) > 255 or not REF_RE.match(name):
        raise InvalidSpec(f'invalid image reference "{name}": use NAME[:TAG] with lower-case letters, digits and '
                          'single ".", "_" or "-" between them, e.g. busybox or registry:5000/team/app:1.0')
    return normalize(name)


validate_name = validate_ref


def get(name: str) -> Image:
    name = validate_ref(name)
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
            out.append(Image(name=p.name.replace("%", "/"), created=data["created"], size=data["size"]))
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
            lines = [line for line in res.stderr.strip().splitlines() if line]
            detail = lines[0] if lines else f"{cmd[0]} exited with {res.returncode}"
            raise MiniboxError(f"importing {source} failed: {detail}")
        if not (rootfs / "bin").exists() and not (rootfs / "usr").exists():
            raise InvalidSpec(f'"{source}" does not look like a root filesystem (no /bin or /usr in it)')
        size, nodes = _tree_size(rootfs)
        image = Image(name=name, created=time.time(), size=size, device_nodes=nodes)
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


def _tree_size(root: Path) -> tuple[int, int]:
    """Bytes in the tree, and how many device nodes it holds."""
    import stat

    total = nodes = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames + dirnames:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            total += st.st_size
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                nodes += 1
    return total, nodes
