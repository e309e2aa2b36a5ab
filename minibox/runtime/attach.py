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
import signal
import socket
import time

from minibox.errors import NotRunning


def connect(path: str) -> socket.socket:
    """The shim's attach socket (the path may be long: see launcher.socket_address)."""
    from minibox.runtime.launcher import socket_address

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        with socket_address(path) as address:
            sock.connect(address)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise NotRunning("this container has no attach socket (its shim predates attach): restart it") from None
    except BaseException:
        sock.close()
        raise
    return sock


def copy(sock: socket.socket, tty: bool, stdin: int = 0, stdout: int = 1, stderr: int = 2, pty: str = "") -> None:
    """Bytes both ways until the shim closes the socket (the container ended, or Ctrl-P
    Ctrl-Q): stdin to the socket; the socket to stdout, as it comes with a pty, else
    unframed back to stdout and stderr (see Frames). `pty`: the container's terminal
    (/proc/PID/fd/0), which follows our window's size."""
    from minibox.runtime import tty as ttys

    frames = None if tty else Frames()
    reading = [sock.fileno(), stdin]
    follow = follow_winsize(stdin, pty) if tty and pty else contextlib.nullcontext()
    with ttys.raw_mode(stdin) if tty else contextlib.nullcontext(), follow:
        while True:
            ready, _, _ = select.select(reading, [], [])
            if sock.fileno() in ready:
                data = sock.recv(65536)
                if not data:
                    return
                for stream, chunk in frames.feed(data) if frames else ((1, data),):
                    os.write(stderr if stream == 2 else stdout, chunk)
            if stdin in ready:
                data = os.read(stdin, 65536)
                if not data:
                    reading.remove(stdin)  # our input ended; the container's output still comes
                    continue
                sock.sendall(data)


@contextlib.contextmanager
def follow_winsize(ours: int, pty: str):
    """Our terminal's size onto the container's, now and on each SIGWINCH. The size is set
    on the container's end of its pty (the shim holds the other), which the kernel allows
    either side to do, and which sends the container its own SIGWINCH."""
    from minibox.runtime import tty as ttys

    def copy_size(*_args) -> bool:
        try:
            fd = os.open(pty, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            if not os.isatty(fd):
                return False  # not yet its terminal: a container just started sets it up
            ttys.copy_winsize(ours, fd)
            return True
        finally:
            os.close(fd)

    for _ in range(20):
        if copy_size():
            break
        time.sleep(0.05)
    old = signal.signal(signal.SIGWINCH, copy_size)
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, old)


class Frames:
    """Docker's attach stream without a tty, as the shim writes it: 8 bytes (the stream, 1
    stdout or 2 stderr; three zeros; the length, big-endian), then that many bytes."""

    def __init__(self):
        self.buf = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buf += data
        out = []
        while len(self.buf) >= 8:
            size = int.from_bytes(self.buf[4:8], "big")
            if len(self.buf) < 8 + size:
                break
            out.append((self.buf[0], self.buf[8:8 + size]))
            self.buf = self.buf[8 + size:]
        return out
