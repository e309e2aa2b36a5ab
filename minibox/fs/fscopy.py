"""Copying files and trees between directory fds, never following a symlink: a volume's first content, and `minibox cp`.

Both ends are O_PATH/O_DIRECTORY fds that were resolved safely (inside a container's root,
fs.inroot), and every entry below them is opened relative to its parent's fd with
O_NOFOLLOW: a symlink in the tree is copied as a symlink, never entered, so a container
cannot steer a copy to the host's files by swapping a directory for a link. Devices and
sockets are skipped (a container's device nodes are inert anyway: its root is nodev).
"""

from __future__ import annotations

import os
import stat

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Owner:
    """Who owns what is copied: the source's owners (cp -a, a volume's first content), or
    one uid:gid for everything (docker cp: root in the container, the caller on the host)."""

    def __init__(self, uid: int = -1, gid: int = -1):
        self.uid, self.gid = uid, gid

    def of(self, st: os.stat_result) -> tuple[int, int]:
        return (st.st_uid if self.uid < 0 else self.uid, st.st_gid if self.gid < 0 else self.gid)


PRESERVE = Owner()


def set_attrs(fd: int, uid: int, gid: int, mode: int, times_ns: tuple[int, int],
              xattrs: tuple[tuple[str, bytes], ...] = ()) -> None:
    """Owner, mode, times and extended attributes of the file `fd` was opened on (any fd,
    O_PATH included), set through /proc/self/fd/N: that very inode, never its name resolved
    again. A container that swaps a path being copied for a symlink to a host file
    (CVE-2018-15664) so changes only what minibox created. chown and chmod come first:
    chown clears the set-id bits chmod then sets."""
    path = f"/proc/self/fd/{fd}"
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    for key, value in xattrs:
        try:
            os.setxattr(path, key, value)
        except OSError:
            pass  # a filesystem without that namespace: the file works without it
    os.utime(path, ns=times_ns)


def set_link_attrs(dir_fd: int, name: str, uid: int, gid: int, times_ns: tuple[int, int]) -> None:
    """A symlink's own owner and times (it has no mode): by name in its pinned parent, never
    following it (no fd of a symlink itself can change its owner from Python)."""
    os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
    os.utime(name, ns=times_ns, dir_fd=dir_fd, follow_symlinks=False)


def copy_entry(src_dir: int, name: str, dst_dir: int, dst_name: str, owner: Owner = PRESERVE) -> int:
    """Copy `name` (in src_dir) to `dst_name` (in dst_dir), recursively; bytes copied. What
    is made is changed only through the fd it was made or first opened as (set_attrs)."""
    st = os.stat(name, dir_fd=src_dir, follow_symlinks=False)
    uid, gid = owner.of(st)
    times = (st.st_atime_ns, st.st_mtime_ns)
    if stat.S_ISDIR(st.st_mode):
        try:
            os.mkdir(dst_name, 0o700, dir_fd=dst_dir)
        except FileExistsError:
            if not stat.S_ISDIR(os.stat(dst_name, dir_fd=dst_dir, follow_symlinks=False).st_mode):
                raise
        s = os.open(name, DIR_FLAGS, dir_fd=src_dir)
        try:
            d = os.open(dst_name, DIR_FLAGS, dir_fd=dst_dir)  # O_NOFOLLOW: a symlink put in its place is refused
            try:
                total = copy_contents(s, d, owner)
                set_attrs(d, uid, gid, stat.S_IMODE(st.st_mode), times)
            finally:
                os.close(d)
        finally:
            os.close(s)
        return total
    if stat.S_ISLNK(st.st_mode):
        _remove(dst_dir, dst_name)
        os.symlink(os.readlink(name, dir_fd=src_dir), dst_name, dir_fd=dst_dir)
        set_link_attrs(dst_dir, dst_name, uid, gid, times)
        return 0
    if not stat.S_ISREG(st.st_mode):
        return 0
    s = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
    try:
        _remove(dst_dir, dst_name)
        d = os.open(dst_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                    dir_fd=dst_dir)
        try:
            total = 0
            while True:
                n = os.sendfile(d, s, None, 1 << 20)
                if n == 0:
                    break
                total += n
            set_attrs(d, uid, gid, stat.S_IMODE(st.st_mode), times)
        finally:
            os.close(d)
    finally:
        os.close(s)
    return total


def copy_contents(src: int, dst: int, owner: Owner = PRESERVE) -> int:
    """Every entry of directory fd `src` into directory fd `dst`."""
    total = 0
    for name in os.listdir(src):
        total += copy_entry(src, name, dst, name, owner)
    return total


def copy_as(src_dir: int, name: str, dst_dir: int, dst_name: str, owner: Owner, contents: bool) -> None:
    """`name` as `dst_name`; with `contents` (cp SRC/.), what the directory `name` holds
    into `dst_dir` itself."""
    if not contents:
        copy_entry(src_dir, name, dst_dir, dst_name, owner)
        return
    s = os.open(name, DIR_FLAGS, dir_fd=src_dir)
    try:
        copy_contents(s, dst_dir, owner)
    finally:
        os.close(s)


def _remove(dir_fd: int, name: str) -> None:
    """A file (not a directory) in the way of a copy goes, as with cp."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"cannot overwrite directory {name} with a non-directory")
    os.unlink(name, dir_fd=dir_fd)


def is_empty(dir_fd: int) -> bool:
    return not os.listdir(dir_fd)
