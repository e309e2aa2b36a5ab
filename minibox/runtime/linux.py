"""Thin ctypes wrappers for the syscalls Python 3.11 lacks: unshare, setns, mount, umount2, pivot_root.

Each raises OSError with errno set, like the os module does, so callers can tell EPERM from
ENOENT. sethostname is os-less too, so it lives here.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWCGROUP = 0x02000000

# Namespace name (as in /proc/PID/ns/NAME) -> clone flag, in the order exec joins them:
# the mount namespace last, because after it the host's /proc is out of reach.
NAMESPACES = (("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS), ("net", CLONE_NEWNET),
              ("pid", CLONE_NEWPID), ("mnt", CLONE_NEWNS))

MNT_DETACH = 2
MS_MOVE = 8192
SYS_PIVOT_ROOT = 155  # x86_64

# By soname: ctypes.util.find_library("c") runs `ldconfig -p` (milliseconds, every start).
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.syscall.restype = ctypes.c_long


def _check(ret: int, what: str, path: str | None = None) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)


def _b(s: str | None) -> bytes | None:
    return s.encode() if s is not None else None


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), f"mount {target}", target)


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), f"umount {target}", target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(SYS_PIVOT_ROOT, _b(new_root), _b(put_old)), "pivot_root", new_root)


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")


def statfs_type(path: str) -> int:
    """f_type of statfs(2): which filesystem is mounted at `path` (os.statvfs lacks it)."""
    buf = ctypes.create_string_buffer(128)  # struct statfs; f_type is its first field
    _check(_libc.statfs(path.encode(), buf), "statfs", path)
    return int.from_bytes(buf.raw[:8], "little")


PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4


def clear_ambient_caps() -> None:
    """python-prctl 1.8 has no ambient-set call; this is prctl(PR_CAP_AMBIENT, CLEAR_ALL)."""
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl(PR_CAP_AMBIENT)")
