"""One layer tarball unpacked into a directory of its own, safely, with overlayfs's whiteouts.

An image is a stack of layers; each is stored once, unpacked, and the container's root is
an overlay of their directories. A layer records deletions as whiteouts, which become
what overlayfs reads:

    .wh.NAME          a char device 0:0 named NAME      (NAME is deleted in this layer)
    .wh..wh..opq      trusted.overlay.opaque=y on its dir (the dir's lower contents are hidden)

A hostile layer must not write outside its directory. Every entry is created relative to
its parent directory's fd, and that parent is resolved inside the layer with no symlink at
all on the way (fs.inroot, strict): `evil -> /etc` followed by `evil/passwd` is
refused, as are `..` and absolute names, and hard links to anything but a file already in
this layer. The first such entry aborts the whole layer; nothing of it is kept.

The layer's diff id (sha256 of the uncompressed tar) is computed as it streams through,
and so is the compressed blob's digest, for the caller to check against the manifest.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import tarfile
import zlib
from pathlib import Path
from typing import BinaryIO

from minibox.errors import InvalidSpec, MiniboxError, shown
from minibox.image import OPAQUE, WHITEOUT
from minibox.image.checked import CONFIG_LIMIT
from minibox.fs import fscopy, inroot
from minibox.value import Value


class Unpacked(Value):
    diff_id: str  # sha256:... of the uncompressed tar
    blob_digest: str  # sha256:... of the bytes read (compressed or not)
    size: int  # bytes of file content in the layer


class Hashing:
    """A read-only stream that hashes what passes through it."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.sha = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        self.count += len(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 16):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


def read_verified(raw: BinaryIO, digest: str, what: str, size: int = -1) -> bytes:
    """A manifest or config blob, whole, checked against the digest that names it; never
    more than `size` bytes (its descriptor's), nor than image.checked.CONFIG_LIMIT."""
    limit = size if 0 <= size <= CONFIG_LIMIT else CONFIG_LIMIT
    h = Hashing(raw)
    data = h.read(limit + 1)
    if len(data) > limit:
        raise MiniboxError(f"{what} sent more than the {limit} bytes {'its descriptor gives' if size >= 0 else 'minibox reads'} "
                           f"for blob {digest}")
    if h.digest != digest:
        raise MiniboxError(f"digest mismatch: {what} sent {h.digest} for blob {digest}")
    return data


class Refused(InvalidSpec):
    pass


def _check_name(name: str, what: str = "entry") -> str:
    """A member name as a path relative to the layer, or Refused."""
    if name.startswith("/"):
        raise Refused(f'{what} {shown(name)} is an absolute path: a layer may only hold paths inside it')
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Refused(f'{what} {shown(name)} climbs out of the layer with ".."')
    return "/".join(parts)


def unpack(stream: BinaryIO, dest: Path, expected_blob: str = "") -> Unpacked:
    """Unpack a (gzip-compressed or plain) layer tar from `stream` into the new directory
    `dest`. A blob that cannot be read is reported as a digest mismatch when it is one
    (the registry sent other bytes than the manifest names), else as unreadable."""
    blob = Hashing(stream)
    head = blob.read(2)
    source = _Prefixed(head, blob)
    data: BinaryIO = _Inflating(source) if head == b"\x1f\x8b" else source
    if head[:2] == b"\x28\xb5":
        raise MiniboxError("zstd-compressed layers are not supported by this minibox: ask the registry for gzip")
    tar_bytes = Hashing(data)
    dest.mkdir(mode=0o755)
    root = inroot.Root(str(dest))
    try:
        size = extract(tar_bytes, root)
        tar_bytes.drain()  # the end-of-archive blocks belong to the diff id too
        blob.drain()
    except (tarfile.TarError, EOFError, OSError, zlib.error, ValueError, OverflowError) as e:
        # (ValueError, OverflowError: a name with a NUL in it, a uid or time no file can have)
        root.close()
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise  # a full disk, not a bad archive: the store says so (image.store.no_space)
        if expected_blob:
            with contextlib.suppress(Exception):
                blob.drain()
            if blob.digest != expected_blob:
                raise MiniboxError(f"digest mismatch: got {blob.digest} for blob {expected_blob}") from None
        raise MiniboxError(f"the layer is not a readable tar archive: {e}") from None
    finally:
        root.close()
    return Unpacked(tar_bytes.digest, blob.digest, size)


class _Prefixed:
    """`head` (already read) followed by the rest of `raw`."""

    def __init__(self, head: bytes, raw):
        self.head = head
        self.raw = raw

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n < 0:
                out, self.head = self.head + self.raw.read(), b""
                return out
            out, self.head = self.head[:n], self.head[n:]
            if len(out) < n:
                out += self.raw.read(n - len(out))
            return out
        return self.raw.read(n)


class _Inflating:
    """The gzip stream `raw`, inflated. zlib checks each member's CRC and length itself;
    gzip.GzipFile would read 8 KB at a time and compute the CRC again in Python, which
    cost ~15% of a text layer's unpack here."""

    CHUNK = 1 << 18

    def __init__(self, raw):
        self.raw = raw
        self.z = zlib.decompressobj(31)
        self.out, self.pos = b"", 0  # inflated, and how much of it was read

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            return b"".join(iter(lambda: self.read(self.CHUNK), b""))
        if self.pos == len(self.out):
            self.out, self.pos = self._inflate(), 0
        data = self.out[self.pos:self.pos + n]
        self.pos += len(data)
        return data

    def _inflate(self) -> bytes:
        """The next inflated bytes; b"" at the end of the stream."""
        while True:
            if self.z.eof:
                rest = self.z.unused_data.lstrip(b"\0")  # gzip allows zeros after a member
                while not rest:
                    more = self.raw.read(self.CHUNK)
                    if not more:
                        return b""  # the end, after a whole member
                    rest = more.lstrip(b"\0")
                self.z = zlib.decompressobj(31)  # a next member: gzip allows several
            else:
                rest = self.z.unconsumed_tail or self.raw.read(self.CHUNK)
                if not rest:
                    raise EOFError("the compressed layer ended before its end-of-stream marker")
            data = self.z.decompress(rest, self.CHUNK)
            if data:
                return data


def extract(stream: BinaryIO, root: inroot.Root, layer: bool = True) -> int:
    """Every member of the tar stream, created under `root` as _apply does; the bytes of
    content. With layer=False (`minibox cp -`), `.wh.` names are plain files."""
    size = 0
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            size += _apply(root, tar, member, layer)
    return size


def _parent(root: inroot.Root, rel: str) -> int:
    try:
        return root.mkdirs(os.path.dirname(rel) or ".", 0o755, strict=True)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise Refused(f'entry {shown(rel)} goes through a symlink: a layer may not write through one') from None
        if e.errno in (errno.ENOTDIR, errno.EEXIST):
            raise Refused(f'entry {shown(rel)} is under something that is not a directory') from None
        raise


def _clear(name: str, parent: int, keep_dir: bool = False) -> None:
    """Make room for a new entry: a later entry of a layer replaces an earlier one."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return
        shutil.rmtree(f"{inroot.fd_path(parent)}/{name}")
    else:
        os.unlink(name, dir_fd=parent)


def _apply(root: inroot.Root, tar: tarfile.TarFile, m: tarfile.TarInfo, layer: bool = True) -> int:
    """Create one member; the bytes of content it holds."""
    rel = _check_name(m.name)
    if not rel:
        return 0  # "./": the layer's own root
    base = os.path.basename(rel)
    parent = _parent(root, rel)
    try:
        if layer and base == OPAQUE:
            os.setxattr(inroot.fd_path(parent), "trusted.overlay.opaque", b"y")
            return 0
        if layer and base.startswith(WHITEOUT):
            name = base[len(WHITEOUT):]
            if name.startswith(WHITEOUT):
                return 0  # .wh..wh.*: aufs's own bookkeeping (hard link dirs), which Docker skips too
            if name in ("", ".", ".."):
                # `.wh..` would delete the directory holding this one: outside what the entry names
                raise Refused(f'whiteout {shown(rel)} names no entry of its directory: a whiteout hides one file')
            _clear(name, parent)
            os.mknod(name, stat.S_IFCHR | 0o000, 0, dir_fd=parent)  # overlayfs's whiteout
            return 0
        if m.isdir():
            _clear(base, parent, keep_dir=True)
            if not os.path.lexists(f"{inroot.fd_path(parent)}/{base}"):
                os.mkdir(base, 0o700, dir_fd=parent)
        elif m.isreg():
            _clear(base, parent)
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=parent)
            with os.fdopen(fd, "wb") as out, tar.extractfile(m) as src:
                shutil.copyfileobj(src, out, 1 << 16)
                out.flush()
                _finish(fd, m)  # through the fd it was made as, before it is closed
            return m.size
        elif m.issym():
            _clear(base, parent)
            os.symlink(m.linkname, base, dir_fd=parent)  # stored, never followed while unpacking
            ns = int(m.mtime * 1e9)
            fscopy.set_link_attrs(parent, base, m.uid, m.gid, (ns, ns))
            return 0
        elif m.islnk():
            target = _check_name(m.linkname, "hard link target")
            try:
                fd = root.open(target, os.O_PATH, strict=True)
            except OSError:
                raise Refused(f"hard link {shown(rel)} points at {shown(m.linkname)}, which is not a file of this "
                              "layer") from None
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise Refused(f'hard link {shown(rel)} points at {shown(m.linkname)}, which is not a regular file')
            finally:
                os.close(fd)
            _clear(base, parent)
            os.link(target, base, src_dir_fd=root.fd, dst_dir_fd=parent, follow_symlinks=False)
            return 0
        elif m.ischr() or m.isblk() or m.isfifo():
            _clear(base, parent)
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
            os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor) if not m.isfifo() else 0, dir_fd=parent)
        else:
            return 0  # sockets and the like: not in images
        # A directory or node made by name: its attributes through an fd opened without
        # following a symlink (`cp -` extracts into a running container, which may swap it).
        fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            _finish(fd, m)
        finally:
            os.close(fd)
        return 0
    finally:
        os.close(parent)


def _finish(fd: int, m: tarfile.TarInfo) -> None:
    """Owner, mode, extended attributes (file capabilities) and times, as recorded, set
    through the fd of what was made (fscopy.set_attrs)."""
    xattrs = tuple((k[len("SCHILY.xattr."):], v.encode("utf-8", "surrogateescape"))
                   for k, v in m.pax_headers.items()
                   if k.startswith("SCHILY.xattr.") and not k.startswith("SCHILY.xattr.trusted."))
    ns = int(m.mtime * 1e9)
    fscopy.set_attrs(fd, m.uid, m.gid, m.mode & 0o7777, (ns, ns), xattrs)
