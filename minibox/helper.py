"""Forking a helper process of a minibox command: quiet, deaf to Ctrl-C, never outliving the command.

image.workers (a layer's fetch and unpack) and net.linkworker (pyroute2's import, then
the veth) each fork one. What both need is here once:
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

import os
import signal
import sys


def fork() -> int:
    """fork(), as above: the child's PID in the parent; 0 in the child, set up already."""
    sys.stdout.flush()  # the child must not inherit half-written output
    sys.stderr.flush()
    parent = os.getpid()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        raise
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a Ctrl-C that came meanwhile is raised here
        return pid
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # ...and dropped here
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        import prctl

        prctl.set_pdeathsig(signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)  # it died before the signal was armed
    except BaseException:  # noqa: BLE001 - a forked child must never return into the command
        os._exit(1)
    return 0
