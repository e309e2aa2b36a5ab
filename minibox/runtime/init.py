"""PID 1 of every container, `run`'s and minibox-oci's: its namespaces, "ready", "go", then the plan's steps through the one Applier.

This code runs in a fork of the launcher (runtime.launcher), so every module it needs is
already imported; that matters, because after pivot_root (or in a user namespace) the
interpreter's own files may be out of reach and a late import would fail.

It speaks to the launcher (P0) over one SOCK_SEQPACKET socket, a message a record:
"ready" once its namespaces exist; then it waits for "go PID"; "runtime-hooks" asks P0 to
run prestart/createRuntime (answered "ok"); "created" says the WaitStart step is reached
(create/start). A failure is "CODE message", CODE the exit status (126/127 as Docker's).
The socket is close-on-exec: EOF at P0 means the command is running. After "created",
P0 has gone, and a failure is written to the container's stderr instead.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import socket
import struct
import sys
import termios

import prctl

from minibox import linux
from minibox.errors import EXIT_CANNOT_EXEC, EXIT_MINIBOX
from minibox.plan.steps import (
    MS_BIND,
    Exec,
    LoadSeccomp,
    OomScoreAdj,
    PivotRoot,
    RunHook,
    SetCapabilities,
    SetRlimit,
    SetUser,
    WaitStart,
)
from minibox.runtime import cgroups, command
from minibox.runtime.applier import Applier
from minibox.runtime.command import InitError
from minibox.value import Value

NS_FLAGS = {"pid": linux.CLONE_NEWPID, "net": linux.CLONE_NEWNET, "mount": linux.CLONE_NEWNS,
            "ipc": linux.CLONE_NEWIPC, "uts": linux.CLONE_NEWUTS, "user": linux.CLONE_NEWUSER,
            "cgroup": linux.CLONE_NEWCGROUP, "time": 0x00000080}
# The first of these (or WaitStart) is where the container's own stdio replaces the
# launcher's: the privileges still allow opening its pty.
PROCESS_STEPS = (OomScoreAdj, SetRlimit, SetUser, SetCapabilities, LoadSeccomp, WaitStart, Exec)


class Stdio(Value):
    """PID 1's standard streams: fds dup2'd onto 0, 1 and 2 (-1: keep the inherited one),
    or, with `console` set, a pty of its own devpts whose master goes over that socket."""

    stdin: int = -1
    stdout: int = -1
    stderr: int = -1
    console: int = -1


class Sync:
    """PID 1's line to the launcher: one record per message (SOCK_SEQPACKET)."""

    def __init__(self, fd: int):
        self.fd = fd

    def say(self, msg: str) -> None:
        os.write(self.fd, msg.encode())

    def hear(self) -> str:
        return os.read(self.fd, 4096).decode(errors="replace")  # "" when the launcher went away


def pid1(req, sync: Sync, stdio: Stdio, exec_fd: int, watched: bool) -> None:
    """Never returns: execve()s the container's command, or _exit()s with its failure's
    code. `req` is the launcher's Launch; `watched`: the parent is the shim, which records
    PID 1's end (so PID 1 must not outlive it)."""
    created = [False]
    try:
        if watched:
            prctl.set_pdeathsig(signal.SIGKILL)  # the shim gone means nobody records us
        for kind, fd in req.join_fds:
            linux.setns(fd, NS_FLAGS[kind])
            os.close(fd)
        rest = 0
        for n in req.unshare:
            if n not in ("user", "pid", "time", "cgroup"):  # the first three: the launcher's C1
                rest |= NS_FLAGS[n]
        linux.unshare(rest)
        sync.say("ready")  # the namespaces exist: the network can be plugged in
        if req.idmap is None:
            # Meanwhile, join the cgroup: the write waits for an RCU grace period (8-14 ms on
            # v1), and this way it overlaps the launcher's network work. Before "go", so
            # nothing of the container runs outside it. (In a user namespace PID 1 may not
            # write there: the launcher does it.)
            try:
                cgroups.join(list(req.cgroup_dirs), 0)
            except OSError as e:
                raise InitError(EXIT_MINIBOX, f"joining its cgroup: {e.strerror}") from None
        go = sync.hear()
        if not go.startswith("go "):
            os._exit(EXIT_MINIBOX)  # the launcher gave up (rolled back); leave quietly
        if "cgroup" in req.unshare:
            linux.unshare(linux.CLONE_NEWCGROUP)  # now, so its root is the container's cgroup
        if req.session:
            os.setsid()
        _apply(req, sync, stdio, exec_fd, int(go.split()[1]), created)
    except InitError as e:
        _failed(sync, created[0], e.code, str(e))
    except OSError as e:
        code = EXIT_CANNOT_EXEC if e.errno in (errno.EACCES, errno.ENOEXEC, errno.EISDIR) else EXIT_MINIBOX
        _failed(sync, created[0], code, command.describe(e))
    except BaseException as e:  # noqa: BLE001 - nothing may escape a forked child
        _failed(sync, created[0], EXIT_MINIBOX, f"container init: {e!r}")


def _apply(req, sync: Sync, stdio: Stdio, exec_fd: int, pid: int, created: list) -> None:
    wait = next((s for s in req.steps if isinstance(s, WaitStart)), None)
    # Without a WaitStart the launcher waits for the execve, and hears its failure here;
    # with one, it has gone by then, and the failure goes to the container's stderr.
    report = "l2" if wait is not None else f"f{sync.fd}"
    applier = Applier(req.rootfs, exec_fd, report, sync, {**req.hook_state, "pid": pid})
    if wait is not None:
        applier.open_fifo(wait.fifo)
    runtime_hooks = req.runtime_hooks
    plumbed = False
    for step in req.steps:
        if runtime_hooks and (isinstance(step, PivotRoot) or
                              (isinstance(step, RunHook) and step.kind == "createContainer")):
            sync.say("runtime-hooks")
            if sync.hear() != "ok":
                os._exit(EXIT_MINIBOX)
            runtime_hooks = False
        if isinstance(step, PROCESS_STEPS) and not plumbed:
            setup_stdio(stdio, req.console_size)  # plumbing, not a step: while we may still open things
            plumbed = True
        if isinstance(step, WaitStart) and req.lookup_at_create:
            # As runc: the command is looked up now, so a missing one fails create, not start.
            ex = next(s for s in req.steps if isinstance(s, Exec))
            os.chdir(ex.workdir)
            command.resolve_command(ex.argv[0], ex.env)
        if isinstance(step, Exec):
            for fd in range(3, 3 + req.preserve_fds):
                try:
                    os.set_inheritable(fd, True)
                except OSError:
                    pass
        try:
            applier.apply(step)
        except OSError as e:
            if isinstance(step, Exec):
                raise
            raise InitError(EXIT_MINIBOX, f"{step.why or type(step).__name__}: {command.describe(e)}") from None
        created[0] = applier.created_said


def _failed(sync: Sync, created: bool, code: int, text: str) -> None:
    """Before "created", the launcher reports it; after, the command's own stderr is all there is."""
    try:
        if not created:
            sync.say(f"{code} {text}")
        else:
            # the container's own fd 2 (its log, or the engine's pipe), not a terminal of ours
            os.write(2, f"{os.path.basename(sys.argv[0]) or 'minibox'}: {text}\n".encode())
    finally:
        os._exit(code if code else EXIT_MINIBOX)


def setup_stdio(stdio: Stdio, size: tuple[int, int]) -> None:
    if stdio.console >= 0:
        setup_terminal(stdio.console, size)
        return
    for fd, target in ((stdio.stdin, 0), (stdio.stdout, 1), (stdio.stderr, 2)):
        if fd >= 0:
            os.dup2(fd, target)


def setup_terminal(console: int, size: tuple[int, int], console_node: bool = True) -> None:
    """A pty of the container's own devpts (opened after pivot_root: `tty` inside prints
    /dev/pts/0); its master goes over `console` (the shim's socket, or an engine's
    --console-socket), its slave becomes stdio, the controlling terminal and /dev/console."""
    master, slave = os.openpty()
    rows, cols = size
    if rows or cols:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    name = os.ttyname(slave)
    try:
        if console_node:  # PID 1's only: an exec'd process leaves the container's console alone
            linux.mount(name, "/dev/console", None, MS_BIND, None)
    except OSError:
        pass  # no /dev/console to bind over: the terminal works without it
    sock = socket.socket(fileno=console)
    sock.sendmsg([name.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", master))])
    sock.close()
    os.close(master)
    if os.getsid(0) != os.getpid():
        os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)
