"""Images from files: `load` of a `docker save` archive or an OCI archive/layout, and `import` of a root filesystem.

docker-archive:  manifest.json lists, per image, its config file, its RepoTags and its
                 layer tars (the config's rootfs.diff_ids say what each must hash to).
OCI layout:      oci-layout, index.json naming manifests (an index may name more indexes,
                 one per platform), blobs/sha256/DIGEST; an OCI archive is that, in a tar.
Every blob read is checked against the digest that names it.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import time
from pathlib import Path
from typing import BinaryIO, Callable

from minibox.errors import InvalidSpec, MiniboxError, NotFound, shown
from minibox.image import checked, store
from minibox.image import ref as refs
from minibox.image.config import ImageConfig, apply_changes
from minibox.image.layers import read_verified

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")


class Source:
    """Files of an archive (a tar, read in place) or of a directory."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.tar = None
        if self.path.is_file():
            try:
                self.tar = tarfile.open(self.path, "r:*")
            except (tarfile.TarError, OSError):
                raise InvalidSpec(f'"{path}" is not a tar archive (docker-archive or OCI archive), nor an OCI layout '
                                  "directory") from None
        elif not self.path.is_dir():
            raise NotFound(f'nothing to load at "{path}": give a `docker save` or OCI archive, or an OCI layout')

    def open(self, name: str) -> BinaryIO:
        name = name.removeprefix("./")
        if self.tar is None:
            target = (self.path / name).resolve()
            if self.path.resolve() not in target.parents:
                raise InvalidSpec(f'"{name}" in the archive points outside it')
            return open(target, "rb")
        try:
            f = self.tar.extractfile(self._member(name))
        except KeyError:
            raise InvalidSpec(f'the archive lacks "{name}"') from None
        if f is None:
            raise InvalidSpec(f'"{name}" in the archive is not a file')
        return f

    def _member(self, name: str):
        for candidate in (name, f"./{name}"):
            try:
                return self.tar.getmember(candidate)
            except KeyError:
                continue
        raise KeyError(name)

    def exists(self, name: str) -> bool:
        try:
            self.open(name).close()
            return True
        except (InvalidSpec, OSError):
            return False

    def json(self, name: str):
        with self.open(name) as f:
            data = f.read(checked.MANIFEST_LIMIT + 1)
        if len(data) > checked.MANIFEST_LIMIT:
            raise InvalidSpec(f'"{name}" in the archive is larger than the {checked.MANIFEST_LIMIT >> 20} MiB minibox '
                              "reads of one")
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            raise InvalidSpec(f'"{name}" in the archive is not JSON') from None


def load(path: str, say: Callable[[str], None]) -> list[store.Image]:
    """Every image in a docker-archive, OCI archive or OCI layout at `path`. A load that
    fails keeps none of the layers it added (the images loaded before the failure stay)."""
    src = Source(path)
    added: list[str] = []
    try:
        if src.exists("manifest.json"):
            return _load_docker(src, say, added)
        if src.exists("index.json") and src.exists("oci-layout"):
            return _load_oci(src, say, added)
    except BaseException:
        store.discard(added)
        raise
    raise InvalidSpec(f'"{path}" is neither a `docker save` archive (no manifest.json) nor an OCI archive or layout '
                      "(no index.json and oci-layout)")


def _load_docker(src: Source, say, added: list[str]) -> list[store.Image]:
    out = []
    entries = src.json("manifest.json")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InvalidSpec("the archive's manifest.json is not a list of images")
    for entry in entries:
        config_name, layer_names, tags = entry.get("Config"), entry.get("Layers") or [], entry.get("RepoTags") or []
        if not isinstance(config_name, str) or not isinstance(layer_names, list) \
                or not isinstance(tags, list) or not all(isinstance(x, str) for x in layer_names + tags):
            raise InvalidSpec("the archive's manifest.json names its files with other than strings")
        with src.open(config_name) as f:
            config_bytes = f.read(checked.CONFIG_LIMIT + 1)
        if len(config_bytes) > checked.CONFIG_LIMIT:
            raise InvalidSpec(f"the image config {shown(config_name)} in the archive is larger than "
                              f"{checked.CONFIG_LIMIT >> 20} MiB")
        diff_ids = checked.diff_ids(checked.parse_json(config_bytes, f"the image config {shown(config_name)}"))
        if len(diff_ids) != len(layer_names):
            raise InvalidSpec("the archive's manifest.json and its image config disagree on the number of layers")
        for layer, diff_id in zip(layer_names, diff_ids):
            _layer(src, layer, diff_id, "", say, added)
        names = [refs.normalize(t) for t in tags]
        out.append(store.add_image(config_bytes, names))
    return out


def _blob(src: Source, desc: checked.Descriptor) -> bytes:
    with src.open(f"blobs/sha256/{checked.hex_of(desc.digest, 'blob')}") as f:
        return read_verified(f, desc.digest, "the archive", desc.size)


def pick_manifest(index: dict, fetch: Callable[[checked.Descriptor], dict], arch: str = "amd64",
                  first: bool = False, depth: int = 0) -> list[tuple[dict, dict]]:
    """(index entry, manifest) of each image an index names, descending into nested
    indexes and, where several platforms are offered, keeping linux/`arch`; with `first`,
    only the first such image is fetched (a pull needs one)."""
    if depth >= checked.MAX_INDEX_DEPTH:
        raise InvalidSpec(f"the image index nests more than {checked.MAX_INDEX_DEPTH} indexes deep")
    out = []
    entries = checked.index_entries(index)
    platforms = [(d, e) for d, e in entries if (e.get("platform") or {}).get("os") == "linux"
                 and (e.get("platform") or {}).get("architecture") == arch]
    if any(e.get("platform") for _, e in entries):
        entries = platforms
        if not entries:
            raise MiniboxError(f"the image has no linux/{arch} variant")
    for d, e in entries:
        doc = fetch(d)
        if not isinstance(doc, dict):
            raise InvalidSpec(f"the manifest {d.digest} is not a JSON object")
        if doc.get("mediaType") in INDEX_TYPES or "manifests" in doc:
            out += [(e if not inner.get("annotations") else inner, m)
                    for inner, m in pick_manifest(doc, fetch, arch, first, depth + 1)]
        else:
            out.append((e, doc))
        if first and out:
            return out[:1]
    return out


def _load_oci(src: Source, say, added: list[str]) -> list[store.Image]:
    out = []
    for desc, manifest in pick_manifest(src.json("index.json"), lambda d: checked.parse_json(_blob(src, d), f"the manifest {d.digest}")):
        cfg, layers = checked.manifest(manifest, "the manifest in the archive")
        config_bytes = _blob(src, cfg)
        diff_ids = checked.diff_ids(checked.parse_json(config_bytes, f"the image config {cfg.digest}"))
        if len(diff_ids) != len(layers):
            raise InvalidSpec("the archive's manifest and image config disagree on the number of layers")
        for layer, diff_id in zip(layers, diff_ids):
            _layer(src, f"blobs/sha256/{checked.hex_of(layer.digest, 'layer')}", diff_id, layer.digest, say, added)
        annotations = desc.get("annotations") or {}
        name = annotations.get("io.containerd.image.name") or annotations.get("org.opencontainers.image.ref.name", "")
        names = []
        if isinstance(name, str) and ("/" in name or ":" in name):
            names = [refs.normalize(name)]
        out.append(store.add_image(config_bytes, names))
    return out


def _layer(src: Source, member: str, diff_id: str, blob: str, say, added: list[str]) -> None:
    if store.has_layer(diff_id):
        say(f"{diff_id[7:19]}: Already exists")
        return
    with src.open(member) as f:
        added.append(store.add_layer(f, expected_diff_id=diff_id, expected_blob=blob))
    say(f"{diff_id[7:19]}: Loaded")


def import_rootfs(source: str, name: str, changes: list[str], stdin: BinaryIO | None = None) -> store.Image:
    """One layer from a directory, a tar archive, or (source "-") a tar on stdin; a config
    from `changes` (Dockerfile instructions, as `docker import --change`)."""
    cfg = apply_changes(ImageConfig(), changes)  # bad input is refused before anything is stored
    target = refs.normalize(name) if name else ""
    if source == "-":
        diff_id = store.add_layer(stdin)
    elif os.path.isdir(source):
        if not (Path(source) / "bin").exists() and not (Path(source) / "usr").exists():
            raise InvalidSpec(f'"{source}" does not look like a root filesystem (no /bin or /usr in it)')
        proc = subprocess.Popen(["tar", "-C", source, "--numeric-owner", "-cf", "-", "."], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            diff_id = store.add_layer(proc.stdout)
        finally:
            proc.stdout.close()
            err = proc.stderr.read().decode(errors="replace").strip().splitlines()
            if proc.wait() != 0:
                raise MiniboxError(f"importing {source} failed: {err[0] if err else 'tar failed'}")
    elif os.path.isfile(source):
        if not tarfile.is_tarfile(source):
            raise InvalidSpec(f'"{source}" is not a tar archive (or a directory): export one with '
                              "`docker export CTR > rootfs.tar` or `tar -C ROOTFS -cf rootfs.tar .`")
        with open(source, "rb") as f:
            try:
                diff_id = store.add_layer(f)
            except MiniboxError as e:
                raise MiniboxError(f"importing {source} failed: {e}") from None
    else:
        raise NotFound(f'nothing to import at "{source}": give a rootfs directory, a tar archive, or - for stdin')
    doc = {"architecture": "amd64", "os": "linux",
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "config": cfg.to_oci(), "rootfs": {"type": "layers", "diff_ids": [diff_id]},
           "history": [{"created_by": f"minibox image import {source}", "comment": " ".join(changes)}]}
    return store.add_image(json.dumps(doc, sort_keys=True).encode(), [target] if target else [])


def device_nodes(img: store.Image) -> int:
    """Character and block devices the image's layers ship (whiteouts, 0:0, are not ones)."""
    import stat

    count = 0
    for diff_id in img.layers:
        for dirpath, dirnames, filenames in os.walk(store.layer_dir(diff_id)):
            for n in filenames + dirnames:
                try:
                    st = os.lstat(os.path.join(dirpath, n))
                except OSError:
                    continue
                if (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) and st.st_rdev != 0:
                    count += 1
    return count
