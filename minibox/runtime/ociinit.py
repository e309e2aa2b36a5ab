"""PID 1 of an OCI container: the steps config.json adds to runtime.init's (masks, sysctls, hooks, the start wait, the five capability sets, rlimits).

The create/start split is runc's: before pivot_root PID 1 opens the FIFO exec.fifo (in the
runtime's state directory) with O_PATH, which does not block; after everything but the
exec is done it reopens it through /proc/self/fd for writing, which blocks until
`minibox-oci start` opens it for reading. `create` has returned by then: what PID 1 still
reports goes to the runtime's log, and a failure ends PID 1, which `state` then shows as
stopped.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import socket
import struct
import subprocess
import termios

import prctl

from minibox import linux
from minibox.errors import EXIT_MINIBOX
from minibox.plan.steps import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    LoadSeccomp,
    MaskPath,
    Mount,
    OomScoreAdj,
    ReadonlyPath,
    RunHook,
    SetCapabilities,
    SetRlimit,
    SetUser,
    Step,
    Sysctl,
    WaitStart,
)
from minibox.runtime import caps, inroot
from minibox.runtime.init import Applier, InitError

HOOK_TIMEOUT = 30  # seconds, when the hook names none


class Sync:
    """PID 1's line to `create`: one message each way at a time, as text."""

    def __init__(self, fd: int):
        self.sock = socket.socket(fileno=fd)

    def say(self, msg: str) -> None:
        self.sock.sendall(msg.encode() + b"\n")

    def hear(self) -> str:
        data = b""
        while not data.endswith(b"\n"):
            chunk = self.sock.recv(4096)
            if not chunk:
                raise InitError(EXIT_MINIBOX, "container init: the runtime went away during create")
            data += chunk
        return data.decode().strip()


class OciApplier(Applier):
    def __init__(self, rootfs: str, sync: Sync, state: dict, console: int = -1, console_size=(0, 0),
                 exec_fd: int = -1, report: str = "l2"):
        super().__init__(rootfs, exec_fd, report)
        self.sync = sync
        self.state = state  # the container's state, for hooks: id, pid, bundle, annotations
        self.console = console  # connected console socket (process.terminal), or -1
        self.console_size = console_size
        self.fifo = -1
        self.created_said = False

    def apply(self, step: Step) -> None:
        if isinstance(step, Mount) and self.pivoted:
            linux.mount(step.source, step.target, step.fstype or None, step.flags, step.data or None)
        elif isinstance(step, MaskPath):
            self._mask(step)
        elif isinstance(step, ReadonlyPath):
            self._readonly(step)
        elif isinstance(step, Sysctl):
            self._sysctl(step)
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
        elif isinstance(step, LoadSeccomp) and step.why.startswith("early"):
            linux.seccomp_load(step.program)  # no no_new_privs: loaded while CAP_SYS_ADMIN is still held
        else:
            super().apply(step)

    # --- before pivot_root, inside the root -----------------------------------------------------

    def open_fifo(self, path: str) -> None:
        self.fifo = os.open(path, os.O_PATH | os.O_CLOEXEC)

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
        fd = os.open(f"/proc/self/fd/{self.fifo}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
            os.close(self.fifo)

    def setup_terminal(self, console_node: bool = True) -> None:
        """process.terminal: a pty of the container's own devpts; its master goes to the
        engine over --console-socket, its slave becomes stdio and /dev/console."""
        master, slave = os.openpty()
        rows, cols = self.console_size
        if rows or cols:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        name = os.ttyname(slave)
        try:
            if console_node:  # PID 1's only: an exec'd process leaves the container's console alone
                linux.mount(name, "/dev/console", None, MS_BIND, None)
        except OSError:
            pass  # no /dev/console to bind over: the terminal works without it
        sock = socket.socket(fileno=self.console)
        sock.sendmsg([name.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", master))])
        sock.close()
        os.close(master)
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for target in (0, 1, 2):
            os.dup2(slave, target)
        if slave > 2:
            os.close(slave)


def run_hook(hook: RunHook, state: dict) -> None:
    """A hook with the container's state on stdin; its failure (or timeout) fails the step."""
    env = dict(e.split("=", 1) for e in hook.env if "=" in e)
    try:
        res = subprocess.run(list(hook.args) or [hook.path], executable=hook.path, input=json.dumps(state).encode(),
                             env=env, capture_output=True, timeout=hook.timeout or HOOK_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise InitError(EXIT_MINIBOX, f"{hook.why} ({hook.path}) timed out after {hook.timeout or HOOK_TIMEOUT} s") \
            from None
    except OSError as e:
        raise InitError(EXIT_MINIBOX, f"{hook.why} ({hook.path}): {e.strerror}") from None
    if res.returncode != 0:
        detail = res.stderr.decode(errors="replace").strip().splitlines()
        raise InitError(EXIT_MINIBOX, f"{hook.why} ({hook.path}) failed with exit status {res.returncode}"
                                      + (f": {detail[-1]}" if detail else ""))
