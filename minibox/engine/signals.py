"""Signals and the freezer for a running container: stop, kill, pause and unpause.

pause freezes every process of the container in its cgroup (v1's freezer, v2's
cgroup.freeze), as Docker's does; the kernel holds that, so a paused container stays
paused when the command that paused it is killed, and unpause, stop, kill and rm -f thaw
it (a frozen process cannot act on a signal until it is thawed).
"""

from __future__ import annotations

import os
import signal
import time

from minibox import config, store
from minibox.engine import lifecycle
from minibox.errors import Conflict, NotRunning, WriteFailed
from minibox.model import CREATING, EXITED, RUNNING, ContainerRecord, ContainerState
from minibox.runtime import cgroups, procs


def stop(rec: ContainerRecord, timeout: int | None = None) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds (None: its --stop-timeout, or 10): a
    PID 1 without a SIGTERM handler (sh, sleep, busybox httpd) ignores SIGTERM, because the
    kernel protects init."""
    if timeout is None:
        timeout = rec.spec.stop_timeout if rec.spec.stop_timeout >= 0 else config.STOP_TIMEOUT
    state = lifecycle.refresh(rec.id)
    if state.status in (RUNNING, EXITED, CREATING):
        _stopped_by_user(rec.id)  # also cancels a restart its policy has pending
    deadline = time.monotonic() + 30
    while state.status == CREATING and time.monotonic() < deadline:
        time.sleep(0.05)  # being (re)started, by its policy say: stop it once it runs
        state = lifecycle.refresh(rec.id)
    if state.status != RUNNING:
        return
    from minibox.engine import events

    events.record(rec.id, "kill", signal=stop_signal(rec))
    _signal(rec.id, state, stop_signal(rec))
    if not lifecycle.wait_exit(rec.id, timeout):
        events.record(rec.id, "kill", signal=int(signal.SIGKILL))
        _signal(rec.id, state, signal.SIGKILL)
        lifecycle.wait_exit(rec.id, 10)
    lifecycle.refresh(rec.id)
    events.record(rec.id, "stop")


def stop_signal(rec: ContainerRecord) -> int:
    """The image's STOPSIGNAL (SIGQUIT for nginx, say), else SIGTERM."""
    name = rec.stop_signal.upper()
    if name.isdigit():
        return int(name)
    name = name if name.startswith("SIG") else "SIG" + name
    return int(signal.Signals[name]) if name in signal.Signals.__members__ else signal.SIGTERM


def kill(rec: ContainerRecord, sig: int) -> None:
    state = lifecycle.refresh(rec.id)
    if state.status != RUNNING:
        raise NotRunning(f"container {rec.name} is not running")
    if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, stop_signal(rec)):
        _stopped_by_user(rec.id)  # a signal that ends it; a reload (HUP, USR1) leaves the policy be
    from minibox.engine import events

    events.record(rec.id, "kill", signal=sig)
    _signal(rec.id, state, sig)


def _stopped_by_user(cid: str) -> None:
    """Before the signal: the restart policy must not start again what the user stopped.
    On a full disk the mark is skipped: stopping must work there, and a policy would fail
    to start it again on that disk anyway."""
    with store.container_lock(cid):
        state = store.load_state(cid)
        if not state.stopped_by_user:
            try:
                store.save_state(cid, state.replace(stopped_by_user=True))
            except WriteFailed:
                pass


def _signal(cid: str, state: ContainerState, sig: int) -> None:
    if procs.alive(state.pid, state.pid_start):
        try:
            os.kill(state.pid, sig)
        except ProcessLookupError:
            pass
        dirs = _dirs(cid)
        if cgroups.frozen(dirs):
            cgroups.freeze(dirs, False)  # paused: it acts on the signal once thawed (Docker's stop does this)


def _dirs(cid: str) -> list[str]:
    return cgroups.existing_dirs(config.cgroup_parent(), cid)


def paused(cid: str) -> bool:
    """The kernel's word: the container's cgroup is frozen."""
    return cgroups.frozen(_dirs(cid))


def pause(rec: ContainerRecord) -> None:
    if lifecycle.refresh(rec.id).status != RUNNING:
        raise NotRunning(f"container {rec.name} is not running")
    if paused(rec.id):
        raise Conflict(f"container {rec.name} is already paused")
    cgroups.freeze(_dirs(rec.id), True)
    from minibox.engine import events

    events.record(rec.id, "pause")


def unpause(rec: ContainerRecord) -> None:
    if not paused(rec.id):
        raise Conflict(f"container {rec.name} is not paused")
    cgroups.freeze(_dirs(rec.id), False)
    from minibox.engine import events

    events.record(rec.id, "unpause")
