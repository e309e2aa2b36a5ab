"""The container state machine: moving, refreshing and releasing a container, each checked against the state it finds.

States and transitions are in model.py; each is written before its side effects. State is
refreshed before it is read: a container whose shim wrote exit.json (or whose PID 1
vanished) is marked exited, one whose `minibox run` died while creating it is marked
exited too, and what an exited container held (network, rules, cgroup) is given back once,
whoever notices first: the shim's exit command, `stop`, `rm`, or any later `ps`.

Removing a container (`rm`, `gc`, a failed `run`) is engine.removal's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from minibox import config, store
from minibox.errors import (
    CleanupErrors,
    MiniboxError,
    NotRunning,
    WriteFailed,
)
from minibox.model import (
    CREATED,
    CREATING,
    EXITED,
    RUNNING,
    ContainerRecord,
    ContainerState,
    can_move,
)
from minibox.runtime import cgroups, procs


class Collector:
    """Steps done and errors met by a teardown that goes on past failures."""

    def __init__(self):
        self.steps: list = []
        self.errors: list[str] = []

    def add(self, result: tuple[list, list[str]]) -> None:
        steps, errors = result
        self.steps += steps
        self.errors += errors

    def attempt(self, what: str, fn, *args) -> None:
        """Run fn(*args) -> (steps, errors); an exception becomes one more error."""
        try:
            self.add(fn(*args))
        except Exception as e:  # noqa: BLE001 - teardown goes on past anything, and says what
            self.errors.append(f"{what}: {e}")

    @property
    def result(self) -> tuple[list, list[str]]:
        return self.steps, self.errors


# --- state -------------------------------------------------------------------------------------


def move(cid: str, new: str, **changes) -> ContainerState:
    """Record a transition (under the container's lock), before its side effects."""
    with store.container_lock(cid):
        state = store.load_state(cid)
        if not can_move(state.status, new):
            raise MiniboxError(f"container {cid[:12]} cannot go from {state.status} to {new}")
        state = state.replace(status=new, **changes)
        store.save_state(cid, state)
        return state


def _has_pid1(state: ContainerState) -> bool:
    """Running, or made by `create` and waiting for `start`: its shim records how it ends."""
    return state.status == RUNNING or (state.status == CREATED and state.parked)


def _creator_gone(state: ContainerState) -> bool:
    return bool(state.creator_pid) and not procs.alive(state.creator_pid, state.creator_start)


SUPERVISOR_DIED = ("its supervisor (minibox-shim, PID {}) died, and PID 1 was killed with it: no restart policy "
                   "ran (`minibox start` or `minibox gc --restart` starts it again)")


def refresh(cid: str, done: list | None = None, state: ContainerState | None = None) -> ContainerState:
    """Bring state.json up to date with the kernel, releasing resources of a stopped container.
    `state`: as just read (ps's memo); returned as it is when nothing needed doing."""
    state = store.load_state(cid) if state is None else state
    if state.status in (CREATING, CREATED) and _creator_gone(state):
        # The `minibox run` creating it was killed: the command never ran. Its PID 1 (if
        # any) sees EOF on "go" and exits; record the end so rm and gc can finish.
        state = _settle(cid, lambda s: s.status in (CREATING, CREATED) and _creator_gone(s),
                        exit_code=255, error="creation interrupted: the `minibox run` creating it was killed")
    if _has_pid1(state) and not procs.alive(state.pid, state.pid_start):  # (start removes the last exit.json)
        exit_info = store.load_exit(cid)
        if exit_info is None:
            # PID 1 is gone; its shim writes exit.json right after draining the logs.
            exit_info = wait_exit(cid, 2.0, state.shim_pid)
            if exit_info is None and state.shim_pid and not procs.alive(state.shim_pid, state.shim_start):
                # The shim died first: PID 1 got SIGKILL with it (its parent-death signal).
                exit_info = {"exit_code": 128 + 9, "finished_at": None, "supervisor_died": True}
            exit_info = exit_info or {"exit_code": 255, "finished_at": None}
        died = {"supervisor_died": True, "error": SUPERVISOR_DIED.format(state.shim_pid)} \
            if exit_info.get("supervisor_died") else {}
        state = _settle(cid, _has_pid1, exit_code=exit_info["exit_code"],
                        finished_at=_parse_ts(exit_info.get("finished_at")), **died)
    if state.status == EXITED and not state.released:
        state = release(cid, done)
    return state


def _settle(cid: str, still, **changes) -> ContainerState:
    """Mark exited, if `still(state)` holds once the lock is ours. A full disk must not make
    `ps` fail: the state is then shown as found, and written by a later command."""
    with store.container_lock(cid):
        state = store.load_state(cid)
        if not still(state):
            return state
        changes.setdefault("finished_at", time.time())
        state = state.replace(status=EXITED, **changes)
        try:
            store.save_state(cid, state)
        except WriteFailed:
            pass
    from minibox.engine import events

    events.record(cid, "die", exitCode=state.exit_code)
    return state


def _parse_ts(ts: str | None) -> float:
    if not ts:
        return time.time()
    from datetime import datetime

    return datetime.fromisoformat(ts[:26].rstrip("Z") + "+00:00").timestamp()


def wait_exit(cid: str, timeout: float, shim_pid: int = 0) -> dict | None:
    """The shim's exit.json once it is written; None after `timeout`, or as soon as the
    shim (when given) is gone without writing it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = store.load_exit(cid)
        if info is not None:
            return info
        if shim_pid and not procs.alive(shim_pid):
            return store.load_exit(cid)
        time.sleep(0.01)
    return store.load_exit(cid)


def release(cid: str, done: list | None = None) -> ContainerState:
    """Give back what an exited container held. Idempotent; goes on past errors. The steps
    it carried out are appended to `done` (for `rm --explain`)."""
    with store.container_lock(cid):
        state = store.load_state(cid)
        if state.released:
            return state
        rec = store.load_record(cid)
        steps, errors = release_resources(rec)
        if done is not None:
            done += steps
        if errors:
            raise CleanupErrors(f"releasing {rec.name}", errors)
        state = state.replace(released=True, release_log=log_of(steps))
        try:
            store.save_state(cid, state)
        except WriteFailed:
            pass  # released all the same; the next refresh finds nothing left to give back
        return state


def release_resources(rec: ContainerRecord, bulk: bool = True) -> tuple[list, list[str]]:
    """The network endpoint, then the cgroups: (steps done, errors met). `bulk` False: what
    endpoint.release_bulk gives back was given back already (engine.removal does that for
    many containers in one pass)."""
    c = Collector()
    if rec.endpoint is not None:
        from minibox.net import endpoint

        if rec.endpoint.ip6:  # ports on IPv6 loopback went through proxies (net.proxy): they hold host ports
            c.attempt("proxies", _stop_proxies, rec.id)
        c.attempt("network", endpoint.release, rec, bulk)
    c.attempt("cgroups", cgroups.remove, cgroups.existing_dirs(config.cgroup_parent(), rec.id), config.cgroup_parent())
    return c.result


def _stop_proxies(cid: str) -> tuple[list, list[str]]:
    """SIGTERM container `cid`'s userland proxies: docker-proxy closes its listener and goes."""
    for pid in procs.find_proxies(str(config.paths().container(cid))):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    return [], []


def log_of(steps: list) -> tuple:
    """Steps as (why, command) pairs: what release() keeps in the state for later explaining."""
    return tuple((s.why, s.command()) for s in steps)


def steps_of(log) -> list:
    from minibox.plan.steps import Logged

    return [Logged(cmd, why=why) for why, cmd in log]


def running(ref: str) -> tuple[ContainerRecord, ContainerState]:
    """The record and state of a running container; NotRunning otherwise."""
    rec = store.resolve(ref)
    state = refresh(rec.id)
    if state.status != RUNNING:
        raise NotRunning(f"container {rec.name} is not running (it is {state.status}): "
                         f"`minibox inspect {rec.name}` shows what is left")
    return rec, state
