"""The one launcher: a planned container's PID 1 started by three processes and one protocol, for `run` and `minibox-oci create` alike.

    P0 (minibox run, or minibox-oci create)
      └─ fork ──> C1: setns into the user and PID namespaces named by path, unshare the user
                  │   namespace (P0 writes its id maps), then the PID (and time) namespace:
                  │   both apply to C1's children. fork, say "pid N", then either
                  │   exec minibox-shim (`run`: PID 1's parent for its whole life), or
                  │   exit (OCI: PID 1 goes to the engine's subreaper, as runc's init)
                  └─ fork ──> PID 1 (runtime.init): the other namespaces, "ready", its cgroup,
                              "go", the plan's steps through the one Applier, the command

unshare(CLONE_NEWPID) only applies to children, so C1 stays in the host's PID namespace
and fork() gives it PID 1's host PID. PID 1 unshares the mount, network, UTS and IPC
namespaces itself, so a shim stays entirely on the host: one sharing the container's mount
namespace would be moved into the container by its pivot_root, and one in its network
namespace would keep the veth alive after the container exits.

One SOCK_SEQPACKET socket joins P0 to C1 and PID 1, a message a record (runtime.init says
which). No wait lasts forever: P0 holds the only other end, so a killed P0 is EOF to PID 1
(it exits, and a shim records it); P0 gives up on children that say nothing in 30 s.

Python opens every fd close-on-exec (PEP 446); what the shim needs is made inheritable
right before its exec, so nothing leaks into the container or the shim.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import time

from minibox import linux
from minibox.errors import EXIT_MINIBOX, ExecFailed, MiniboxError
from minibox.runtime import cgroups, init, procs, sealed
from minibox.value import Value

READY_TIMEOUT = 30.0  # seconds P0 waits for "pid" and "ready"; it usually takes milliseconds


class Launch(Value):
    """What the launcher needs of a plan (plan.oci.Plan), and how PID 1's stdio is wired."""

    steps: tuple  # PID 1's own steps (plan.init), ending with Exec
    rootfs: str
    unshare: tuple[str, ...]  # namespaces made new
    join: tuple[tuple[str, str], ...] = ()  # (kind, path): namespaces entered
    idmap: object = None  # plan IdMap: a new user namespace's maps, written by P0
    cgroup_dirs: tuple[str, ...] = ()  # PID 1 is in these before "go"
    execer: str = ""  # minibox-exec, the program the command is exec'd through (runtime.sealed)
    terminal: bool = False
    console: int = -1  # an engine's --console-socket, connected (OCI with a terminal)
    console_size: tuple[int, int] = (0, 0)
    session: bool = True  # PID 1 leads a session of its own (OCI: with a terminal, as runc)
    preserve_fds: int = 0  # fds 3.. passed on to the command (OCI's --preserve-fds)
    hook_state: dict = {}  # the OCI state hooks get (pid added at "go")
    runtime_hooks: bool = False  # PID 1 asks P0 to run prestart/createRuntime before its root
    # At WaitStart, look the command up, so that a missing one fails `create` (runc's); Docker's
    # `create` runs no runtime and so never fails for it: `minibox create` does not either.
    lookup_at_create: bool = True
    join_fds: tuple[tuple[str, int], ...] = ()  # set by launch(): the joined namespaces, opened


class Shim(Value):
    """`run`'s hand-off: C1 becomes minibox-shim, which holds PID 1's stdio, log and exit."""

    path: str
    exit_file: str
    log_file: str
    attach: bool  # copy output to our stdout/stderr (and, with a tty, our stdin in)
    interactive: bool  # the container's stdin is ours
    exit_command: tuple[str, ...] | list[str] = ()
    hold_fds: tuple[int, ...] | list[int] = ()  # sockets the shim keeps open (published ports)
    log_max_size: int = 0  # bytes before the log rotates (0: never)
    log_max_files: int = 1
    attach_socket: str = ""  # where the shim listens for `minibox attach` ("": nowhere)
    detachable: bool = False  # attached with a pty: Ctrl-P Ctrl-Q lets the caller go


class Launched:
    """PID 1, ready and waiting for "go"; and P0's end of the line to it."""

    def __init__(self, pid: int, sock: socket.socket, shim_pid: int = 0, notify: int = -1):
        self.pid = pid  # the container's PID 1, as the host sees it
        self.sock = sock
        self.shim_pid = shim_pid
        self.notify = notify  # read end: "d" when Ctrl-P Ctrl-Q detached us, EOF when the shim ended

    def hear(self) -> str:
        return self.sock.recv(4096).decode(errors="replace")

    def release(self) -> None:
        """Let PID 1 go on: its network and cgroups are in place."""
        self.sock.send(f"go {self.pid}".encode())

    def wait(self, runtime_hooks=None) -> bool:
        """After release: True when PID 1 reached WaitStart ("created"), False once its command
        runs; ExecFailed (Docker's 126/127, or minibox's 125) if a step or the exec failed.
        `runtime_hooks()` runs prestart/createRuntime when PID 1 asks (raising fails it)."""
        try:
            while True:
                msg = self.hear()
                if not msg:
                    return False  # the socket closed on exec
                if msg == "created":
                    return True
                if msg == "runtime-hooks" and runtime_hooks is not None:
                    try:
                        runtime_hooks()
                    except BaseException:
                        self.sock.send(b"fail")
                        raise
                    self.sock.send(b"ok")
                    continue
                raise _failure(msg)
        finally:
            self.close()

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.sock.close()

    def early_end(self) -> str:
        """Why PID 1 ended before "go", in its own words; "" while it runs. A step of setup that
        failed under it (the network's, say) would otherwise be the only error the user sees."""
        if procs.alive(self.pid):
            return ""
        self.sock.setblocking(False)
        try:
            said = self.hear()
        except BlockingIOError:
            said = ""
        _code, _, message = said.partition(" ")
        return message or f"it ended before its setup was done ({said or 'it said nothing'})"

    def wait_detach_or_end(self) -> bool:
        """Attached: block until the shim ends (False) or the user detached (True)."""
        if self.notify < 0:
            return False
        try:
            return os.read(self.notify, 1) == b"d"
        finally:
            os.close(self.notify)
            self.notify = -1


START_TIMEOUT = 10.0  # seconds for a created PID 1 to be found waiting on exec.fifo


def let_start(fifo: str, gone, timeout: float = START_TIMEOUT) -> str:
    """`start`: read exec.fifo, which lets a created PID 1 (blocked at WaitStart) exec its
    command. Non-blocking, so a PID 1 that died cannot hang us: it polls `gone()` instead.
    "" when started; else why not."""
    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return "it is no longer waiting to start"
    try:
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready and os.read(fd, 1):
                break
            if gone():
                return "its process exited before start"
            if time.monotonic() > deadline:
                return "its process never reached exec.fifo"
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(fifo)
    return ""


def _failure(msg: str) -> ExecFailed:
    code, _, text = msg.partition(" ")
    return ExecFailed(text or f"the container process said {msg!r}", int(code) if code.isdigit() else EXIT_MINIBOX)


@contextlib.contextmanager
def socket_address(path: str):
    """`path` as a unix socket address of any length: /proc/self/fd/N/NAME, with N its
    directory held open meanwhile (sun_path holds 108 bytes; a container directory under
    a deep MINIBOX_ROOT is longer). Used to bind here and to connect in runtime.attach."""
    dirfd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{dirfd}/{os.path.basename(path)}"
    finally:
        os.close(dirfd)


def listen(path: str) -> socket.socket:
    """A unix socket listening at `path` (which may be long: see socket_address)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        with socket_address(path) as address:
            sock.bind(address)
        os.chmod(path, 0o600)
        sock.listen(1)
    except BaseException:
        sock.close()
        raise
    return sock


class _Plumbing:
    """The shim's and PID 1's ends of the container's stdio, made by P0 (`run`)."""

    def __init__(self, shim: Shim, terminal: bool):
        self.listener = listen(shim.attach_socket) if shim.attach_socket else None
        self.notify_r, self.notify_w = os.pipe() if shim.detachable else (-1, -1)
        self.out_r = self.out_w = self.err_r = self.err_w = self.in_w = -1
        self.con_shim = self.con_pid1 = None
        if terminal:
            self.con_shim, self.con_pid1 = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            self.out_r, self.out_w = os.pipe()
            self.err_r, self.err_w = os.pipe()
        # stdin: with -i (and no -t) a pipe the shim feeds; never the caller's own terminal.
        if shim.interactive and not terminal:
            self.stdin, self.in_w = os.pipe()
        else:
            self.stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    def stdio(self) -> init.Stdio:
        if self.con_pid1 is not None:
            return init.Stdio(console=self.con_pid1.fileno())
        return init.Stdio(stdin=self.stdin, stdout=self.out_w, stderr=self.err_w)

    def close_all(self) -> None:
        """P0's part once C1 is forked: every end is C1's now, but the notify pipe's read end."""
        for fd in (self.out_r, self.out_w, self.err_r, self.err_w, self.in_w, self.notify_w, self.stdin):
            if fd >= 0:
                os.close(fd)
        for s in (self.listener, self.con_shim, self.con_pid1):
            if s is not None:
                s.close()


def launch(req: Launch, shim: Shim | None = None) -> Launched:
    """Fork C1 and PID 1 and return once PID 1 is ready (its namespaces exist, it is in its
    cgroups) and waits for release(); on any failure what was started is killed."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    plumbing = _Plumbing(shim, req.terminal) if shim is not None else None
    join_fds = [(linux_kind(kind), _open_namespace(kind, path)) for kind, path in req.join]
    # Before any namespace is entered: non-dumpable (this process and its children), and
    # the sealed program PID 1's command is exec'd through (runtime.sealed).
    exec_fd = sealed.prepare(req.execer)
    c1 = os.fork()
    if c1 == 0:
        ours.close()  # P0's: held here, a dead P0 would never read as EOF
        if plumbing is not None and plumbing.notify_r >= 0:
            os.close(plumbing.notify_r)
        _c1(req._replace(join_fds=tuple(join_fds)), theirs, plumbing, shim, exec_fd)  # never returns
    for fd in [exec_fd, *(fd for _, fd in join_fds), req.console]:
        if fd >= 0:
            os.close(fd)
    theirs.close()
    notify = -1
    if plumbing is not None:
        plumbing.close_all()
        notify = plumbing.notify_r
    launched = Launched(0, ours, c1 if shim is not None else 0, notify)
    try:
        _until_ready(launched, c1, req)
    except BaseException:
        for pid in (launched.pid, c1):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(c1, 0)
        launched.close()
        if notify >= 0:
            os.close(notify)
        raise
    if shim is None:
        os.waitpid(c1, 0)  # C1 has said all it will; PID 1 is the engine's subreaper's now
    return launched


def _open_namespace(kind: str, path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise MiniboxError(f"cannot join the {kind} namespace {path}: {e.strerror} (its process has ended?)") \
            from None


def linux_kind(kind: str) -> str:
    """An OCI namespace type as the launcher's word ("network" -> "net")."""
    return {"network": "net"}.get(kind, kind)


def _until_ready(launched: Launched, c1: int, req: Launch) -> None:
    ready = False
    deadline = time.monotonic() + READY_TIMEOUT
    while not (launched.pid and ready):
        if not select.select([launched.sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise MiniboxError(f"starting the container failed: its process did not get ready within "
                               f"{READY_TIMEOUT:.0f} s")
        msg = launched.hear()
        if msg == "idmap":
            write_id_maps(c1, req.idmap)
            launched.sock.send(b"mapped")
        elif msg.startswith("pid "):
            launched.pid = int(msg.split()[1])
        elif msg == "ready":
            ready = True
        elif not msg:
            raise MiniboxError("starting the container failed: its process exited while starting")
        else:
            raise _failure(msg)
    if req.idmap is not None:
        cgroups.join(list(req.cgroup_dirs), launched.pid)  # the user namespace's root may not


def write_id_maps(pid: int, idmap) -> None:
    for name, entries in (("uid_map", idmap.uid_map), ("gid_map", idmap.gid_map)):
        if entries:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write("".join(f"{a} {b} {n}\n" for a, b, n in entries))


def _c1(req: Launch, sock: socket.socket, plumbing: _Plumbing | None, shim: Shim | None, exec_fd: int) -> None:
    """The intermediate process: the namespaces that apply to children, then PID 1."""
    sync = init.Sync(sock.fileno())
    try:
        if shim is not None and not shim.attach:
            # Detached: leave the caller's session and pipes, so `run -d` returns at once
            # and a `$(minibox run -d ...)` does not wait for the container to end.
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for target in (0, 1, 2):
                os.dup2(null, target)
            os.close(null)
        later = []
        for kind, fd in sorted(req.join_fds, key=lambda x: x[0] != "user"):
            if kind in ("user", "pid", "time"):
                linux.setns(fd, init.NS_FLAGS[kind])
                os.close(fd)
            else:
                later.append((kind, fd))  # PID 1's
        if "user" in req.unshare:
            try:
                linux.unshare(linux.CLONE_NEWUSER)
            except PermissionError:
                raise MiniboxError("cannot create a user namespace here: the kernel refuses one to a process "
                                   "in a chroot (or user namespaces are disabled)") from None
            sync.say("idmap")
            if sync.hear() != "mapped":
                os._exit(EXIT_MINIBOX)
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        flags = 0
        for n in ("pid", "time"):
            if n in req.unshare:
                flags |= init.NS_FLAGS[n]
        if flags:
            linux.unshare(flags)
        parent = os.getpid()
        pid1 = os.fork()
        if pid1 == 0:
            if shim is not None and "pid" not in req.unshare and os.getppid() != parent:
                os._exit(EXIT_MINIBOX)  # the shim-to-be went before we could ask
            stdio = plumbing.stdio() if plumbing is not None else init.Stdio(console=req.console)
            init.pid1(req._replace(join_fds=tuple(later)), sync, stdio, exec_fd, watched=shim is not None)
            os._exit(EXIT_MINIBOX)  # not reached
        sync.say(f"pid {pid1}")
        if shim is None:
            os._exit(0)
        _exec_shim(shim, plumbing, pid1, req)
    except BaseException as e:  # noqa: BLE001 - a forked child must never return into P0
        try:
            sync.say(f"{EXIT_MINIBOX} {getattr(e, 'strerror', None) or e}")
        finally:
            os._exit(EXIT_MINIBOX)


def _exec_shim(shim: Shim, plumbing: _Plumbing, pid1: int, req: Launch) -> None:
    if "pid" in req.unshare or any(k == "pid" for k, _ in req.join):
        # Point our future children back at the host's PID namespace: once PID 1 has
        # exited, fork() into its namespace fails with ENOMEM (measured), and the shim
        # must still fork the exit command then.
        own = os.open("/proc/self/ns/pid", os.O_RDONLY)
        linux.setns(own, linux.CLONE_NEWPID)
        os.close(own)
    os.close(plumbing.stdin)  # PID 1's end
    con_fd = plumbing.con_shim.fileno() if plumbing.con_shim is not None else -1
    listen_fd = plumbing.listener.fileno() if plumbing.listener is not None else -1
    fds = [plumbing.out_r, plumbing.err_r, con_fd, plumbing.in_w, listen_fd, plumbing.notify_w, *shim.hold_fds]
    for fd in fds:
        if fd >= 0:
            os.set_inheritable(fd, True)
    attach = (1 if shim.attach else 0) | (2 if shim.attach and shim.interactive else 0)
    argv = [shim.path, str(pid1), shim.exit_file, shim.log_file, str(plumbing.out_r), str(plumbing.err_r),
            str(con_fd), str(plumbing.in_w), str(attach), str(shim.log_max_size), str(shim.log_max_files),
            str(listen_fd), str(plumbing.notify_w)]
    if shim.exit_command:
        argv += ["--"] + list(shim.exit_command)
    os.execv(shim.path, argv)
