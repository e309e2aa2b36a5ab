"""What an image, archive or registry sends, checked before it names anything: digests, descriptors, manifests, indexes, configs.

A digest from outside becomes a path in the layer store (images/layers/HEX), a URL
(/v2/NAME/blobs/DIGEST) and a name in the archive (blobs/sha256/HEX). So none is used
until it matches the OCI image spec's grammar for an algorithm minibox can verify:

    digest := algorithm ":" encoded        sha256 : 64 lower-case hex digits

`sha256:/etc` or `sha256:../../x` is refused here, with the field it came from, before
any lookup ("Already exists"), mount or cleanup could take it for a layer. A size is a
non-negative integer; a layer count stays under Docker's limit; a nested index under a
small depth. Everything else of a manifest or config is checked for its JSON type, so a
hostile document is one line naming the field, never an internal error. Pure.
"""

from __future__ import annotations

import json
import re
from typing import Any

from minibox.errors import InvalidSpec, shown
from minibox.value import Value

ALGORITHMS = {"sha256": 64}  # what minibox can verify: the encoded part's length, lower-case hex
_GRAMMAR = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")  # the image spec's digest grammar
MAX_LAYERS = 125  # Docker's limit (moby's layer.maxLayerDepth); overlayfs takes about 500
MAX_INDEX_DEPTH = 4  # an index of indexes of ...: one level is a multi-platform image
MAX_MANIFESTS = 1024  # entries an index may list
MANIFEST_LIMIT = 4 << 20  # bytes of a manifest or index, as containerd caps them
CONFIG_LIMIT = 8 << 20  # bytes of an image config


class Descriptor(Value):
    media_type: str
    digest: str
    size: int  # -1 where the document gave none (an archive's manifest.json names files, not sizes)


def digest(value: Any, what: str) -> str:
    """`value` if it is a digest minibox can verify, else InvalidSpec naming `what`."""
    if isinstance(value, str) and _GRAMMAR.match(value):
        algorithm, _, encoded = value.partition(":")
        length = ALGORITHMS.get(algorithm)
        if length and len(encoded) == length and all(c in "0123456789abcdef" for c in encoded):
            return value
        if length is None:
            raise InvalidSpec(f"{what} {shown(value)} uses the digest algorithm {shown(algorithm)}, which minibox "
                              "cannot verify: only sha256")
    raise InvalidSpec(f"{what} {shown(value)} is not a digest: use sha256: and 64 lower-case hex digits")


def hex_of(value: Any, what: str) -> str:
    """The encoded part of a checked digest: what names it in the store or an archive."""
    return digest(value, what).partition(":")[2]


def _object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidSpec(f"{what} is not a JSON object")
    return value


def _string(doc: dict, key: str, what: str) -> str:
    value = doc.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or "\0" in value:
        raise InvalidSpec(f"{what}: {key} is not a string")
    return value


def descriptor(value: Any, what: str, limit: int = -1) -> Descriptor:
    """A content descriptor ({mediaType, digest, size}); `limit` caps the size, when given."""
    doc = _object(value, what)
    size = doc.get("size", -1)
    if isinstance(size, bool) or not isinstance(size, int) or size < -1:
        raise InvalidSpec(f"{what}: size {shown(size)} is not a number of bytes")
    if limit >= 0 and size > limit:
        raise InvalidSpec(f"{what} is {size} bytes, more than the {limit >> 20} MiB minibox reads of one")
    return Descriptor(_string(doc, "mediaType", what), digest(doc.get("digest"), f"{what}: digest"), size)


def parse_json(data: bytes, what: str) -> dict:
    """A JSON object, or InvalidSpec: `what` is not one."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise InvalidSpec(f"{what} is not JSON") from None
    return _object(doc, what)


def manifest(doc: dict, what: str = "the image manifest") -> tuple[Descriptor, tuple[Descriptor, ...]]:
    """An image manifest's config and layers, each checked."""
    cfg = descriptor(doc.get("config"), f"{what}'s config", CONFIG_LIMIT)
    layers = doc.get("layers") or []
    if not isinstance(layers, list):
        raise InvalidSpec(f"{what}: layers is not a list")
    if len(layers) > MAX_LAYERS:
        raise InvalidSpec(f"{what} names {len(layers)} layers, more than the {MAX_LAYERS} Docker allows")
    return cfg, tuple(descriptor(x, f"{what}'s layer {i + 1}") for i, x in enumerate(layers))


def index_entries(doc: dict, what: str = "the image index") -> list[tuple[Descriptor, dict]]:
    """An index's manifests: each entry's checked descriptor, and the entry itself (its
    platform and annotations)."""
    entries = doc.get("manifests") or []
    if not isinstance(entries, list):
        raise InvalidSpec(f"{what}: manifests is not a list")
    if len(entries) > MAX_MANIFESTS:
        raise InvalidSpec(f"{what} lists {len(entries)} manifests, more than the {MAX_MANIFESTS} minibox reads")
    out = []
    for i, e in enumerate(entries):
        d = descriptor(e, f"{what}'s entry {i + 1}", MANIFEST_LIMIT)
        for key in ("platform", "annotations"):
            if e.get(key) is not None and not isinstance(e[key], dict):
                raise InvalidSpec(f"{what}'s entry {i + 1}: {key} is not a JSON object")
        out.append((d, e))
    return out


def diff_ids(doc: dict, what: str = "the image config") -> tuple[str, ...]:
    """The image config's rootfs.diff_ids, each a checked digest: the layers' names here."""
    rootfs = doc.get("rootfs") or {}
    if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids") or [], list):
        raise InvalidSpec(f"{what}: rootfs.diff_ids is not a list")
    ids = rootfs.get("diff_ids") or []
    if len(ids) > MAX_LAYERS:
        raise InvalidSpec(f"{what} names {len(ids)} layers, more than the {MAX_LAYERS} Docker allows")
    return tuple(digest(x, f"layer id in {what}") for x in ids)
