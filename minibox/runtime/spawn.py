"""Starts a container's processes: CLI -> fork -> unshare -> fork PID 1 -> exec the shim.

    minibox (CLI)
      └─ fork ──> unshare(PID) ── fork ──> PID 1: unshare(MNT|NET|UTS|IPC), say "ready",
                  │                        wait for "go" (runtime.init)
                  └─ exec minibox-shim  (PID 1's parent for the container's whole life)

unshare(CLONE_NEWPID) only applies to children, so the process that calls it stays in
the host's PID namespace and fork() hands it PID 1's *host* PID, which it reports to the
CLI before exec'ing the shim. PID 1 unshares the other namespaces itself, so the shim
stays entirely on the host: a shim sharing the container's mount namespace would be
moved into the container by its pivot_root (which re-roots every process of that
namespace still rooted at the old '/'), and one in its network namespace would keep the
veth alive after the container exits. PID 1 joins its cgroup itself (the first
cgroup.procs write waits for an RCU grace period, 8-14 ms on v1: PID 1 waits it out after
saying "ready", while the CLI plugs in its veth), then waits on the "go" pipe, and reports
exec failures over an O_CLOEXEC pipe.

No wait can last forever, whichever process is killed: the forked child closes every
pipe end that is the CLI's at once, so a killed CLI means EOF on "go" (PID 1 exits, the
shim records it), and the CLI gives up on a child that says nothing within a deadline.

Python opens every fd close-on-exec (PEP 446); only what the shim needs is made
inheritable, right before its exec, so nothing leaks into the container or the shim.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import time

import prctl

from minibox import linux
from minibox.errors import EXIT_MINIBOX, ExecFailed, MiniboxError
from minibox.runtime import cgroups, command, init, procs
from minibox.value import Value

NS_FLAGS = {"pid": linux.CLONE_NEWPID, "mount": linux.CLONE_NEWNS, "net": linux.CLONE_NEWNET,
            "uts": linux.CLONE_NEWUTS, "ipc": linux.CLONE_NEWIPC}


class SpawnRequest(Value):
    init: init.InitConfig
    namespaces: tuple[str, ...]
    shim: str
    exit_file: str
    log_file: str
    attach: bool  # copy output to our stdout/stderr (and, with a tty, our stdin in)
    interactive: bool  # the container's stdin is ours
    exit_command: tuple[str, ...] | list[str] = ()
    hold_fds: tuple[int, ...] | list[int] = ()  # sockets the shim keeps open
    cgroup_dirs: tuple[str, ...] | list[str] = ()  # PID 1 moves itself into these
    log_max_size: int = 0  # bytes before the log rotates (0: never)
    log_max_files: int = 1
    attach_socket: str = ""  # where the shim listens for `minibox attach` ("": nowhere)
    detachable: bool = False  # attached with a pty: Ctrl-P Ctrl-Q lets the caller go


READY_TIMEOUT = 30.0  # seconds the CLI waits for PID 1's "ready"; it usually takes milliseconds


class Spawned:
    """The processes spawn() made, and the CLI's ends of PID 1's "go" and error pipes."""

    def __init__(self, shim_pid: int, pid: int, go: int, err: int, notify: int = -1):
        self.shim_pid = shim_pid
        self.pid = pid  # the container's PID 1, as the host sees it
        self.go = go  # write end of the "go" pipe
        self.err = err  # read end of the error pipe
        self.notify = notify  # read end: "d" when Ctrl-P Ctrl-Q detached us, EOF when the shim ended

    def wait_detach_or_end(self) -> bool:
        """Attached: block until the shim ends (False) or the user detached (True)."""
        if self.notify < 0:
            return False
        try:
            return os.read(self.notify, 1) == b"d"
        finally:
            os.close(self.notify)
            self.notify = -1

    def release(self) -> None:
        """Let PID 1 continue: the network and cgroups are in place."""
        os.write(self.go, b"g")
        os.close(self.go)
        self.go = -1

    def park(self) -> None:
        """`create`: PID 1 is to wait on its start FIFO; the CLI leaves without reading its
        error pipe (nothing is exec'd until `start`)."""
        os.write(self.go, b"p")
        os.close(self.go)
        os.close(self.err)
        self.go = self.err = -1

    def early_end(self) -> str:
        """Why PID 1 ended before "go", as it said on its error pipe; "" while it runs. A
        step of setup that failed under it (the network's, say) would otherwise be the only
        error the user sees."""
        if self.err < 0 or procs.alive(self.pid):
            return ""
        os.set_blocking(self.err, False)
        try:
            said = os.read(self.err, 4096).decode(errors="replace")
        except BlockingIOError:
            said = ""
        _code, _, message = said.partition(" ")
        return message or f"it ended before its setup was done ({said or 'it said nothing'})"


    def wait_exec(self) -> None:
        """Block until PID 1 has exec'd its command; raise ExecFailed if it could not."""
        chunks = []
        while True:
            data = os.read(self.err, 4096)
            if not data:
                break
            chunks.append(data)
        os.close(self.err)
        self.err = -1
        if chunks:
            code, _, message = b"".join(chunks).decode(errors="replace").partition(" ")
            raise ExecFailed(message, int(code) if code.isdigit() else EXIT_MINIBOX)


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


def spawn(req: SpawnRequest) -> Spawned:
    go_r, go_w = os.pipe()
    err_r, err_w = os.pipe()
    pid_r, pid_w = os.pipe()
    listener = listen(req.attach_socket) if req.attach_socket else None
    notify_r, notify_w = os.pipe() if req.detachable else (-1, -1)
    out_r = out_w = errp_r = errp_w = -1
    con_parent = con_child = None
    if req.init.tty:
        con_parent, con_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        out_r, out_w = os.pipe()
        errp_r, errp_w = os.pipe()
    # stdin: with -i (and no -t) a pipe the shim feeds; never the caller's own terminal.
    in_w = -1
    if req.interactive and not req.init.tty:
        stdin, in_w = os.pipe()
    else:
        stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    shim_pid = os.fork()
    if shim_pid == 0:
        for fd in (go_w, err_r, pid_r, notify_r):  # the CLI's ends: held here, a dead CLI would never read as EOF
            if fd >= 0:
                os.close(fd)
        _unshare_and_exec_shim(req, locals())
    # The CLI keeps only the write end of "go", the read ends of the error, pid and notify pipes.
    for fd in (go_r, err_w, pid_w, out_r, out_w, errp_r, errp_w, in_w, notify_w):
        if fd >= 0:
            os.close(fd)
    if listener is not None:
        listener.close()  # the shim's now
    for s in (con_parent, con_child):
        if s is not None:
            s.close()
    os.close(stdin)
    # Two lines arrive, in either order: "P<pid>" from the shim-to-be, "R" from PID 1 once
    # its namespaces exist; "E<reason>" from either instead if something failed.
    pid1, ready, problem = 0, False, ""
    buf = b""
    deadline = time.monotonic() + READY_TIMEOUT
    while not problem and not (pid1 and ready):
        if not select.select([pid_r], [], [], max(0.0, deadline - time.monotonic()))[0]:
            problem = f"the container process did not get ready within {READY_TIMEOUT:.0f} s"
            break
        data = os.read(pid_r, 512)
        if not data:
            problem = problem or "the container process exited while starting"
            break
        buf += data
        while b"\n" in buf:
            line, _, buf = buf.partition(b"\n")
            text = line.decode(errors="replace")
            if text.startswith("P"):
                pid1 = int(text[1:])
            elif text == "R":
                ready = True
            else:
                problem = text[1:]
    os.close(pid_r)
    if problem:
        os.close(go_w)
        os.close(err_r)
        if notify_r >= 0:
            os.close(notify_r)
        if pid1:
            with_ignored(os.kill, pid1, 9)
        with_ignored(os.kill, shim_pid, 9)
        with_ignored(os.waitpid, shim_pid, 0)
        raise MiniboxError(f"starting the container failed: {problem}")
    return Spawned(shim_pid=shim_pid, pid=pid1, go=go_w, err=err_r, notify=notify_r)


def with_ignored(fn, *args) -> None:
    try:
        fn(*args)
    except (ProcessLookupError, ChildProcessError):
        pass


def _unshare_and_exec_shim(req: SpawnRequest, fds: dict) -> None:
    """In the forked child: never returns."""
    pid_w = fds["pid_w"]
    try:
        if not req.attach:
            # Detached: leave the caller's session and pipes, so `run -d` returns at once
            # and a `$(minibox run -d ...)` does not wait for the container to end.
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for target in (0, 1, 2):
                os.dup2(null, target)
            os.close(null)
        if "pid" in req.namespaces:
            linux.unshare(linux.CLONE_NEWPID)
        parent = os.getpid()
        pid1 = os.fork()
        if pid1 == 0:
            prctl.set_pdeathsig(signal.SIGKILL)  # first: the shim gone means nobody would record us
            if "pid" not in req.namespaces and os.getppid() != parent:
                os._exit(EXIT_MINIBOX)  # it went before we could ask (in a new PID namespace getppid() is 0)
            flags = 0
            for ns in req.namespaces:
                if ns != "pid":
                    flags |= NS_FLAGS[ns]
            linux.unshare(flags)
            os.write(pid_w, b"R\n")  # the namespaces exist: the CLI can plug in the veth now
            os.close(pid_w)
            try:
                # Meanwhile, join the cgroup: the write waits for an RCU grace period, and
                # this way it overlaps the CLI's network work. Still before "go", so nothing
                # of the container runs outside it; a failure is reported like an exec's.
                cgroups.join(req.cgroup_dirs, 0)  # 0: this process
            except OSError as e:
                command.fail(fds["err_w"], EXIT_MINIBOX, f"joining its cgroup: {e.strerror}")
            con = fds["con_child"]
            init.container_main(req.init, init.InitFds(
                go=fds["go_r"], err=fds["err_w"], stdin=fds["stdin"], stdout=fds["out_w"],
                stderr=fds["errp_w"], console=con.fileno() if con is not None else -1))
            os._exit(EXIT_MINIBOX)  # not reached
        if "pid" in req.namespaces:
            # Point our future children back at the host's PID namespace: once PID 1 has
            # exited, fork() into its namespace fails with ENOMEM (measured), and the shim
            # must still fork the exit command then.
            own = os.open("/proc/self/ns/pid", os.O_RDONLY)
            linux.setns(own, linux.CLONE_NEWPID)
            os.close(own)
        os.write(pid_w, f"P{pid1}\n".encode())
        con = fds["con_parent"]
        out_fd, err_fd, in_fd = fds["out_r"], fds["errp_r"], fds["in_w"]
        con_fd = con.fileno() if con is not None else -1
        os.close(fds["stdin"])  # PID 1's end
        listen_fd = fds["listener"].fileno() if fds["listener"] is not None else -1
        notify_fd = fds["notify_w"]
        for fd in [out_fd, err_fd, con_fd, in_fd, listen_fd, notify_fd] + list(req.hold_fds):
            if fd >= 0:
                os.set_inheritable(fd, True)
        attach = (1 if req.attach else 0) | (2 if req.attach and req.interactive else 0)
        argv = [req.shim, str(pid1), req.exit_file, req.log_file, str(out_fd), str(err_fd),
                str(con_fd), str(in_fd), str(attach), str(req.log_max_size), str(req.log_max_files),
                str(listen_fd), str(notify_fd)]
        if req.exit_command:
            argv += ["--"] + list(req.exit_command)
        os.execv(req.shim, argv)
    except BaseException as e:  # noqa: BLE001 - a forked child must never return into the CLI
        try:
            os.write(pid_w, f"E{e}\n".encode())
        finally:
            os._exit(EXIT_MINIBOX)
