"""`minibox save`: images as one tar that is both a docker-archive and an OCI image layout, as Docker 25's `docker save` writes.

In the tar, every blob is under blobs/sha256/ once: each layer (an uncompressed tar), each
image config, each OCI manifest. `index.json` (with `oci-layout`) names the manifests, so
skopeo's oci-archive and containerd read it; `manifest.json` names each image's config, tags
and layer tars, so `docker load` and skopeo's docker-archive read it.

The layers are stored unpacked here (they are overlay lower directories), so each is made a
tar again, as `commit` makes one of an upper directory. That tar is not byte for byte the one
that was pulled, so its digest differs, and the saved config names the new digests: the
loaded image has the same files, history and settings under another id (Docker keeps the
original bytes' layout aside, tar-split, to give back the same tars; minibox does not).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
import time
from typing import BinaryIO

from minibox import config
from minibox.errors import MiniboxError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def save(names: list[str], out: BinaryIO) -> None:
    """Write the images `names` (as a user typed them) to `out` as one archive."""
    from minibox.image import ref as refs
    from minibox.image import store

    images = [(name, store.get(name)) for name in names]  # every name found before anything is written
    layers: dict[str, tuple[str, BinaryIO]] = {}  # stored diff id -> (saved digest, its tar)
    blobs: dict[str, bytes] = {}  # digest -> small blob (config, manifest)
    index, manifest = [], []
    try:
        for name, img in images:
            cfg = remade(img, layers)
            digests = [layers[d][0] for d in img.layers]
            cfg_digest = _add(blobs, cfg)
            man = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                              "config": {"mediaType": OCI_CONFIG, "digest": cfg_digest, "size": len(cfg)},
                              "layers": [{"mediaType": OCI_LAYER, "digest": layers[d][0],
                                          "size": _size(layers[d][1])} for d in img.layers]},
                             separators=(",", ":")).encode()
            named = _ref_of(name, img)  # the name it was asked by, if that is one of its tags
            index.append({"mediaType": OCI_MANIFEST, "digest": _add(blobs, man), "size": len(man),
                          **({"annotations": {"io.containerd.image.name": named,
                                              "org.opencontainers.image.ref.name": refs.parse(named).tag}}
                             if named else {})})
            manifest.append({"Config": _blob_path(cfg_digest), "RepoTags": [refs.parse(named).familiar] if named else [],
                             "Layers": [_blob_path(d) for d in digests]})
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            _file(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
            for d in ("blobs", "blobs/sha256"):
                info = _info(d, 0)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            for digest, data in blobs.items():
                _file(tar, _blob_path(digest), data)
            for digest, layer in {v[0]: v[1] for v in layers.values()}.items():
                info = _info(_blob_path(digest), _size(layer))
                layer.seek(0)
                tar.addfile(info, layer)
            _file(tar, "index.json", json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                 "manifests": index}).encode())
            _file(tar, "manifest.json", json.dumps(manifest).encode())
    except OSError as e:
        raise MiniboxError(f"writing the archive: {e.strerror or e}") from None
    finally:
        for _, tar in layers.values():
            tar.close()


def remade(img, layers: dict[str, tuple[str, BinaryIO]]) -> bytes:
    """The image's config, naming its layers as made into tars again here: each one (by its
    stored diff id) is made once into `layers`, as (its new digest, the tar in a temporary file)."""
    from minibox.engine.committing import write_layer
    from minibox.image import store

    tmpdir = config.paths().images / "tmp"
    tmpdir.mkdir(parents=True, exist_ok=True)
    for diff_id in img.layers:
        if diff_id not in layers:
            tar = tempfile.TemporaryFile(dir=tmpdir)
            write_layer(str(store.layer_dir(diff_id)), tar)
            layers[diff_id] = (digest_of(tar), tar)
    path = config.paths().images / "configs" / f"{img.id.removeprefix('sha256:')}.json"
    doc = json.loads(path.read_bytes())
    doc["rootfs"] = {"type": "layers", "diff_ids": [layers[d][0] for d in img.layers]}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _ref_of(name: str, img) -> str:
    from minibox.image import ref as refs

    try:
        full = refs.normalize(name)
    except MiniboxError:
        return ""  # an id, or an id prefix
    return full if full in img.refs else ""


def digest_of(f: BinaryIO) -> str:
    """The sha256 digest of a whole file."""
    f.seek(0)
    h = hashlib.sha256()
    while chunk := f.read(1 << 20):
        h.update(chunk)
    return "sha256:" + h.hexdigest()


def _size(f: BinaryIO) -> int:
    return f.seek(0, 2)


def _add(blobs: dict[str, bytes], data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return digest


def _blob_path(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix("sha256:")


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, int(time.time())
    return info


def _file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, len(data)), io.BytesIO(data))
