"""`image rm` and `image prune` with Docker's rules: names go first, an image goes with its last name, layers with their last image.

    image rm busybox          untag docker.io/library/busybox:latest; if that was its last
                              name and no container uses it, delete it and the layers no
                              other image shares
    image rm 3f57d9401f8d     by id: refused while it has several names, unless -f
    image prune [-a]          every image with no name (-a: every image) no container uses

A container (in any state) keeps its image: Docker refuses to delete it, and so does
minibox (with -f, the name goes and the image stays, nameless, until the container does).
"""

from __future__ import annotations

from minibox import store as state
from minibox.errors import Conflict
from minibox.image import ref as refs
from minibox.image import store


def users(image_id: str) -> list[str]:
    return [r.name for r in state.all_records() if r.image_id == image_id]


def remove(text: str, force: bool = False) -> list[str]:
    """Docker's lines: Untagged: ..., Deleted: ..."""
    with state.global_lock():
        img = store.get(text)
        lines = []
        by_name = _named(text, img)
        if by_name:
            names = [by_name]
        elif len(img.refs) > 1 and not force:
            raise Conflict(f"unable to delete {img.short_id} (must be forced) - image is referenced in multiple "
                           f"repositories: {', '.join(refs.parse(n).familiar for n in img.refs)}")
        else:
            names = list(img.refs)
        busy = users(img.id)
        last = len(names) == len(img.refs)
        if busy and last and not force:
            what = f'repository reference "{text}"' if by_name else f"image {img.short_id}"
            raise Conflict(f"unable to remove {what} (must force) - container {busy[0]} is using its referenced "
                           "image")
        for n in names:
            store.untag(n)
            lines.append(f"Untagged: {refs.parse(n).familiar}")
        if last and not busy:
            lines.append(f"Deleted: {img.id}")
            lines += [f"Deleted: {d}" for d in store.delete(img.id)]
        return lines


def _named(text: str, img: store.Image) -> str:
    """The reference `text` names, if it is one of the image's names (not an id)."""
    try:
        name = refs.normalize(text)
    except Exception:  # noqa: BLE001 - an id prefix, not a reference
        return ""
    return name if name in img.refs else ""


def prune(all_: bool = False) -> tuple[list[str], int]:
    """(lines, bytes freed)."""
    lines, freed = [], 0
    with state.global_lock():
        used = {r.image_id for r in state.all_records()}
        for img in store.all_images():
            if img.id in used or (img.refs and not all_):
                continue
            for n in img.refs:
                store.untag(n)
                lines.append(f"untagged: {refs.parse(n).familiar}")
            lines.append(f"deleted: {img.id}")
            lines += [f"deleted: {d}" for d in store.delete(img.id)]
            freed += img.size
    return lines, freed
