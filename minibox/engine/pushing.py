"""`minibox push`: an image up to a registry, by the distribution API's upload, with the auth `pull` uses.

    HEAD /v2/NAME/blobs/DIGEST            is the blob there already? (then it is not sent)
    POST /v2/NAME/blobs/uploads/          an upload session: its URL in `Location`
    PUT  LOCATION?digest=DIGEST           the whole blob, in one request (a monolithic upload)
    PUT  /v2/NAME/manifests/TAG           the manifest naming the config and the layers

Each layer is made a tar again from what is stored (as `save` makes it) and gzipped, as
Docker pushes layers; the config names the tars' digests, the manifest the gzips'. The
token asked for covers `pull,push` on the repository.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import tempfile
import urllib.parse
from typing import BinaryIO, Callable

from minibox import config
from minibox.engine.saving import OCI_CONFIG, OCI_MANIFEST
from minibox.errors import MiniboxError, NotFound

OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ANSWER_LIMIT = 1 << 16  # what is read of a registry's answer to an upload: the server chooses its size


def push(name: str, say: Callable[[str], None]) -> str:
    """Push the image `name` (REGISTRY/PATH:TAG) to its registry; the manifest's digest."""
    from minibox.engine.saving import digest_of, remade
    from minibox.image import ref as refs
    from minibox.image import registry, store

    ref = refs.parse(name)
    if not ref.tag:
        raise MiniboxError(f'push of "{name}" needs a tag (REPOSITORY:TAG): minibox pushes a tag, not a digest')
    img = store.get(name)
    reg = registry.Registry(ref)
    reg.actions = "pull,push"
    say(f"The push refers to repository [{ref.domain}/{ref.path}]")
    layers: dict[str, tuple[str, BinaryIO]] = {}
    gzips: list[BinaryIO] = []
    try:
        cfg = remade(img, layers)
        descriptors = []
        for diff_id in img.layers:
            blob = tempfile.TemporaryFile(dir=config.paths().images / "tmp")
            gzips.append(blob)
            tar = layers[diff_id][1]
            tar.seek(0)
            with gzip.GzipFile(fileobj=blob, mode="wb", mtime=0) as z:
                shutil.copyfileobj(tar, z)
            digest, size = digest_of(blob), blob.seek(0, 2)
            descriptors.append({"mediaType": OCI_LAYER_GZIP, "digest": digest, "size": size})
            say(f"{digest[7:19]}: {'Layer already exists' if _upload(reg, digest, blob, size) else 'Pushed'}")
        cfg_digest = "sha256:" + hashlib.sha256(cfg).hexdigest()
        _upload(reg, cfg_digest, cfg, len(cfg))
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": OCI_CONFIG, "digest": cfg_digest, "size": len(cfg)},
                               "layers": descriptors}, separators=(",", ":")).encode()
        with reg.request(reg.url(f"{ref.path}/manifests/{ref.tag}"), method="PUT", data=manifest,
                       headers={"Content-Type": OCI_MANIFEST}) as resp:
            resp.read(ANSWER_LIMIT)
    finally:
        for f in gzips + [t for _, t in layers.values()]:
            f.close()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    say(f"{ref.tag}: digest: {digest} size: {len(manifest)}")
    return digest


def _upload(reg, digest: str, data, size: int) -> bool:
    """Send one blob unless the registry has it; True if it had."""
    path = reg.ref.path
    try:
        with reg.request(reg.url(f"{path}/blobs/{digest}"), method="HEAD") as resp:
            resp.read(ANSWER_LIMIT)
        return True
    except NotFound:
        pass
    with reg.request(reg.url(f"{path}/blobs/uploads/"), method="POST", data=b"") as resp:
        resp.read(ANSWER_LIMIT)
        location = resp.headers.get("Location", "")
    url = urllib.parse.urljoin(reg.base + "/", location)
    if urllib.parse.urlsplit(url).netloc != urllib.parse.urlsplit(reg.base).netloc:
        raise MiniboxError(f"{reg.host} sent the upload elsewhere ({urllib.parse.urlsplit(url).netloc}): minibox "
                           "uploads only to the registry itself")
    url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
    if hasattr(data, "seek"):
        data.seek(0)
    with reg.request(url, method="PUT", data=data, headers={"Content-Type": "application/octet-stream",
                                                          "Content-Length": str(size)}) as resp:
        resp.read(ANSWER_LIMIT)
    return False
