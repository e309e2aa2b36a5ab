"""Inside the container, as `run`'s PID 1: wait for "go", carry out the plan's steps (runtime.applier), and become the command.

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

import prctl

from minibox.errors import EXIT_CANNOT_EXEC, EXIT_MINIBOX
from minibox.plan.steps import Exec, LoadSeccomp, OomScoreAdj, PivotRoot, SetCapabilities, SetRlimit, SetUser, Step
from minibox.runtime import sealed
from minibox.runtime.applier import Applier
from minibox.runtime.command import InitError, describe, fail
from minibox.value import Value

# The first of these is where the container's own stdio replaces the launcher's: the
# privileges still allow opening its pty.
PROCESS_STEPS = (OomScoreAdj, SetRlimit, SetUser, SetCapabilities, LoadSeccomp, Exec)


class InitConfig(Value):
    # Mounts ending in PivotRoot, SetHostname, LinkUp("lo") when the network namespace is
    # the container's own, DropCapabilities, and last Exec: applied in this order.
    steps: list[Step]
    tty: bool
    start_fifo: str = ""  # `create`: where PID 1 waits for `start`'s "g" after the CLI's "p"
    execer: str = ""  # minibox-exec, the program the command is exec'd through (runtime.sealed)

    @property
    def argv(self) -> tuple[str, ...]:
        return self.steps[-1].argv

    @property
    def rootfs(self) -> str:
        """The container's root as the host sees it: where PivotRoot goes."""
        return next(s.new_root for s in self.steps if isinstance(s, PivotRoot))


class InitFds(Value):
    go: int  # read end: one byte "g" from the CLI when networking and cgroups are ready
    err: int  # write end, O_CLOEXEC: "CODE message" on failure
    stdin: int  # /dev/null, or the caller's stdin with -i
    stdout: int  # pipe to the shim (no tty)
    stderr: int
    console: int  # unix socket to the shim: the pty master goes over it (tty)


def container_main(cfg: InitConfig, fds: InitFds) -> None:
    """Never returns: execve()s the container command, or _exit()s with Docker's code."""
    try:
        prctl.set_pdeathsig(signal.SIGKILL)  # the shim gone means nobody records us
        exec_fd = sealed.prepare(cfg.execer)  # while the host's files are in reach; non-dumpable from here
        go = os.read(fds.go, 1)
        os.close(fds.go)
        if go == b"p" and cfg.start_fifo:
            # Parked by `create`: wait, holding the namespaces, until `start` opens the FIFO
            # and says "g" (runc's exec.fifo, the other way round).
            fifo = os.open(cfg.start_fifo, os.O_RDONLY | os.O_CLOEXEC)
            go = os.read(fifo, 1)
            os.close(fifo)
        if go != b"g":
            os._exit(EXIT_MINIBOX)  # the CLI gave up (rolled back); leave quietly
        os.setsid()
        applier = Applier(cfg.rootfs, exec_fd, f"f{fds.err}")
        plumbed = False
        for step in cfg.steps:
            if isinstance(step, PROCESS_STEPS) and not plumbed:
                setup_stdio(cfg, fds)  # plumbing, not a step: while we may still open things
                plumbed = True
            applier.apply(step)
    except InitError as e:
        fail(fds.err, e.code, str(e))
    except OSError as e:
        code = EXIT_CANNOT_EXEC if e.errno in (errno.EACCES, errno.ENOEXEC, errno.EISDIR) else EXIT_MINIBOX
        fail(fds.err, code, f"exec {cfg.argv[0]!r}: {e.strerror}" if code != EXIT_MINIBOX else describe(e))
    except BaseException as e:  # noqa: BLE001 - nothing may escape a forked child
        fail(fds.err, EXIT_MINIBOX, f"container init: {e!r}")


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
