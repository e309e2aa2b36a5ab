"""exec: run a new process inside a running container's namespaces, cgroup and privileges.

    minibox (CLI) ── fork ──> helper: join cgroup, setns(ipc, uts, net, pid, mnt)
      relays stdio             └─ fork ──> the command (now PID n of the container), execve

All of /proc/PID/ns/* is opened first, because after setns(mnt) the host's /proc is gone.
setns(CLONE_NEWPID) only decides where *children* go, hence the second fork.

The caller's terminal never reaches the container: without -t the command gets pipes,
which the CLI copies to its own stdin/stdout/stderr, and a session of its own, so it has no
controlling terminal (a TIOCSTI on an inherited terminal would type commands into the
caller's shell). With -t it gets a pty of the container's own devpts, relayed the same way.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import socket
import struct
import termios

from minibox import linux
from minibox.errors import EXIT_MINIBOX, ExecFailed, MiniboxError
from minibox.plan.steps import (
    CgroupJoin,
    DropCapabilities,
    Exec,
    LoadSeccomp,
    Nsenter,
    SetUser,
)
from minibox.runtime import caps, cgroups, command, sealed, tty
from minibox.value import Value


class Stopped(Exception):
    """The container went away while exec was joining it."""


class EnterConfig(Value):
    pid: int  # the container's PID 1 on the host
    argv: tuple[str, ...]
    env: tuple[str, ...]
    workdir: str
    tty: bool
    interactive: bool
    cgroup_dirs: list[str]
    namespaces: tuple[str, ...] = ("ipc", "uts", "net", "pid", "mnt")
    caps: tuple[str, ...] = caps.DEFAULT_CAPS
    seccomp: bytes = b""  # the filter to load right before execve
    user: tuple[int, int, tuple[int, ...]] | None = None  # uid, gid, groups; None: stay root
    execer: str = ""  # minibox-exec, the program the command is exec'd through (runtime.sealed)

    @classmethod
    def from_steps(cls, steps: list, tty: bool, interactive: bool, execer: str) -> "EnterConfig":
        """From the steps `exec --explain` prints: Nsenter, CgroupJoin..., DropCapabilities,
        LoadSeccomp, Exec."""
        ns = next(s for s in steps if isinstance(s, Nsenter))
        drop = next(s for s in steps if isinstance(s, DropCapabilities))
        ex = next(s for s in steps if isinstance(s, Exec))
        filt = next((s for s in steps if isinstance(s, LoadSeccomp)), None)
        who = next((s for s in steps if isinstance(s, SetUser)), None)
        return cls(pid=int(ns.pid), argv=ex.argv, env=ex.env, workdir=ex.workdir, tty=tty,
                   interactive=interactive, cgroup_dirs=[s.path for s in steps if isinstance(s, CgroupJoin)],
                   namespaces=ns.namespaces, caps=drop.keep, seccomp=filt.program if filt else b"",
                   user=(who.uid, who.gid, who.groups) if who else None, execer=execer)


def enter(cfg: EnterConfig) -> int:
    """Run the command; return its exit code (Docker's 126/127 when it cannot start)."""
    if cfg.tty and cfg.interactive and not os.isatty(0):
        raise MiniboxError("the input device is not a TTY: drop -t, or run from a terminal")
    nsfds = []
    try:
        for name, flag in linux.NAMESPACES:
            if name in cfg.namespaces:
                nsfds.append((os.open(f"/proc/{cfg.pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC), flag))
        # The container's root, as its PID 1 sees it: after setns(mnt) we chroot to it, which
        # matters when the container had to chroot instead of pivot_root (see runtime.init).
        rootfd = os.open(f"/proc/{cfg.pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        for fd, _ in nsfds:
            os.close(fd)
        raise Stopped() from None
    err_r, err_w = os.pipe()
    con_parent = con_child = None
    pipes: Pipes | None = None
    if cfg.tty:
        con_parent, con_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        pipes = Pipes.make(cfg.interactive)

    helper = os.fork()
    if helper == 0:
        _helper(cfg, nsfds, rootfd, err_w, con_child, pipes)
    os.close(err_w)
    os.close(rootfd)
    for fd, _ in nsfds:
        os.close(fd)
    if con_child is not None:
        con_child.close()
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the command
    try:
        if con_parent is not None:
            master = _recv_fd(con_parent)
            if master >= 0:
                with tty.raw_mode(0):
                    tty.relay(master, stdin_open=cfg.interactive)
                os.close(master)
        elif pipes is not None:
            pipes.relay()
        _, status = os.waitpid(helper, 0)
    finally:
        signal.signal(signal.SIGINT, old_int)
        if con_parent is not None:
            con_parent.close()
    message = os.read(err_r, 4096).decode(errors="replace")
    os.close(err_r)
    code = os.waitstatus_to_exitcode(status)
    if message == f"{EXIT_MINIBOX} {STOPPED}":
        raise Stopped()
    if message:
        c, _, text = message.partition(" ")
        raise ExecFailed(text, int(c) if c.isdigit() else EXIT_MINIBOX)
    return code if code >= 0 else 128 - code


STOPPED = "the container stopped while exec was starting"


class Pipes(Value):
    """The command's stdin (with -i), stdout and stderr as pipes the CLI copies."""

    child: tuple[int, int, int]  # what the command gets as 0, 1, 2 (stdin: /dev/null without -i)
    ours: tuple[int, int, int]  # stdin's write end (-1 without -i), stdout's and stderr's read ends

    @classmethod
    def make(cls, interactive: bool) -> "Pipes":
        in_r, in_w = os.pipe() if interactive else (os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), -1)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        return cls((in_r, out_w, err_w), (in_w, out_r, err_r))

    def close_child_ends(self) -> None:
        for fd in self.child:
            os.close(fd)

    def relay(self) -> None:
        """Copy our stdin to the command and its output to ours until both outputs close."""
        self.close_child_ends()
        in_w, out_r, err_r = self.ours
        sinks = {out_r: 1, err_r: 2}
        stdin_open = in_w >= 0
        while sinks:
            watch = list(sinks) + ([0] if stdin_open else [])
            try:
                ready, _, _ = select.select(watch, [], [])
            except InterruptedError:
                continue
            for fd in ready:
                if fd == 0:
                    data = os.read(0, 65536)
                    try:
                        if not data:
                            raise BrokenPipeError
                        os.write(in_w, data)
                    except BrokenPipeError:
                        os.close(in_w)  # EOF for the command, or it stopped reading
                        stdin_open = False
                    continue
                data = os.read(fd, 65536)
                if not data:
                    os.close(fd)
                    del sinks[fd]
                    continue
                try:
                    os.write(sinks[fd], data)
                except BrokenPipeError:
                    pass  # our reader went away; keep draining so the command is not blocked
        if stdin_open:
            os.close(in_w)


def _recv_fd(sock: socket.socket) -> int:
    _, ancdata, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(4))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            return struct.unpack("i", data[:4])[0]
    return -1


def _helper(cfg: EnterConfig, nsfds, rootfd: int, err_w: int, con: socket.socket | None,
            pipes: Pipes | None) -> None:
    """The forked helper: never returns."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        exec_fd = sealed.prepare(cfg.execer)  # before joining: non-dumpable, and the host's file still in reach
        try:
            cgroups.join(cfg.cgroup_dirs, os.getpid())  # before setns(mnt) hides /sys/fs/cgroup
        except FileNotFoundError:
            command.fail(err_w, EXIT_MINIBOX, STOPPED)
        for fd, flag in nsfds:
            try:
                linux.setns(fd, flag)
            except OSError as e:
                command.fail(err_w, EXIT_MINIBOX, STOPPED if e.errno in (errno.EINVAL, errno.ENOENT) else f"exec: {e}")
            os.close(fd)
        os.fchdir(rootfd)
        os.chroot(".")
        os.close(rootfd)
        try:
            child = os.fork()
        except OSError as e:
            # ENOMEM: the namespace's PID 1 is gone (the container was removed meanwhile)
            command.fail(err_w, EXIT_MINIBOX, STOPPED if e.errno == errno.ENOMEM else f"exec: {e}")
        if child == 0:
            _command(cfg, err_w, con, pipes, exec_fd)
        if pipes is not None:
            pipes.close_child_ends()
            for fd in pipes.ours:
                if fd >= 0:
                    os.close(fd)
        _, status = os.waitpid(child, 0)
        code = os.waitstatus_to_exitcode(status)
        os._exit(code if code >= 0 else 128 - code)
    except BaseException as e:  # noqa: BLE001 - a forked child must never return into the CLI
        command.fail(err_w, EXIT_MINIBOX, f"exec: {e}")


def _command(cfg: EnterConfig, err_w: int, con: socket.socket | None, pipes: Pipes | None, exec_fd: int) -> None:
    try:
        os.setsid()  # a session of its own: no controlling terminal but, with -t, its own pty
        if cfg.tty:
            master, slave = os.openpty()  # the container's /dev/ptmx: we are in its mount ns
            con.sendmsg([b"t"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", master))])
            os.close(master)
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for target in (0, 1, 2):  # without -i the pty is still stdin; we just send it nothing
                os.dup2(slave, target)
        else:
            for target, fd in enumerate(pipes.child):
                os.dup2(fd, target)
            for fd in pipes.child + pipes.ours:
                if fd > 2:
                    os.close(fd)
        os.chdir(cfg.workdir)
        path = command.resolve_command(cfg.argv[0], cfg.env)
        caps.drop_privileges(cfg.caps)
        if cfg.user is not None:
            caps.set_user(*cfg.user)
        command.execute(path, cfg.argv, cfg.env, cfg.seccomp, exec_fd, f"f{err_w}")
    except command.InitError as e:
        command.fail(err_w, e.code, str(e))
    except FileNotFoundError as e:
        command.fail(err_w, EXIT_MINIBOX, f"exec: working directory: {e.strerror}: {cfg.workdir}")
    except BaseException as e:  # noqa: BLE001
        command.fail(err_w, EXIT_MINIBOX, f"exec: {e}")
