"""The image store on disk: layers once each by digest, image configs by digest, and the references naming them.

    images/layers/HEX/           a layer, unpacked (HEX: its diff id, the uncompressed tar's sha256)
    images/layers/HEX.json       its size, and the compressed digests it was fetched as
    images/l/SHORT -> ../layers/HEX   short names, so a deep stack of layers fits in mount's options
    images/configs/HEX.json      an image config; sha256:HEX is the image's id
    images/configs/HEX.meta      when it was stored, its size, the digests of manifests naming it
    images/refs/REF              the image id a reference names (REF with "/" as "%")

A layer directory appears by rename once fully unpacked and verified, so a crash leaves at
most a temporary directory under images/tmp/, which the next store operation removes.
Layers no image references any more go when the last image using them is removed.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from pathlib import Path
from typing import BinaryIO

from minibox import config, files
from minibox.errors import Conflict, InvalidSpec, MiniboxError, NotFound, WriteFailed, shown
from minibox.image import checked
from minibox.image import ref as refs
from minibox.image.config import ImageConfig
from minibox.value import Value

SHORT = 16  # hex digits of a layer's short name


class Image(Value):
    id: str  # sha256:HEX of its config
    config: ImageConfig
    layers: tuple[str, ...]  # diff ids, bottom first
    created: float  # when it was stored here
    built: str  # the config's own `created` (when the image was made), "" if absent
    size: int
    refs: tuple[str, ...] = ()  # docker.io/library/busybox:latest, ...
    repo_digests: tuple[str, ...] = ()
    architecture: str = "amd64"
    os: str = "linux"

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]


def _root() -> Path:
    return config.paths().images


def _hex(digest: str, what: str = "layer id") -> str:
    """The store's name for a digest: only a checked one names anything here (image.checked)."""
    return checked.hex_of(digest, what)


def _under(kind: str, name: str) -> Path:
    """images/KIND/NAME, which must stay a direct child of images/KIND (as inroot keeps
    paths in a root): a name is a checked digest's hex, so this holds; the check says so."""
    base = _root() / kind
    path = base / name
    if path.parent != base or name in ("", ".", ".."):
        raise MiniboxError(f"{shown(name)} does not name an entry of {base}")
    return path


def layer_dir(diff_id: str) -> Path:
    return _under("layers", _hex(diff_id))


def short_dir(diff_id: str) -> Path:
    return _under("l", _hex(diff_id)[:SHORT])


def has_layer(diff_id: str) -> bool:
    return layer_dir(diff_id).is_dir()


def layer_for_blob(blob_digest: str) -> str | None:
    """The diff id of a layer already fetched as this compressed blob."""
    d = _root() / "layers"
    for meta in d.glob("*.json") if d.is_dir() else ():
        if not _is_hex(meta.stem):
            continue
        try:
            # its directory too: a .json alone is a layer being stored, or one a killed pull left
            if blob_digest in json.loads(meta.read_text()).get("blobs", []) and meta.with_suffix("").is_dir():
                return "sha256:" + meta.stem
        except (OSError, ValueError):
            continue
    return None


def _tmp() -> Path:
    d = _root() / "tmp"
    files.make_dirs(d)
    return d


def add_layer(stream: BinaryIO, expected_diff_id: str = "", expected_blob: str = "") -> str:
    """Unpack a layer from `stream` and keep it (once); its diff id. The digests read are
    checked against those given, and nothing is kept if either differs, or if storing it
    fails (a full disk): what this call placed is taken back.

    The layer's .json is written before its directory is moved into place: a process killed
    in between leaves a .json, by which discard (a failed pull's, `image rm`'s) finds and
    removes the layer; a directory without one would be taken for another pull's work."""
    tmp = Path(_tmp()) / f"layer-{os.getpid()}-{os.urandom(4).hex()}"
    placed = False
    try:
        # imported here, not for a run: hashlib and tarfile cost ~5 ms to import
        from minibox.image.layers import unpack

        got = unpack(stream, tmp, expected_blob)
        if expected_blob and got.blob_digest != expected_blob:
            raise MiniboxError(f"digest mismatch: got {got.blob_digest} for blob {expected_blob}")
        if expected_diff_id and got.diff_id != expected_diff_id:
            raise MiniboxError(f"digest mismatch: the layer's content is {got.diff_id}, the image says "
                               f"{expected_diff_id}")
        final = layer_dir(got.diff_id)
        meta = final.with_suffix(".json")
        blobs = {got.blob_digest}
        if not final.is_dir():
            files.make_dirs(final.parent)
            files.write_json(meta, {"size": got.size, "blobs": sorted(blobs)})
            try:
                os.replace(tmp, final)
                placed = True
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                # a parallel pull stored the same layer first: it is kept once, theirs
        if not placed:
            shutil.rmtree(tmp)  # stored already: a layer is kept once
            try:
                blobs |= set(json.loads(meta.read_text()).get("blobs", []))
            except (OSError, ValueError):
                pass
            files.write_json(meta, {"size": got.size, "blobs": sorted(blobs)})
        link = short_dir(got.diff_id)
        files.make_dirs(link.parent)
        if not link.is_symlink():
            os.symlink(f"../layers/{_hex(got.diff_id)}", link)
        return got.diff_id
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if placed:
            discard([got.diff_id])
        if full(e):
            raise no_space() from None
        raise


def full(e: BaseException) -> bool:
    """A write failed for want of space (or of inodes, or over a quota)."""
    return isinstance(e, (OSError, WriteFailed)) and getattr(e, "errno", 0) in (errno.ENOSPC, errno.EDQUOT)


def no_space() -> MiniboxError:
    """The one line for a full disk under the image store, whichever write met it."""
    return MiniboxError(f"no space left in {_root()} to store the image: remove images or containers you do not "
                        "need (`minibox image prune`), or free space there")


def add_image(config_bytes: bytes, names: list[str], repo_digest: str = "") -> Image:
    """Keep an image config (whose layers must all be stored) and point `names` at it."""
    try:
        return _add_image(config_bytes, names, repo_digest)
    except (OSError, WriteFailed) as e:
        if full(e):
            raise no_space() from None
        raise


def _add_image(config_bytes: bytes, names: list[str], repo_digest: str) -> Image:
    import hashlib

    image_id = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    doc = checked.parse_json(config_bytes, f"image config {image_id[:19]}")
    diff_ids = checked.diff_ids(doc)
    ImageConfig.from_oci(doc)  # its fields are of the types a run reads, or it is refused here
    missing = [d for d in diff_ids if not has_layer(d)]
    if missing:
        raise MiniboxError(f"image {image_id[:19]} needs layer {missing[0]}, which was not stored")
    path = _config_path(image_id)
    files.make_dirs(path.parent)
    if not path.exists():
        files.replace_file(path, config_bytes)
    meta = _meta(image_id)
    digests = set(meta.get("repo_digests", []))
    if repo_digest:
        digests.add(repo_digest)
    size = sum(layer_size(x) for x in diff_ids)
    files.write_json(path.with_suffix(".meta"), {"created": meta.get("created", time.time()), "size": size,
                                                 "repo_digests": sorted(digests)})
    for name in names:
        tag(image_id, name)
    return get(image_id)


def _config_path(image_id: str, suffix: str = ".json") -> Path:
    """images/configs/HEX.json (or .meta) of `image_id`, which must be one."""
    return _root() / "configs" / f"{_hex(image_id, 'image id')}{suffix}"


def _meta(image_id: str) -> dict:
    try:
        return json.loads(_config_path(image_id, ".meta").read_text())
    except (OSError, ValueError):
        return {}


def layer_size(diff_id: str) -> int:
    """The unpacked layer's size, as recorded when it was stored (0 if unknown)."""
    try:
        return json.loads(layer_dir(diff_id).with_suffix(".json").read_text())["size"]
    except (OSError, ValueError, KeyError):
        return 0


def tag(image_id: str, name: str) -> None:
    d = _root() / "refs"
    files.make_dirs(d)
    files.replace_file(d / refs.key(name), image_id + "\n")


def _refs_of() -> dict[str, list[str]]:
    d = _root() / "refs"
    out: dict[str, list[str]] = {}
    for p in d.iterdir() if d.is_dir() else ():
        if p.name.startswith("."):
            continue
        try:
            out.setdefault(p.read_text().strip(), []).append(refs.unkey(p.name))
        except OSError:
            continue
    return out


def config_doc(image_id: str) -> dict:
    """The image's config document as stored (images/configs/HEX.json), a JSON object:
    NotFound without it, MiniboxError naming the file if it is damaged."""
    path = _config_path(image_id)
    try:
        return checked.parse_json(path.read_bytes(), str(path))
    except FileNotFoundError:
        raise NotFound(f"no such image: {image_id}") from None
    except InvalidSpec as e:
        raise _damaged(path, e) from None


def _damaged(path: Path, e: Exception) -> MiniboxError:
    return MiniboxError(f"{path} is damaged ({e}): `minibox image rm` it and pull or load it again")


def _load(image_id: str, names: list[str] | None = None) -> Image:
    doc = config_doc(image_id)
    try:
        cfg, layers = ImageConfig.from_oci(doc), checked.diff_ids(doc)
    except InvalidSpec as e:
        raise _damaged(_config_path(image_id), e) from None
    meta = _meta(image_id)
    return Image(id=image_id, config=cfg, layers=layers, created=meta.get("created", 0.0),
                 built=doc.get("created") or "", size=meta.get("size", 0),
                 refs=tuple(sorted(names if names is not None else _refs_of().get(image_id, []))),
                 repo_digests=tuple(meta.get("repo_digests", ())), architecture=doc.get("architecture") or "amd64",
                 os=doc.get("os") or "linux")


def history(img: Image) -> list[dict]:
    """The config's history, newest first, each entry with the size of the layer it made
    (0 for an empty_layer entry), as `docker history` lists it."""
    from minibox.errors import shown

    doc = config_doc(img.id)
    entries = doc.get("history") if isinstance(doc.get("history"), list) else []
    layers = list(img.layers)
    out = []
    for h in entries[:1000]:
        if not isinstance(h, dict):
            continue
        empty = bool(h.get("empty_layer"))
        diff = "" if empty or not layers else layers.pop(0)
        # from the image's author: shown escaped, as any text from outside (no terminal control)
        out.append({"created": shown(str(h.get("created") or ""), 40)[1:-1],
                    "created_by": shown(str(h.get("created_by") or ""), 4096)[1:-1],
                    "comment": shown(str(h.get("comment") or ""), 200)[1:-1], "size": layer_size(diff) if diff else 0,
                    "layer": diff})
    return out[::-1]


def find(text: str) -> Image | None:
    """The image `text` names (a reference, an id or id prefix), or None."""
    by_id = _refs_of()
    hexpart = text.removeprefix("sha256:")
    is_id = len(hexpart) >= 4 and all(c in "0123456789abcdef" for c in hexpart)
    try:
        name = refs.normalize(text)
    except MiniboxError:
        if not is_id:
            raise  # neither a reference nor an id: say what would be valid
        name = ""
    if name:
        try:
            image_id = (_root() / "refs" / refs.key(name)).read_text().strip()
            return _load(image_id, by_id.get(image_id, []))
        except FileNotFoundError:
            pass
    if is_id:
        d = _root() / "configs"
        hits = [p.stem for p in d.glob(f"{hexpart}*.json")] if d.is_dir() else []
        if len(hits) == 1:
            return _load("sha256:" + hits[0], by_id.get("sha256:" + hits[0], []))
        if len(hits) > 1:
            raise Conflict(f'image id prefix "{text}" is ambiguous: give more of it')
    return None


def get(text: str) -> Image:
    img = find(text)
    if img is None:
        raise NotFound(f'no such image: "{text}" (see `minibox images`; get one with `minibox pull`, '
                       "`minibox load` or `minibox image import`)")
    return img


def all_images() -> list[Image]:
    d = _root() / "configs"
    by_id = _refs_of()
    return [_load("sha256:" + p.stem, by_id.get("sha256:" + p.stem, [])) for p in sorted(d.glob("*.json"))
            if _is_hex(p.stem)] \
        if d.is_dir() else []


def lowerdirs(img: Image) -> tuple[str, ...]:
    """The image's layer directories for overlayfs's lowerdir, top first, by their short names."""
    return tuple(str(short_dir(d)) for d in reversed(img.layers))


def untag(name: str) -> str:
    """Drop a reference; the image id it named."""
    path = _root() / "refs" / refs.key(name)
    try:
        image_id = path.read_text().strip()
    except FileNotFoundError:
        raise NotFound(f'no such image: "{refs.parse(name).familiar}"') from None
    path.unlink()
    return image_id


def delete(image_id: str) -> list[str]:
    """Delete an image's config and the layers no other image uses; the layers deleted."""
    for suffix in (".json", ".meta"):
        _config_path(image_id, suffix).unlink(missing_ok=True)
    return discard(stored_layers())


def stored_layers() -> list[str]:
    """The diff ids of the layers in the store (by their .json: see add_layer)."""
    d = _root() / "layers"
    return [f"sha256:{p.stem}" for p in d.glob("*.json") if _is_hex(p.stem)] if d.is_dir() else []


def _is_hex(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def discard(diff_ids: list[str]) -> list[str]:
    """Of these layers, delete those no image uses (what a failed pull or load fetched);
    the ones deleted."""
    used = {x for img in all_images() for x in img.layers}
    gone = []
    for diff_id in diff_ids:
        if diff_id in used or not layer_dir(diff_id).with_suffix(".json").exists():
            continue
        shutil.rmtree(layer_dir(diff_id), ignore_errors=True)
        layer_dir(diff_id).with_suffix(".json").unlink(missing_ok=True)
        short_dir(diff_id).unlink(missing_ok=True)
        gone.append(diff_id)
    return gone


def clean_tmp() -> list[str]:
    """Remove what an interrupted pull, load or import left (entries named after a PID
    that is gone; a concurrent one's work in progress stays); the paths removed."""
    d = _root() / "tmp"
    gone = []
    for p in d.iterdir() if d.is_dir() else ():
        pid = p.name.split("-")[1] if p.name.count("-") >= 2 else ""
        if pid.isdigit() and _alive(int(pid)):
            continue
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        gone.append(str(p))
    # A file's new copy (see files.replace_file) of a worker killed mid-write: another
    # pull's stays while its writer lives.
    for kind in ("layers", "configs", "refs"):
        for p in files.leftovers(_root() / kind):
            p.unlink(missing_ok=True)
            gone.append(str(p))
    return gone


def _alive(pid: int) -> bool:
    """A process with this PID exists (a pull's worker still writing what is named after it)."""
    return os.path.exists(f"/proc/{pid}")
