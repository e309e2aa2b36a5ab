"""The one Applier: each step of a container's plan carried out in the process it is for (PID 1 of `run` or of minibox-oci, or an exec'd process).

Before pivot_root, paths are inside the root and resolved there (fs.inroot); after it,
the root is '/'. The same class serves every launch: `run`'s PID 1 (runtime.init), an OCI
container's (with its create/start split: the line to `create`, exec.fifo, the engine's
console socket, the state hooks get), and an exec'd process (runtime.enter).
"""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import socket
import struct

import prctl

from minibox import linux
from minibox.errors import EXIT_MINIBOX
from minibox.plan.mounts import MASKED_PATHS, READONLY_PATHS
from minibox.plan.steps import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PROPAGATION,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    CopyUp,
    DropCapabilities,
    Exec,
    LinkUp,
    LoadSeccomp,
    MakeDir,
    MakeNode,
    MaskPath,
    Mount,
    OomScoreAdj,
    PivotRoot,
    ReadonlyPath,
    RunHook,
    SetCapabilities,
    SetHostname,
    SetRlimit,
    SetUser,
    Step,
    Symlink,
    Sysctl,
    WaitStart,
)
from minibox.runtime import caps, pivot
from minibox.fs import fscopy, inroot
from minibox.runtime.command import InitError, execute, resolve_command
from minibox.runtime.hooks import run_hook

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


class Applier:
    """Carries out a plan's steps for the process they are for, in order.

    Every path under the container's root (`rootfs`) is resolved inside it (fs.inroot):
    a hostile image's symlinks can redirect nothing to the host. Paths outside it are
    minibox's own (the overlay's layers, the per-container /etc files) or the engine's."""

    def __init__(self, rootfs: str, exec_fd: int = -1, report: str = "l2", sync=None, state: dict | None = None,
                 console: int = -1, console_size: tuple[int, int] = (0, 0)):
        self.rootfs = rootfs
        self.exec_fd = exec_fd  # the sealed minibox-exec the Exec step goes through (runtime.sealed)
        self.report = report  # where it tells a failed execve: "fN" the error pipe N, "l2" stderr
        self.root: inroot.Root | None = None  # opened once the overlay is mounted
        self.pivoted = False
        self.seccomp = b""
        # The create/start split (minibox-oci): the line to `create`, the state hooks get,
        # the engine's console socket, exec.fifo, and whether `create` has returned.
        self.sync, self.state, self.console, self.console_size = sync, state or {}, console, console_size
        self.fifo = self.fds = -1
        self.created_said = False

    def apply(self, step: Step) -> None:
        if isinstance(step, Mount) and self.pivoted:
            linux.mount(step.source, step.target, step.fstype or None, remount_flags(step), step.data or None)
        elif isinstance(step, Mount):
            self._mount(step)
        elif isinstance(step, MakeDir):
            self._make_dir(step)
        elif isinstance(step, CopyUp):
            self._copy_up(step)
        elif isinstance(step, MakeNode):
            self._make_node(step)
        elif isinstance(step, Symlink):
            parent = self._parent(step.path)
            os.symlink(step.target, os.path.basename(step.path), dir_fd=parent)
            os.close(parent)
        elif isinstance(step, MaskPath):
            self._mask(step)
        elif isinstance(step, ReadonlyPath):
            self._readonly(step)
        elif isinstance(step, Sysctl):
            self._sysctl(step)
        elif isinstance(step, PivotRoot):
            self._pivot(step)
        elif isinstance(step, SetHostname):
            if step.hostname:
                linux.sethostname(step.hostname)
            if step.domainname:
                linux.setdomainname(step.domainname)
        elif isinstance(step, LinkUp) and step.dev == "lo":
            loopback_up()
        elif isinstance(step, RunHook):
            run_hook(step, {**self.state, "status": "creating" if not self.created_said else "created"})
        elif isinstance(step, WaitStart):
            self._wait_start()
        elif isinstance(step, OomScoreAdj):
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(step.value))
        elif isinstance(step, SetRlimit):
            try:
                resource.setrlimit(getattr(resource, step.resource), (step.soft, step.hard))
            except (ValueError, OSError) as e:  # above the runtime's own hard limit, say
                raise InitError(EXIT_MINIBOX, f"{step.why} ({step.soft}, {step.hard}): {e}") from None
        elif isinstance(step, SetUser):
            prctl.set_keepcaps(True)  # keep the permitted set across setuid: SetCapabilities sets it exactly
            caps.set_user(step.uid, step.gid, step.groups)
        elif isinstance(step, SetCapabilities):
            caps.set_capabilities(step.bounding, step.effective, step.permitted, step.inheritable, step.ambient,
                                  step.no_new_privs)
        elif isinstance(step, DropCapabilities):
            caps.drop_privileges(step.keep)
        elif isinstance(step, LoadSeccomp) and step.why.startswith("early"):
            linux.seccomp_load(step.program)  # no no_new_privs: loaded while CAP_SYS_ADMIN is still held
        elif isinstance(step, LoadSeccomp):
            self.seccomp = step.program  # loaded by the Exec step, after everything else could still run
        elif isinstance(step, Exec):
            try:
                os.chdir(step.workdir)  # made before pivot_root if the image lacked it (plan.ocifs)
            except OSError as e:
                raise InitError(EXIT_MINIBOX, f"exec: working directory: {e.strerror}: {step.workdir}") from None
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
                linux.mount(source, inroot.fd_path(target), step.fstype or None, remount_flags(step, target),
                            step.data or None)
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
        if step.chroot:
            os.chdir(step.new_root)
            os.chroot(".")
            self.pivoted = True
            return
        try:
            pivot.pivot_root(step.new_root)
        except pivot.PivotError as e:
            raise InitError(EXIT_MINIBOX, str(e)) from None
        if self.root is not None:
            self.root.close()
        self.pivoted = True

    # --- before pivot_root, inside the root -----------------------------------------------------

    def open_fifo(self, path: str) -> None:
        """exec.fifo, held (O_PATH does not block), and this process's /proc/self/fd with it:
        a container without a mount namespace of its own is chrooted into a root that may
        have no /proc, where the FIFO is reopened for writing."""
        self.fifo = os.open(path, os.O_PATH | os.O_CLOEXEC)
        self.fds = os.open("/proc/self/fd", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def _mask(self, step: MaskPath) -> None:
        rel = self._rel(step.path)
        try:
            fd = self._root().open(rel, os.O_PATH, strict=True)
        except (FileNotFoundError, NotADirectoryError):
            return  # nothing there to hide
        try:
            if inroot.is_dir(fd):
                linux.mount("tmpfs", inroot.fd_path(fd), "tmpfs", MS_RDONLY, None)
            else:
                null = self._root().open("dev/null", os.O_PATH, strict=True)
                try:
                    linux.mount(inroot.fd_path(null), inroot.fd_path(fd), None, MS_BIND, None)
                finally:
                    os.close(null)
        finally:
            os.close(fd)

    def _readonly(self, step: ReadonlyPath) -> None:
        rel = self._rel(step.path)
        try:
            fd = self._root().open(rel, os.O_PATH, strict=True)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            path = inroot.fd_path(fd)
            linux.mount(path, path, None, MS_BIND | MS_REC, None)
        finally:
            os.close(fd)
        # Opened again: the first fd still names the mount below the new bind, and a remount
        # must name the bind's own root.
        fd = self._root().open(rel, os.O_PATH, strict=True)
        try:
            path = inroot.fd_path(fd)
            linux.mount(path, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        finally:
            os.close(fd)

    def _sysctl(self, step: Sysctl) -> None:
        rel = self._rel(f"{self.rootfs}/proc/sys/{step.key.replace('.', '/')}")
        try:
            fd = self._root().open(rel, os.O_WRONLY, strict=True)
        except FileNotFoundError:
            raise InitError(EXIT_MINIBOX, f"linux.sysctl: no such key {step.key}") from None
        try:
            os.write(fd, step.value.encode())
        except OSError as e:
            raise InitError(EXIT_MINIBOX, f"linux.sysctl: {step.key}={step.value}: {e.strerror}") from None
        finally:
            os.close(fd)

    # --- after pivot_root ---------------------------------------------------------------------------

    def _wait_start(self) -> None:
        """Tell `create` the container is created, then block until `start`."""
        self.sync.say("created")
        self.created_said = True
        fd = os.open(str(self.fifo), os.O_WRONLY | os.O_CLOEXEC, dir_fd=self.fds)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
            os.close(self.fifo)
            os.close(self.fds)

FS_MAGIC = {"proc": 0x9FA0, "sysfs": 0x62656572}
KERNEL_DIRS = ("proc", "sys", "dev")


def _strict(rel: str) -> bool:
    """Under /proc, /sys and /dev no symlink may be followed (see fs.inroot)."""
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


def remount_flags(step: Mount, target_fd: int = -1) -> int:
    """A bind remount replaces the mount's flags: nosuid, nodev and noexec that the mount
    has now (the overlay is nodev, a volume's host mount may be nosuid) are kept, as runc
    keeps them, or a read-only remount would give them away."""
    if not (step.flags & MS_REMOUNT and step.flags & MS_BIND):
        return step.flags
    try:
        now = os.statvfs(inroot.fd_path(target_fd) if target_fd >= 0 else step.target).f_flag
    except OSError:
        return step.flags
    return step.flags | (now & (MS_NOSUID | MS_NODEV | MS_NOEXEC))  # (statvfs's ST_ bits are MS_'s)
