"""Paths inside a container's root, resolved inside it: openat2(RESOLVE_IN_ROOT), and mounts through /proc/self/fd.

Before pivot_root, minibox works on the container's root from the host: it mounts /proc
on `merged/proc`, binds /etc/hosts over `merged/etc/hosts`, and so on. A plain path string
is resolved by the kernel with the *host's* '/', so an image whose `/etc` is a symlink to
`/root/.ssh` would have minibox write there, on the host; an image whose `/proc` is a
symlink would have proc mounted somewhere else, unmasked (both were reproduced).

So every path inside the rootfs goes through here, the way runc's securejoin and libpathrs
work: openat2 with RESOLVE_IN_ROOT treats the rootfs as '/' for every symlink on the way,
so `..` and absolute links can never leave it, and the result is an O_PATH fd. A mount
then targets `/proc/self/fd/N`, which is that very inode, not a path resolved again.

Two strengths:
  - `strict`: no symlink at all on the way (RESOLVE_NO_SYMLINKS). For /proc, /sys, /dev
    and what is under them: the kernel's own filesystems are mounted exactly where a
    program expects them, or the container does not start. runc refuses the same way.
  - otherwise symlinks are followed, inside the root: /etc/hosts may be a link to
    ../run/hosts, as on some distributions, and the bind lands on the link's target.
"""

from __future__ import annotations

import errno
import os
import stat

from minibox import linux

O_PATH = os.O_PATH


class Root:
    """A directory used as '/' for every lookup: `rel` paths are relative to it."""

    def __init__(self, path: str):
        self.path = path.rstrip("/") or "/"
        self.fd = os.open(self.path, O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def rel(self, path: str) -> str | None:
        """`path` (a host path) relative to this root, or None if it is not under it."""
        if path == self.path:
            return "."
        if path.startswith(self.path + "/"):
            return path[len(self.path) + 1:] or "."
        return None

    def open(self, rel: str, flags: int = O_PATH, mode: int = 0, strict: bool = False) -> int:
        resolve = linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS
        if strict:
            resolve |= linux.RESOLVE_NO_SYMLINKS
        try:
            return linux.openat2(self.fd, rel, flags, mode, resolve)
        except OSError as e:
            if e.errno == errno.ELOOP and strict:
                raise OSError(errno.ELOOP, f"/{rel} in the image goes through a symlink; minibox mounts "
                                           "/proc, /sys and /dev only on real directories", "/" + rel) from None
            raise

    def mkdirs(self, rel: str, mode: int = 0o755, strict: bool = False, _depth: int = 0) -> int:
        """Create `rel` and its missing parents inside the root; an O_PATH fd of it.

        Each missing component is created with mkdirat in its resolved parent, never by a
        path the kernel would resolve from the host's '/'. A symlink to a missing directory
        (an image's /etc -> /some/host/dir) gets its target created, inside the root."""
        if _depth > 40:  # the kernel's own limit on symlinks in one lookup
            raise OSError(errno.ELOOP, f"/{rel}: too many levels of symbolic links", "/" + rel)
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        for i in range(len(parts) + 1):
            prefix = "/".join(parts[:i]) or "."
            try:
                fd = self.open(prefix, O_PATH | os.O_DIRECTORY, strict=strict)
            except FileNotFoundError:
                parent = self.open("/".join(parts[:i - 1]) or ".", O_PATH | os.O_DIRECTORY, strict=strict)
                try:
                    os.mkdir(parts[i - 1], mode, dir_fd=parent)
                except FileExistsError:
                    # It exists but did not resolve: a symlink to something missing. Create
                    # its target, resolved as the container would: inside the root.
                    if strict:
                        raise
                    target = os.readlink(parts[i - 1], dir_fd=parent)
                    base = "" if target.startswith("/") else "/".join(parts[:i - 1])
                    os.close(self.mkdirs(os.path.normpath(f"{base}/{target}").lstrip("/") or ".", mode,
                                         strict, _depth + 1))
                finally:
                    os.close(parent)
                fd = self.open(prefix, O_PATH | os.O_DIRECTORY, strict=strict)
            if i < len(parts):
                os.close(fd)
            else:
                return fd
        raise AssertionError("unreachable")

    def ensure_file(self, rel: str, strict: bool = False) -> int:
        """An O_PATH fd of the file `rel`, created (empty, 0644) with its parents if missing."""
        try:
            return self.open(rel, strict=strict)
        except FileNotFoundError:
            pass
        parent = self.mkdirs(os.path.dirname(rel) or ".", strict=strict)
        os.close(parent)
        fd = self.open(rel, os.O_WRONLY | os.O_CREAT, 0o644, strict=strict)
        os.close(fd)
        return self.open(rel, strict=strict)


def fd_path(fd: int) -> str:
    """The magic link naming exactly the file `fd` refers to; mount(2) accepts it as a target."""
    return f"/proc/self/fd/{fd}"


def is_dir(fd: int) -> bool:
    return stat.S_ISDIR(os.fstat(fd).st_mode)
