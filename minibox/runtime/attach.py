"""`minibox attach`: this terminal joined to a running container through its shim's attach socket.

The shim (runtime/shim.c) listens on containers/ID/attach.sock and takes one client at a
time in place of a terminal: the container's output is copied to it, and what it sends
goes to the container's pty (or its stdin pipe, with -i). Ctrl-P Ctrl-Q is spotted by the
shim, which then drops the client: the container runs on. So this side only copies bytes,
with the terminal in raw mode when the container has a pty, until the shim closes.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket

from minibox.errors import NotRunning


def connect(path: str) -> socket.socket:
    """The shim's attach socket (reached through /proc/self/fd: the path may be long)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        dirfd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        sock.close()
        raise NotRunning("this container has no attach socket (its shim predates attach): restart it") from None
    try:
        sock.connect(f"/proc/self/fd/{dirfd}/{os.path.basename(path)}")
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise NotRunning("this container has no attach socket (its shim predates attach): restart it") from None
    finally:
        os.close(dirfd)
    return sock


def copy(sock: socket.socket, raw: bool, stdin: int = 0, stdout: int = 1) -> None:
    """Bytes both ways until the shim closes the socket (the container ended, or Ctrl-P
    Ctrl-Q): stdin to the socket, the socket to stdout."""
    from minibox.runtime import tty

    reading = [sock.fileno(), stdin]
    with tty.raw_mode(stdin) if raw else contextlib.nullcontext():
        while True:
            ready, _, _ = select.select(reading, [], [])
            if sock.fileno() in ready:
                data = sock.recv(65536)
                if not data:
                    return
                os.write(stdout, data)
            if stdin in ready:
                data = os.read(stdin, 65536)
                if not data:
                    reading.remove(stdin)  # our input ended; the container's output still comes
                    continue
                sock.sendall(data)
