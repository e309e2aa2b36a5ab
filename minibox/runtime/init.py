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

import prctl

from minibox import linux
from minibox.errors import EXIT_CANNOT_EXEC, EXIT_MINIBOX, EXIT_NOT_FOUND
from minibox.plan.mounts import MASKED_PATHS, READONLY_PATHS
from minibox.plan.steps import (
    MS_BIND,
    MS_PROPAGATION,
    MS_REMOUNT,
    CopyUp,
    DropCapabilities,
    Exec,
    LinkUp,
    LoadSeccomp,
    MakeDir,
    MakeNode,
    Mount,
    PivotRoot,
    SetHostname,
    SetUser,
    Step,
    Symlink,
)
from minibox.runtime import caps, fscopy, inroot, pivot, sealed
from minibox.value import Value

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


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


class InitError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


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
        for step in cfg.steps:
            if isinstance(step, DropCapabilities):
                setup_stdio(cfg, fds)  # plumbing, not a step: while we may still open things
            applier.apply(step)
    except InitError as e:
        fail(fds.err, e.code, str(e))
    except OSError as e:
        code = EXIT_CANNOT_EXEC if e.errno in (errno.EACCES, errno.ENOEXEC, errno.EISDIR) else EXIT_MINIBOX
        fail(fds.err, code, f"exec {cfg.argv[0]!r}: {e.strerror}" if code != EXIT_MINIBOX else describe(e))
    except BaseException as e:  # noqa: BLE001 - nothing may escape a forked child
        fail(fds.err, EXIT_MINIBOX, f"container init: {e!r}")


def describe(e: OSError) -> str:
    """An OSError as one line: its message, and the path when the message lacks it."""
    text = e.strerror or str(e)
    path = e.filename if isinstance(e.filename, str) else ""
    return f"{text}: {path}" if path and path not in text else text


def fail(err_fd: int, code: int, message: str) -> None:
    try:
        os.write(err_fd, f"{code} {message}".encode())
    finally:
        os._exit(code)


class Applier:
    """Carries out the filesystem and identity steps of PID 1's plan, in order.

    Every path under the container's root (`rootfs`) is resolved inside it (runtime.inroot):
    a hostile image's symlinks can redirect nothing to the host. Paths outside it are
    minibox's own (the overlay's layers, the per-container /etc files)."""

    def __init__(self, rootfs: str, exec_fd: int = -1, report: str = "l2"):
        self.rootfs = rootfs
        self.exec_fd = exec_fd  # the sealed minibox-exec the Exec step goes through (runtime.sealed)
        self.report = report  # where it tells a failed execve: "fN" the error pipe N, "l2" stderr
        self.root: inroot.Root | None = None  # opened once the overlay is mounted
        self.pivoted = False
        self.seccomp = b""  # loaded by the Exec step, after everything else could still run

    def apply(self, step: Step) -> None:
        if isinstance(step, Mount):
            self._mount(step)
        elif isinstance(step, MakeDir):
            self._make_dir(step)
        elif isinstance(step, CopyUp):
            self._copy_up(step)
        elif isinstance(step, SetUser):
            caps.set_user(step.uid, step.gid, step.groups)
        elif isinstance(step, MakeNode):
            self._make_node(step)
        elif isinstance(step, Symlink):
            parent = self._parent(step.path)
            os.symlink(step.target, os.path.basename(step.path), dir_fd=parent)
            os.close(parent)
        elif isinstance(step, PivotRoot):
            self._pivot(step)
        elif isinstance(step, SetHostname):
            linux.sethostname(step.hostname)
        elif isinstance(step, LinkUp) and step.dev == "lo":
            loopback_up()
        elif isinstance(step, DropCapabilities):
            caps.drop_privileges(step.keep)
        elif isinstance(step, LoadSeccomp):
            self.seccomp = step.program
        elif isinstance(step, Exec):
            os.chdir(step.workdir)  # made before pivot_root if the image lacked it (plan.mounts)
            execute(resolve_command(step.argv[0], step.env), step.argv, step.env, self.seccomp, self.exec_fd,
                    self.report)
        else:
            raise InitError(EXIT_MINIBOX, f"container init cannot apply {type(step).__name__}")

    def _make_node(self, step: MakeNode) -> None:
        parent = self._parent(step.path)
        name = os.path.basename(step.path)
        kind = {"c": 0o020000, "b": 0o060000, "p": 0o010000}[step.kind]
        try:
            try:
                os.unlink(name, dir_fd=parent)  # the image's own file there gives way, as with runc
            except FileNotFoundError:
                pass
            os.mknod(name, kind | step.mode, os.makedev(step.major, step.minor), dir_fd=parent)
            os.chmod(name, step.mode, dir_fd=parent)  # mknod's mode is filtered by the umask
            if step.uid or step.gid:
                os.chown(name, step.uid, step.gid, dir_fd=parent)
        finally:
            os.close(parent)

    def _make_dir(self, step: MakeDir) -> None:
        """`mkdir -p -m MODE`: the mode is for a directory made now (mkdir's is filtered by
        the umask, hence the chmod); one that exists keeps its own."""
        rel = self._rel(step.path)
        strict = _strict(rel)
        try:
            os.close(self._root().open(rel, strict=strict))
            return
        except FileNotFoundError:
            pass
        fd = self._root().mkdirs(rel, step.mode, strict=strict)
        try:
            os.chmod(inroot.fd_path(fd), step.mode)
        finally:
            os.close(fd)

    def _copy_up(self, step: CopyUp) -> None:
        """A volume's first use: what the image has at the target (resolved inside the root)
        goes into the empty volume, owners and modes kept, as Docker does."""
        try:
            src = self._root().open(self._rel(step.source), os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            return  # nothing there in the image: the volume starts empty
        try:
            dst = os.open(step.dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                if fscopy.is_empty(dst):
                    fscopy.copy_contents(src, dst)
                    st = os.fstat(src)
                    os.fchown(dst, st.st_uid, st.st_gid)
                    os.fchmod(dst, st.st_mode & 0o7777)
            finally:
                os.close(dst)
        finally:
            os.close(src)

    # --- paths ---------------------------------------------------------------------------

    def _root(self) -> inroot.Root:
        if self.root is None:
            self.root = inroot.Root(self.rootfs)
        return self.root

    def _rel(self, path: str) -> str:
        rel = self._root().rel(path)
        if rel is None:
            raise InitError(EXIT_MINIBOX, f"container init: {path} is not inside the container's root")
        return rel

    def _parent(self, path: str) -> int:
        return self._root().mkdirs(os.path.dirname(self._rel(path)), strict=_strict(self._rel(path)))

    # --- mounts --------------------------------------------------------------------------

    def _mount(self, step: Mount) -> None:
        if step.flags & MS_PROPAGATION and step.target == "/":
            try:
                linux.mount(step.source, "/", None, step.flags)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                pivot.make_all_private()  # '/' is not a mount point: we were started in a chroot
            return
        if step.target == self.rootfs:  # the overlay itself (or an engine's root bound onto itself)
            if step.cwd:
                os.chdir(step.cwd)  # the lowerdirs are relative to it (a deep image)
            if step.flags & MS_BIND and step.source == step.target:
                # The bind's parent will be the mount holding the root now: private first, or a
                # shared one (rootfsPropagation "rshared") makes pivot_root fail (EINVAL), as runc knows.
                pivot.parent_mount_private(step.target, inclusive=True)
            linux.mount(step.source, step.target, step.fstype, step.flags, step.data or None)
            return
        rel = self._rel(step.target)
        strict = _strict(rel)
        masking = _is_mask(rel)
        try:
            if step.flags & MS_REMOUNT or (step.flags & MS_PROPAGATION and step.source == "none"):
                target = self._root().open(rel, strict=strict)  # changes a mount that is there
            elif step.flags & MS_BIND and not (step.fstype or masking) and not self._host_dir(step.source):
                target = self._root().ensure_file(rel, strict=strict)  # /etc/hosts & co may be missing
            else:
                target = self._root().mkdirs(rel, strict=strict) if not masking else self._root().open(rel, strict=True)
        except FileNotFoundError:
            if masking:
                return  # proc and sys were verified in place: this kernel simply lacks the entry
            raise
        try:
            source = step.source
            src_rel = self._root().rel(step.source) if step.flags & MS_BIND else None
            src_fd = -1
            if src_rel is not None:
                src_fd = self._root().open(src_rel, strict=True)
                source = inroot.fd_path(src_fd)
            try:
                linux.mount(source, inroot.fd_path(target), step.fstype or None, step.flags, step.data or None)
            finally:
                if src_fd >= 0:
                    os.close(src_fd)
        finally:
            os.close(target)
        self._verify(step, rel)

    def _host_dir(self, source: str) -> bool:
        """A bind source of minibox's or the user's on the host (a volume, a -v directory)
        that is a directory: its target is made a directory, a file's a file."""
        return self._root().rel(source) is None and os.path.isdir(source)

    def _verify(self, step: Mount, rel: str) -> None:
        """proc and sysfs must be where the masks will look for them: check the mounted fs."""
        magic = FS_MAGIC.get(step.fstype)
        if magic is None:
            return
        fd = self._root().open(rel, strict=True)
        try:
            found = linux.statfs_type(inroot.fd_path(fd))
        finally:
            os.close(fd)
        if found != magic:
            raise InitError(EXIT_MINIBOX, f"container init: {step.fstype} did not end up on /{rel}")

    def _pivot(self, step: PivotRoot) -> None:
        try:
            pivot.pivot_root(step.new_root)
        except pivot.PivotError as e:
            raise InitError(EXIT_MINIBOX, str(e)) from None
        if self.root is not None:
            self.root.close()
        self.pivoted = True


FS_MAGIC = {"proc": 0x9FA0, "sysfs": 0x62656572}
KERNEL_DIRS = ("proc", "sys", "dev")


def _strict(rel: str) -> bool:
    """Under /proc, /sys and /dev no symlink may be followed (see runtime.inroot)."""
    return rel.split("/", 1)[0] in KERNEL_DIRS


def _is_mask(rel: str) -> bool:
    return "/" + rel in MASKED_PATHS + READONLY_PATHS


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


def execute(path: str, argv: tuple[str, ...], env: tuple[str, ...], seccomp: bytes, exec_fd: int,
            report: str) -> None:
    """The end of every start of a process in a container (PID 1 or exec, minibox's or
    minibox-oci's), once `path` is found (resolve_command): reset signals, load the seccomp
    filter, and execve through the sealed minibox-exec (runtime.sealed). Returns only by
    raising."""
    caps.reset_signals()
    if seccomp:
        linux.seccomp_load(seccomp)  # last: from here on only what the profile allows
    sealed.execve(exec_fd, report, path, argv, env_dict(env))


def env_dict(env: tuple[str, ...]) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in env)


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
