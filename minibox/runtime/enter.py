"""The one exec path: another process in a running container, for `minibox exec` and `minibox-oci exec` alike.

    E0 (the caller; a child subreaper) ── fork ──> E1: join the cgroups, setns into PID 1's
      relays stdio (minibox),                  namespaces (user first, mount last), chroot
      or leaves it to the engine,              to its root, fork ──> the process: its stdio,
      waits for the process                    then the steps plan.oci.plan_process made of
                                               its spec's `process` (runtime.applier), ending
                                               in the sealed execve (runtime.sealed)

Every namespace of PID 1 that is not the caller's own is joined; all of /proc/PID/ns/* is
opened first, because after setns(mnt) the host's /proc is gone. setns(CLONE_NEWPID) only
decides where *children* go, hence the fork. E1 waits for the process's execve (its error
pipe closes) and reports "pid N", or the failure ("CODE message", 126/127 as Docker's);
the process, orphaned when E1 leaves, comes back to E0, which waits for it.

A caller whose children already start in the container's PID namespace (children_in: the
health monitor, which starts a check every interval) needs no E1:
its one fork joins the rest and is the process, one process start per exec.

The caller's terminal never reaches the container: with "pipes" the command gets pipes that
E0 copies to its own stdin/stdout/stderr, and a session of its own, so it has no
controlling terminal (a TIOCSTI on an inherited terminal would type commands into the
caller's shell). With "pty" it gets a pty of the container's own devpts, relayed the same
way; with "console" that pty goes to an engine's console socket; with "inherit" the engine's
own fds are the process's (minibox-oci).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import socket
import struct
import termios

import prctl

from minibox import linux
from minibox.errors import EXIT_MINIBOX, ExecFailed, MiniboxError
from minibox.plan.steps import Step
from minibox.runtime import cgroups, command, init, procs, sealed, tty
from minibox.runtime.applier import Applier
from minibox.value import Value

NS_ORDER = ("user", "ipc", "uts", "net", "pid", "cgroup", "mnt")  # user first: the rest are its; mnt last
NS_FLAGS = {"user": linux.CLONE_NEWUSER, "ipc": linux.CLONE_NEWIPC, "uts": linux.CLONE_NEWUTS,
            "net": linux.CLONE_NEWNET, "pid": linux.CLONE_NEWPID, "cgroup": linux.CLONE_NEWCGROUP,
            "mnt": linux.CLONE_NEWNS}
STOPPED = "the container stopped while exec was starting"


class Stopped(Exception):
    """The container went away while exec was joining it."""


class EnterConfig(Value):
    pid: int  # the container's PID 1 on the host
    cgroup_dirs: tuple[str, ...]
    steps: tuple[Step, ...]  # the process's own (plan.oci.plan_process), ending with Exec
    execer: str  # minibox-exec, the program the command is exec'd through (runtime.sealed)
    stdio: str = "pipes"  # "pipes" or "pty" (relayed by E0), "console" or "inherit" (an engine's)
    interactive: bool = False  # stdin is relayed too
    console: int = -1  # "console": the connected console socket
    console_size: tuple[int, int] = (0, 0)
    detach: bool = False  # return once the process runs (its PID to on_pid)
    preserve_fds: int = 0  # fds 3.. handed on (an engine's LISTEN_FDS)
    output_limit: int = 0  # "pipes": copy at most this many bytes of output, drain the rest (0: all)


def namespaces(pid: int) -> list[str]:
    """PID 1's namespaces that a child of ours would not be in: the ones to join, in order."""
    out = []
    for ns in NS_ORDER:
        ours = "pid_for_children" if ns == "pid" and os.path.exists("/proc/self/ns/pid_for_children") else ns
        try:  # (pid_for_children: Linux 4.12+)
            if os.stat(f"/proc/{pid}/ns/{ns}").st_ino != os.stat(f"/proc/self/ns/{ours}").st_ino:
                out.append(ns)
        except FileNotFoundError:
            if ns in ("pid", "mnt"):
                raise Stopped() from None
    return out


@contextlib.contextmanager
def children_in(pid: int):
    """For the block, this process's children start in the PID namespace of `pid` (its own
    stays the host's): each enter() in it forks once. After it, children start in ours again,
    so nothing else this process runs can land in a container."""
    try:
        fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        raise Stopped() from None
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.setns(fd, linux.CLONE_NEWPID)
        yield
    finally:
        linux.setns(own, linux.CLONE_NEWPID)
        os.close(own)
        os.close(fd)


def enter(cfg: EnterConfig, on_pid=None) -> int:
    """Start the process; its exit status (Docker's 126/127 when it cannot start: ExecFailed),
    or 0 at once with `detach`. `on_pid(pid)` learns its host PID as soon as it runs."""
    if cfg.stdio == "pty" and cfg.interactive and not os.isatty(0):
        raise MiniboxError("the input device is not a TTY: drop -t, or run from a terminal")
    nsfds: list[tuple[str, int]] = []
    try:
        joining = namespaces(cfg.pid)
        direct = "pid" not in joining  # our children start in its PID namespace already: no E1
        for ns in joining:
            nsfds.append((ns, os.open(f"/proc/{cfg.pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)))
        # The container's root, as its PID 1 sees it: after setns(mnt) E1 chroots to it, which
        # matters when the container had to chroot instead of pivot_root (see runtime.pivot).
        rootfd = os.open(f"/proc/{cfg.pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        for _, fd in nsfds:
            os.close(fd)
        raise Stopped() from None
    exec_fd = sealed.prepare(cfg.execer)  # non-dumpable from here, and the host's file still in reach
    prctl.set_child_subreaper(True)  # the process, orphaned by E1, comes back to us
    said_r, said_w = os.pipe()
    con_parent = con_child = None
    pipes: Pipes | None = None
    if cfg.stdio == "pty":
        con_parent, con_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    elif cfg.stdio == "pipes":
        pipes = Pipes.make(cfg.interactive)
    try:
        e1 = os.fork()
    except OSError as e:  # ENOMEM: the namespace our children go to has lost its PID 1
        for fd in [said_r, said_w, rootfd, exec_fd] + [fd for _, fd in nsfds] + \
                (list(pipes.child + pipes.ours) if pipes else []):
            if fd >= 0:
                os.close(fd)
        if e.errno == errno.ENOMEM:
            raise Stopped() from None
        raise
    if e1 == 0:
        os.close(said_r)
        if direct:
            _join(cfg, nsfds, rootfd, said_w)
            _process(cfg, exec_fd, said_w, con_child, pipes)  # never returns
        _e1(cfg, nsfds, rootfd, exec_fd, said_w, con_child, pipes)  # never returns
    for fd in [said_w, rootfd, exec_fd] + [fd for _, fd in nsfds]:
        os.close(fd)
    if con_child is not None:
        con_child.close()
    if cfg.console >= 0:
        os.close(cfg.console)
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the command
    try:
        pid = _started(said_r, e1, pipes, direct)
        if on_pid is not None:
            on_pid(pid)
        if cfg.detach:
            return 0
        if con_parent is not None:
            master = _recv_fd(con_parent)
            if master >= 0:
                with tty.raw_mode(0):
                    tty.relay(master, stdin_open=cfg.interactive)
                os.close(master)
        elif pipes is not None:
            pipes.relay(cfg.output_limit)
        return procs.wait_child(pid)
    finally:
        signal.signal(signal.SIGINT, old_int)
        if con_parent is not None:
            con_parent.close()


def _started(said_r: int, e1: int, pipes: Pipes | None, direct: bool) -> int:
    """E1's report: the process's PID once it runs, or its failure raised. `direct`: E1 is
    the process, and its execve closing the pipe with nothing said is the report."""
    with os.fdopen(said_r, "rb") as f:
        said = f.read().decode(errors="replace")
    if direct and not said:
        return e1
    os.waitpid(e1, 0)
    if said.startswith("pid "):
        return int(said.split()[1])
    if pipes is not None:
        pipes.close_child_ends()
        for fd in pipes.ours:
            if fd >= 0:
                os.close(fd)
    code, _, text = said.partition(" ")
    if text == STOPPED:
        raise Stopped()
    raise ExecFailed(text or "exec: the helper ended before starting the process",
                     int(code) if code.isdigit() else EXIT_MINIBOX)


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

    def relay(self, limit: int = 0) -> None:
        """Copy our stdin to the command and its output to ours until both outputs close;
        with a `limit`, output past that many bytes is read and dropped (a health check's)."""
        self.close_child_ends()
        room = limit or -1
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
                if room >= 0:
                    data = data[:room]
                    room -= len(data)
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


def _e1(cfg: EnterConfig, nsfds, rootfd: int, exec_fd: int, said_w: int, con: socket.socket | None,
        pipes: Pipes | None) -> None:
    """The forked helper: joins, forks the process, reports. Never returns."""
    try:
        _join(cfg, nsfds, rootfd, said_w)
        err_r, err_w = os.pipe()
        try:
            pid = os.fork()
        except OSError as e:
            # ENOMEM: the namespace's PID 1 is gone (the container was removed meanwhile)
            command.fail(said_w, EXIT_MINIBOX, STOPPED if e.errno == errno.ENOMEM else f"exec: {e}")
        if pid == 0:
            os.close(err_r)
            os.close(said_w)
            _process(cfg, exec_fd, err_w, con, pipes)  # never returns
        os.close(err_w)
        failed = os.read(err_r, 4096)  # EOF: the execve closed its O_CLOEXEC end
        if failed:
            os.waitpid(pid, 0)
            os.write(said_w, failed)
        else:
            os.write(said_w, f"pid {pid}".encode())
        os._exit(0)
    except BaseException as e:  # noqa: BLE001 - a forked child must never return into the caller
        command.fail(said_w, EXIT_MINIBOX, f"exec: {e}")


def _join(cfg: EnterConfig, nsfds, rootfd: int, said_w: int) -> None:
    """In the forked child: the container's cgroups, its namespaces, its root."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            cgroups.join(cfg.cgroup_dirs, 0)  # before setns(mnt) hides /sys/fs/cgroup
        except MiniboxError:
            command.fail(said_w, EXIT_MINIBOX, STOPPED)
        for ns, fd in nsfds:
            try:
                linux.setns(fd, NS_FLAGS[ns])
            except OSError as e:
                command.fail(said_w, EXIT_MINIBOX,
                             STOPPED if e.errno in (errno.EINVAL, errno.ENOENT) else f"exec: {e}")
            os.close(fd)
        os.fchdir(rootfd)
        os.chroot(".")
        os.close(rootfd)
    except BaseException as e:  # noqa: BLE001 - a forked child must never return into the caller
        command.fail(said_w, EXIT_MINIBOX, f"exec: {e}")


def _process(cfg: EnterConfig, exec_fd: int, err_w: int, con: socket.socket | None, pipes: Pipes | None) -> None:
    try:
        if cfg.stdio == "pty":
            os.setsid()  # a session of its own: no controlling terminal but its own pty
            master, slave = os.openpty()  # the container's /dev/ptmx: we are in its mount ns
            con.sendmsg([b"t"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", master))])
            os.close(master)
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for target in (0, 1, 2):  # without -i the pty is still stdin; we just send it nothing
                os.dup2(slave, target)
        elif cfg.stdio == "console":
            init.setup_terminal(cfg.console, cfg.console_size, console_node=False)
        elif pipes is not None:
            os.setsid()
            for target, fd in enumerate(pipes.child):
                os.dup2(fd, target)
            for fd in pipes.child + pipes.ours:
                if fd > 2:
                    os.close(fd)
        else:
            os.setsid()  # never the engine's terminal session
        for fd in range(3, 3 + cfg.preserve_fds):
            os.set_inheritable(fd, True)
        applier = Applier("/", exec_fd, f"f{err_w}")
        applier.pivoted = True  # the root it joined is its root already
        for step in cfg.steps:
            applier.apply(step)
    except command.InitError as e:
        command.fail(err_w, e.code, str(e))
    except FileNotFoundError as e:
        command.fail(err_w, EXIT_MINIBOX, f"exec: {e.strerror}: {e.filename}")
    except BaseException as e:  # noqa: BLE001
        command.fail(err_w, EXIT_MINIBOX, f"exec: {getattr(e, 'strerror', None) or e}")
