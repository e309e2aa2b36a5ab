"""Inside the container, as its PID 1: wait for "go", build the root filesystem, drop privileges, execve.

This code runs in the process the shim forked after unsharing the namespaces. It is a fork
of the minibox CLI, so every module it needs is already imported; that matters, because
after pivot_root the virtualenv is no longer visible and a late import would fail.

Failures are reported to the CLI over an O_CLOEXEC pipe as "CODE message": an execve that
succeeds closes the pipe, so EOF there means the command is running.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import socket
import struct
import termios
from dataclasses import dataclass

import prctl

from minibox.errors import EXIT_CANNOT_EXEC, EXIT_MINIBOX, EXIT_NOT_FOUND
from minibox.plan.mounts import MASKED_PATHS, READONLY_PATHS
from minibox.plan.steps import (
    MS_BIND, MS_PRIVATE, MS_REC, MS_REMOUNT, DropCapabilities, Exec, LinkUp, MakeDir, MakeNode, Mount, MoveRoot,
    PivotRoot, SetHostname, Step, Symlink,
)
from minibox.runtime import caps, linux

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


@dataclass
class InitConfig:
    # Mounts ending in PivotRoot, SetHostname, LinkUp("lo") when the network namespace is
    # the container's own, DropCapabilities, and last Exec: applied in this order.
    steps: list[Step]
    tty: bool

    @property
    def argv(self) -> tuple[str, ...]:
        return self.steps[-1].argv


@dataclass
class InitFds:
    go: int  # read end: one byte "g" from the CLI when networking and cgroups are ready
    err: int  # write end, O_CLOEXEC: "CODE message" on failure
    stdin: int  # /dev/null, or the caller's stdin with -i
    stdout: int  # pipe to the shim (no tty)
    stderr: int
    console: int  # unix socket to the shim: the pty master goes over it (tty)


class InitError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def container_main(cfg: InitConfig, fds: InitFds) -> None:
    """Never returns: execve()s the container command, or _exit()s with Docker's code."""
    try:
        prctl.set_pdeathsig(signal.SIGKILL)  # the shim gone means nobody records us
        if os.read(fds.go, 1) != b"g":
            os._exit(EXIT_MINIBOX)  # the CLI gave up (rolled back); leave quietly
        os.close(fds.go)
        os.setsid()
        for step in cfg.steps:
            if isinstance(step, DropCapabilities):
                setup_stdio(cfg, fds)  # plumbing, not a step: while we may still open things
            apply_step(step)
    except InitError as e:
        fail(fds.err, e.code, str(e))
    except OSError as e:
        code = EXIT_CANNOT_EXEC if e.errno in (errno.EACCES, errno.ENOEXEC, errno.EISDIR) else EXIT_MINIBOX
        fail(fds.err, code, f"exec {cfg.argv[0]!r}: {e.strerror}" if code != EXIT_MINIBOX else str(e))
    except BaseException as e:  # noqa: BLE001 - nothing may escape a forked child
        fail(fds.err, EXIT_MINIBOX, f"container init: {e!r}")


def fail(err_fd: int, code: int, message: str) -> None:
    try:
        os.write(err_fd, f"{code} {message}".encode())
    finally:
        os._exit(code)


def apply_step(step: Step) -> None:
    """Carry out one filesystem/identity step of the plan."""
    if isinstance(step, Mount):
        _mount(step)
    elif isinstance(step, MakeDir):
        os.makedirs(step.path, exist_ok=True)
        os.chmod(step.path, step.mode)
    elif isinstance(step, MakeNode):
        os.mknod(step.path, 0o020000 | step.mode, os.makedev(step.major, step.minor))
        os.chmod(step.path, step.mode)  # mknod's mode is filtered by the umask
    elif isinstance(step, Symlink):
        os.symlink(step.target, step.path)
    elif isinstance(step, PivotRoot):
        # runc's trick: pivot onto "." with "." as put_old, then lazily detach the old
        # root, which is now stacked under the new one; no put_old directory needed.
        os.chdir(step.new_root)
        try:
            linux.pivot_root(".", ".")
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            # EINVAL: our '/' is not a mount point (minibox itself runs in a chroot), and
            # pivot_root cannot swap it: fall back to MoveRoot.
            _move_root()
        else:
            linux.umount2(".", linux.MNT_DETACH)
        os.chdir("/")
    elif isinstance(step, MoveRoot):
        os.chdir(step.new_root)
        _move_root()
        os.chdir("/")
    elif isinstance(step, SetHostname):
        linux.sethostname(step.hostname)
    elif isinstance(step, LinkUp) and step.dev == "lo":
        loopback_up()
    elif isinstance(step, DropCapabilities):
        caps.drop_privileges(step.keep)
    elif isinstance(step, Exec):
        enter_workdir(step.workdir)
        path = resolve_command(step.argv[0], step.env)
        caps.reset_signals()
        os.execve(path, list(step.argv), env_dict(step.env))
    else:
        raise InitError(EXIT_MINIBOX, f"container init cannot apply {type(step).__name__}")


def _move_root() -> None:
    """What `runc --no-pivot` does: move the new root (our cwd) over '/' and chroot into it."""
    linux.mount(".", "/", None, linux.MS_MOVE)
    os.chroot(".")


def _optional_target(target: str) -> bool:
    """Masked and read-only paths that this kernel does not have are skipped, as runc does."""
    return any(target.endswith(p) for p in MASKED_PATHS + READONLY_PATHS)


def _make_all_private() -> None:
    """'/' is not a mount point (a chroot): make each mount we can see private instead."""
    with open("/proc/self/mountinfo") as f:
        points = sorted({line.split()[4] for line in f}, key=len)
    for mp in points:
        try:
            linux.mount("none", mp, None, MS_REC | MS_PRIVATE)
        except OSError:
            pass  # outside our chroot, or gone


def _mount(step: Mount) -> None:
    if step.flags & MS_PRIVATE and step.target == "/":
        try:
            linux.mount(step.source, "/", None, step.flags)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            _make_all_private()
        return
    if step.flags & MS_BIND and not step.flags & MS_REMOUNT and step.source.endswith(
            ("/hostname", "/hosts", "/resolv.conf")):
        # The image may lack /etc/hosts & co; the bind needs a file to cover.
        os.makedirs(os.path.dirname(step.target), exist_ok=True)
        if not os.path.lexists(step.target):
            open(step.target, "a").close()
    try:
        linux.mount(step.source, step.target, step.fstype or None, step.flags, step.data or None)
    except FileNotFoundError:
        if not _optional_target(step.target):
            raise


def loopback_up() -> None:
    """`ip link set lo up` by ioctl: a new network namespace starts with lo down, and this
    spares a --network none container the cost of loading netlink machinery."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def setup_stdio(cfg: InitConfig, fds: InitFds) -> None:
    if cfg.tty:
        # Opened after pivot_root, so /dev/ptmx is the container's own devpts instance and
        # `tty` inside prints /dev/pts/0. The master goes to the shim, which relays it.
        master, slave = os.openpty()
        socket.socket(fileno=fds.console).sendmsg(
            [b"t"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", master))])
        os.close(master)
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for target in (0, 1, 2):
            os.dup2(slave, target)
        if slave > 2:
            os.close(slave)
    else:
        os.dup2(fds.stdin, 0)
        os.dup2(fds.stdout, 1)
        os.dup2(fds.stderr, 2)


def enter_workdir(workdir: str) -> None:
    # Docker creates a missing working directory rather than failing.
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)


def env_dict(env: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in env:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def resolve_command(cmd: str, env: tuple[str, ...]) -> str:
    """Find the program as execvp would, with the errors Docker reports (126/127)."""
    if "/" in cmd:
        candidates = [cmd]
    else:
        path = env_dict(env).get("PATH", "/usr/bin:/bin")
        candidates = [os.path.join(d or ".", cmd) for d in path.split(":")]
    denied = None
    for c in candidates:
        if os.path.isfile(c):
            if os.access(c, os.X_OK):
                return c
            denied = c
        elif os.path.isdir(c) and "/" in cmd:
            raise InitError(EXIT_CANNOT_EXEC, f'exec "{cmd}": is a directory')
    if denied:
        raise InitError(EXIT_CANNOT_EXEC, f'exec "{cmd}": permission denied')
    if "/" in cmd:
        raise InitError(EXIT_NOT_FOUND, f'exec "{cmd}": no such file or directory')
    raise InitError(EXIT_NOT_FOUND, f'exec "{cmd}": executable file not found in $PATH')
