"""Test images as registries and archives carry them: layer tars made by GNU tar, an OCI layout, and skopeo.

The layers are directories staged here and tarred by GNU tar (whiteouts are the `.wh.`
files the image spec defines); the OCI layout around them is a few JSON files; everything
a registry or `docker save` would hold (pushed manifests, docker-archive, oci-archive) is
then written by skopeo from that layout. And a real registry (Debian's docker-registry,
the CNCF distribution) to pull from, on 127.0.0.1 inside the test sandbox.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

SKOPEO = ["skopeo", "--insecure-policy"]


def _blob(layout: Path, data: bytes, media_type: str) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = layout / "blobs/sha256" / digest[7:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def tar_dir(staging: Path) -> bytes:
    """The directory as GNU tar writes it (sorted names, so the same tree gives the same bytes)."""
    return subprocess.run(["tar", "-C", str(staging), "--sort=name", "--numeric-owner", "-cf", "-", "."],
                          check=True, capture_output=True).stdout


def image_manifest(layout: Path, layers: list[bytes], config: dict, arch: str = "amd64") -> dict:
    """Blobs for `layers` (uncompressed tars, stored gzipped) and a config; the manifest's descriptor."""
    descs, diff_ids = [], []
    for tar in layers:
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        descs.append(_blob(layout, gzip.compress(tar, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip"))
    doc = {"architecture": arch, "os": "linux", "created": "2026-11-26T00:00:00Z", "config": config,
           "rootfs": {"type": "layers", "diff_ids": diff_ids},
           "history": [{"created_by": f"layer {i}"} for i in range(len(layers))]}
    cfg = _blob(layout, json.dumps(doc).encode(), "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": cfg,
                "layers": descs}
    desc = _blob(layout, json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    desc["platform"] = {"architecture": arch, "os": "linux"}
    return desc


def write_layout(layout: Path, manifests: list[dict], tag: str, as_index: bool = False) -> None:
    """index.json naming the manifests under `tag`; with as_index, through a nested image
    index (what a multi-platform image is)."""
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    if as_index:
        inner = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": manifests}
        top = _blob(layout, json.dumps(inner).encode(), "application/vnd.oci.image.index.v1+json")
        entries = [top]
    else:
        entries = manifests
    for e in entries:
        e.setdefault("annotations", {})["org.opencontainers.image.ref.name"] = tag
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": entries}))


def skopeo(*args: str) -> None:
    res = subprocess.run(SKOPEO + list(args), capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)}: {res.stderr.strip()}")


class Registry:
    """docker-registry serving from a directory of its own on 127.0.0.1:PORT."""

    def __init__(self, workdir: Path, port: int, auth: str = ""):
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.storage = workdir / f"storage-{port}"
        cfg = {"version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
               "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True}},
               "http": {"addr": self.host}}
        if auth:
            cfg["auth"] = json.loads(auth)
        path = workdir / f"registry-{port}.yml"
        path.write_text(json.dumps(cfg))  # YAML is a superset of JSON
        self.proc = subprocess.Popen(["docker-registry", "serve", str(path)], stdout=subprocess.DEVNULL,
                                     stderr=open(workdir / f"registry-{port}.log", "w"))
        deadline = time.monotonic() + 20
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"docker-registry on {self.host} did not start: "
                                     f"{(workdir / f'registry-{port}.log').read_text()[-500:]}")
            time.sleep(0.05)

    def ready(self) -> bool:
        try:
            urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1).close()
            return True
        except urllib.error.HTTPError:
            return True  # 401: up, and asking for credentials
        except OSError:
            return False

    def blob_file(self, digest: str) -> Path:
        hexd = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.storage, ignore_errors=True)


def htpasswd(path: Path, user: str, password: str) -> None:
    # bcrypt: the only hash docker-registry accepts
    out = subprocess.run(["htpasswd", "-Bbn", user, password], check=True, capture_output=True, text=True).stdout
    path.write_text(out)


def free_port(start: int) -> int:
    import socket

    for port in range(start, start + 100):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise AssertionError("no free port")


def staged(root: Path, files: dict[str, str | None], links: dict[str, str] | None = None) -> Path:
    """A directory holding `files` (path -> content; None: a directory), and hard links
    (path -> existing path)."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        p = root / rel
        if content is None:
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(content)
            if rel.endswith(".sh"):
                p.chmod(0o755)
    for rel, target in (links or {}).items():
        os.link(root / target, root / rel)
    return root
