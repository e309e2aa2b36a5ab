"""What an OCI container's launch adds to the one Applier: the line between PID 1 and `create`, the engine's console, and hooks.

The create/start split is runc's: before pivot_root PID 1 opens the FIFO exec.fifo (in the
runtime's state directory) with O_PATH, which does not block; after everything but the
exec is done it reopens it through /proc/self/fd for writing, which blocks until
`minibox-oci start` opens it for reading (runtime.applier's WaitStart). `create` has
returned by then: what PID 1 still reports goes to the runtime's log, and a failure ends
PID 1, which `state` then shows as stopped.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import struct
import subprocess
import termios

from minibox import linux
from minibox.errors import EXIT_MINIBOX
from minibox.plan.steps import MS_BIND, RunHook
from minibox.runtime.command import InitError

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


def setup_terminal(console: int, size: tuple[int, int], console_node: bool = True) -> None:
    """process.terminal: a pty of the container's own devpts; its master goes to the
    engine over --console-socket, its slave becomes stdio and /dev/console."""
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
