"""Forking a helper process of a minibox command: quiet, deaf to Ctrl-C, never outliving the command.

image.workers (a layer's fetch and unpack) forks them; what a helper needs is here once,
for any that comes:
- Ctrl-C is held back across fork(). Landing in the child before it ignores SIGINT, it
  would run the parent's handlers there: a traceback from threading's after-fork hook, or
  an unwind into the command's own code (a random-moment Ctrl-C did it 11 rounds in 150).
  Held, the child drops it once it ignores SIGINT, and the parent raises it as soon as
  fork() returns: no Ctrl-C is lost, none prints.
- The child holds /dev/null as stdio (the caller's pipes must reach EOF when the caller
  is done, not its helper), and gets SIGKILL when its parent dies (parent-death signal);
  if the parent died before that was armed, it leaves at once.
A helper leaves with os._exit: nothing of the parent's (buffers, atexit handlers) runs twice.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Iterator


@contextlib.contextmanager
def ctrl_c_held() -> Iterator[None]:
    """SIGINT blocked for the block's length; a Ctrl-C that came meanwhile is raised at its end.

    The mask is read first, unchanged: pthread_sigmask raises a Ctrl-C that came before it
    only *after* it changed the mask, so the block may raise with SIGINT blocked, and only
    a mask known beforehand can be put back (else every later Ctrl-C would be lost)."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def fork() -> int:
    """fork(), as above: the child's PID in the parent; 0 in the child, set up already.

    A caller that records the PID holds Ctrl-C (ctrl_c_held) across this call and the
    record: a Ctrl-C in between would leave a helper nobody ends."""
    sys.stdout.flush()  # the child must not inherit half-written output
    sys.stderr.flush()
    parent = os.getpid()
    pid = -1
    try:
        with ctrl_c_held():
            pid = os.fork()
            if pid == 0:
                _become_helper(parent)
    except BaseException:
        if pid > 0:
            _end(pid)  # the caller never learns the PID: the child is ended here
        raise
    return pid


def _become_helper(parent: int) -> None:
    """In the child, with SIGINT still blocked: ignore it (a Ctrl-C pending is dropped as
    the mask is put back), take /dev/null as stdio, die with the parent."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        import prctl

        prctl.set_pdeathsig(signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)  # it died before the signal was armed
    except BaseException:  # noqa: BLE001 - a forked child must never return into the command
        os._exit(1)


def _end(pid: int) -> None:
    """Kill and reap a helper whose parent is leaving before it could name it."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)
