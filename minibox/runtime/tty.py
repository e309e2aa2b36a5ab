"""The user's terminal: raw mode while a container owns it, and the relay `exec -t` uses.

With a tty, keystrokes (Ctrl-C included) must reach the container's pty as bytes, and the
pty's line discipline turns Ctrl-C into SIGINT for the container's foreground process; so
our side of the terminal goes raw and copies bytes both ways.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import termios
import tty
from typing import Iterator


@contextlib.contextmanager
def raw_mode(fd: int = 0) -> Iterator[None]:
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    # TCSADRAIN, not setraw's default TCSAFLUSH: that would throw away what the user typed
    # while the container was starting (the test typing at the first prompt lost it now and then).
    tty.setraw(fd, termios.TCSADRAIN)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def copy_winsize(src: int, dst: int) -> None:
    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
    except OSError:
        pass  # not a terminal: nothing to follow


def relay(master: int, stdin_open: bool = True) -> None:
    """Copy our stdin to the pty master and its output to our stdout until the pty closes."""
    copy_winsize(0, master)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    old = signal.signal(signal.SIGWINCH, lambda *_: os.write(wake_w, b"w"))
    try:
        while True:
            watch = [master, wake_r] + ([0] if stdin_open else [])
            try:
                ready, _, _ = select.select(watch, [], [])
            except InterruptedError:
                continue
            if wake_r in ready:
                os.read(wake_r, 64)
                copy_winsize(0, master)
            if 0 in ready:
                data = os.read(0, 16384)
                if data:
                    os.write(master, data)
                else:
                    stdin_open = False
            if master in ready:
                try:
                    data = os.read(master, 16384)
                except OSError as e:
                    if e.errno == errno.EIO:  # the last process holding the pty is gone
                        return
                    raise
                if not data:
                    return
                os.write(1, data)
    finally:
        signal.signal(signal.SIGWINCH, old)
        os.close(wake_r)
        os.close(wake_w)
