"""Thin ctypes wrappers for the syscalls Python 3.11 lacks: unshare, setns, mount, pivot_root, openat2, bpf, seccomp.

Each raises OSError with errno set, like the os module does, so callers can tell EPERM from
ENOENT. sethostname and statfs's f_type are os-less too, so they live here.
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
CLONE_NEWUSER = 0x10000000

# Namespace name (as in /proc/PID/ns/NAME) -> clone flag, in the order exec joins them:
# the mount namespace last, because after it the host's /proc is out of reach.
NAMESPACES = (("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS), ("net", CLONE_NEWNET),
              ("pid", CLONE_NEWPID), ("mnt", CLONE_NEWNS))

MNT_DETACH = 2
# x86_64 numbers; openat2 (437) is the same on every architecture since it was added (5.6).
SYS_PIVOT_ROOT = 155
SYS_SECCOMP = 317
SYS_BPF = 321
SYS_OPENAT2 = 437

# openat2's resolve flags (linux/openat2.h)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_IN_ROOT = 0x10

# By soname: ctypes.util.find_library("c") runs `ldconfig -p` (milliseconds, every start).
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.syscall.restype = ctypes.c_long
_libc.statfs.argtypes = (ctypes.c_char_p, ctypes.c_void_p)


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


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, ctypes.c_size_t(len(raw))), "setdomainname")


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): open `path` relative to `dirfd` under the `resolve` rules; returns the fd."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    fd = _libc.syscall(SYS_OPENAT2, ctypes.c_int(dirfd), _b(path), ctypes.byref(how), ctypes.c_size_t(24))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


def bpf(cmd: int, attr: bytes) -> int:
    """bpf(2) with a raw `union bpf_attr`; returns what the kernel returned (an fd for loads)."""
    buf = ctypes.create_string_buffer(attr, len(attr))
    ret = _libc.syscall(SYS_BPF, ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf: {os.strerror(err)}")
    return ret


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


SECCOMP_SET_MODE_FILTER = 1


def seccomp_load(program: bytes) -> None:
    """Install a classic-BPF seccomp filter (struct sock_filter[], 8 bytes each) on this
    thread. Needs no_new_privs (or CAP_SYS_ADMIN); applies across execve."""
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    ret = _libc.syscall(SYS_SECCOMP, ctypes.c_uint(SECCOMP_SET_MODE_FILTER), ctypes.c_uint(0), ctypes.byref(prog))
    _check(0 if ret == 0 else -1, "seccomp")


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


PR_CAP_AMBIENT_RAISE = 2
PR_CAPBSET_DROP = 24
SYS_CAPGET, SYS_CAPSET = 125, 126
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def ambient_raise(cap: int) -> None:
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0), "prctl(PR_CAP_AMBIENT_RAISE)")


def capbset_drop(cap: int) -> None:
    _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "prctl(PR_CAPBSET_DROP)")


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """The three capability sets of this thread, as 64-bit masks. python-prctl 1.8 knows
    capabilities up to 37 only, and an OCI config may name (or must drop) 38-40."""
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)(effective & 0xFFFFFFFF, permitted & 0xFFFFFFFF, inheritable & 0xFFFFFFFF,
                                 effective >> 32, permitted >> 32, inheritable >> 32)
    ret = _libc.syscall(SYS_CAPSET, ctypes.byref(header), ctypes.byref(data))
    _check(0 if ret == 0 else -1, "capset")


def capget() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of this thread, as 64-bit masks."""
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    ret = _libc.syscall(SYS_CAPGET, ctypes.byref(header), ctypes.byref(data))
    _check(0 if ret == 0 else -1, "capget")
    return data[0] | data[3] << 32, data[1] | data[4] << 32, data[2] | data[5] << 32
