"""The container state machine: refresh, release, stop, kill, rm and exec, each checked against the state it finds.

States and transitions are in model.py; each is written before its side effects. State is
refreshed before it is read: a container whose shim wrote exit.json (or whose PID 1
vanished) is marked exited, one whose `minibox run` died while creating it is marked
exited too, and what an exited container held (network, rules, cgroup) is given back once,
whoever notices first: the shim's exit command, `stop`, `rm`, or any later `ps`.

`teardown` is the one way a container goes away (`rm`, `rm -f`, `gc`, and a `run` that
fails half-way): it finds what belongs to the container by its id (the record if it can
be read, else the names and tags every kernel object carries), kills, releases, and
deletes, going on past errors and reporting them all.
"""

from __future__ import annotations

import os
import shutil
import signal
import time

from minibox import config, store
from minibox.errors import (
    CleanupErrors,
    Conflict,
    Damaged,
    MiniboxError,
    NotRunning,
    WriteFailed,
)
from minibox.model import (
    CREATED,
    CREATING,
    EXITED,
    REMOVING,
    RUNNING,
    ContainerRecord,
    ContainerState,
    can_move,
)
from minibox.runtime import cgroups, procs


def require_root() -> None:
    if os.geteuid() != 0:
        raise MiniboxError("minibox needs root for this (namespaces, mounts, netfilter): run it with sudo")
    store.secure_root()


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


def refresh(cid: str, done: list | None = None) -> ContainerState:
    """Bring state.json up to date with the kernel, releasing resources of a stopped container."""
    state = store.load_state(cid)
    if state.status in (CREATING, CREATED) and _creator_gone(state):
        # The `minibox run` creating it was killed: the command never ran. Its PID 1 (if
        # any) sees EOF on "go" and exits; record the end so rm and gc can finish.
        state = _settle(cid, lambda s: s.status in (CREATING, CREATED) and _creator_gone(s),
                        exit_code=255, error="creation interrupted: the `minibox run` creating it was killed")
    if _has_pid1(state):
        exit_info = store.load_exit(cid)
        if exit_info is None and not procs.alive(state.pid, state.pid_start):
            # PID 1 is gone; its shim writes exit.json right after draining the logs.
            exit_info = wait_exit(cid, 2.0, state.shim_pid)
            if exit_info is None and state.shim_pid and not procs.alive(state.shim_pid, state.shim_start):
                # The shim died first: PID 1 got SIGKILL with it (its parent-death signal).
                exit_info = {"exit_code": 128 + 9, "finished_at": None, "supervisor_died": True}
            exit_info = exit_info or {"exit_code": 255, "finished_at": None}
        if exit_info is not None:
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


def release_resources(rec: ContainerRecord) -> tuple[list, list[str]]:
    """The network endpoint, then the cgroups: (steps done, errors met)."""
    c = Collector()
    if rec.endpoint is not None:
        from minibox.net import endpoint

        c.attempt("network", endpoint.release, rec)
    c.attempt("cgroups", cgroups.remove, cgroups.existing_dirs(config.cgroup_parent(), rec.id), config.cgroup_parent())
    return c.result


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


# --- rm ----------------------------------------------------------------------------------------------


def remove(cid: str, force: bool = False, volumes: bool = False) -> list:
    """`rm` (refuses a running container) or `rm -f`, with `-v` its anonymous volumes too;
    returns the steps removal took, including the release of its resources, whoever carried
    that out. Works on a container whose record or state is damaged."""
    from minibox.plan.steps import Kill

    try:
        rec: ContainerRecord | None = store.load_record(cid)
    except Damaged:
        rec = None
    try:
        state = refresh(cid) if rec is not None else store.load_state(cid)
    except (Damaged, CleanupErrors, WriteFailed):
        state = None
    name = rec.name if rec else cid[:12]
    steps: list = []
    if state is not None and state.status in (RUNNING, CREATING, CREATED) and not force:
        raise Conflict(f"container {name} is {state.status}: stop it first, or use `minibox rm -f {name}`")
    if state is not None and state.status == RUNNING:
        steps.append(Kill(str(state.pid), why="rm -f: SIGKILL to PID 1; the kernel then kills every process "
                                               "of its PID namespace"))
    if state is not None and state.status == EXITED and state.shim_pid and store.load_exit(cid) is None:
        _wait_gone(state.shim_pid, 5.0)  # the shim may still be recording the exit
    done, errors = teardown(cid, rec, state, volumes=volumes)
    from minibox.engine import events

    events.record(cid, "destroy", **({"name": rec.name, "image": rec.spec.image} if rec is not None else {}))
    if state is not None and state.released:
        done = steps_of(state.release_log) + done
    if errors:
        raise CleanupErrors(f"removing {name} (run `minibox rm -f {name}` again, or `minibox gc`)", errors)
    return steps + done


def teardown(cid: str, rec: ContainerRecord | None = None, state: ContainerState | None = None,
             volumes: bool = False) -> tuple[list, list[str]]:
    """Remove container `cid` and everything it holds, in this order: mark it removing,
    kill its processes, give back network and cgroups, delete its directory (and, with
    `volumes`, its anonymous volumes), free its name. Finds what it holds from the record
    if there is one, else by the id each object carries. Goes on past errors; (steps done,
    errors met)."""
    from minibox.plan.steps import RemovePath

    c = Collector()
    cdir = config.paths().container(cid)
    with store.container_lock(cid) if cdir.is_dir() else _nothing():
        _mark_removing(cid, c)
        try:  # as it is now that we hold the lock: a restart policy may have started it again
            state = store.load_state(cid)
        except (Damaged, OSError):
            pass
        c.attempt("processes", kill_all, cid, state)
        if rec is not None:
            released = state is not None and state.released
            if not released:
                c.add(release_resources(rec))
        else:
            from minibox.net import endpoint

            c.attempt("network", endpoint.release_orphan, cid)
            c.attempt("cgroups", cgroups.remove, cgroups.existing_dirs(config.cgroup_parent(), cid),
                      config.cgroup_parent())
        if cdir.exists():
            try:
                # renamed away first: no reader ever sees a half-deleted container (gc
                # removes a `.ID.removing` left by a kill)
                gone = cdir.with_name(f".{cid}.removing")
                os.rename(cdir, gone)
                shutil.rmtree(gone)
                c.steps.append(RemovePath(str(cdir), "tree", why="its state, logs and upper layer: the image "
                                                                  "below is untouched"))
            except OSError as e:
                c.errors.append(f"removing {cdir}: {e.strerror}")
        if rec is not None and (volumes or rec.spec.remove):
            from minibox.engine import volumes as vols

            for m in rec.mounts:
                if m.kind == "volume" and m.anonymous:
                    c.attempt("volumes", vols.remove_anonymous, m.source)
    with store.global_lock():
        store.release_names_of(cid)
    return c.result


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _mark_removing(cid: str, c: Collector) -> None:
    """Record `removing` first. On a full disk, make room by dropping the container's logs
    (they go with it anyway), and go on even if that does not help: removing is how space
    comes back."""
    try:
        state = store.load_state(cid)
    except (Damaged, OSError):
        state = ContainerState()
    if not config.paths().container(cid).is_dir():
        return
    for attempt in range(2):
        try:
            store.save_state(cid, state.replace(status=REMOVING))
            return
        except WriteFailed:
            if attempt == 0:
                from minibox.engine import logs

                logs.drop(config.paths().container(cid))
        except OSError:
            return


def kill_all(cid: str, state: ContainerState | None) -> tuple[list, list[str]]:
    """SIGKILL every process of the container, found three ways: the PIDs its state names
    (if they are still those processes), its cgroups' members, and its shim (and exit
    command) by command line. PID 1 first (its namespace dies with it), then the shim."""
    pids: list[int] = []
    if state is not None and procs.alive(state.pid, state.pid_start):
        pids.append(state.pid)
    pids += sorted(cgroups.procs(cgroups.existing_dirs(config.cgroup_parent(), cid)))
    shims = procs.find_shims(str(config.paths().container(cid)))
    if state is not None and procs.alive(state.shim_pid, state.shim_start) and state.shim_pid not in shims:
        shims.append(state.shim_pid)
    shims += procs.find_cleanups(cid)  # an exit command waiting to restart it: it must not
    for pid in pids + shims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if cgroups.frozen(dirs := cgroups.existing_dirs(config.cgroup_parent(), cid)):
        cgroups.freeze(dirs, False)  # paused: on cgroup v1 a frozen process dies only once thawed
    errors = [f"process {pid} did not die" for pid in pids + shims if not _wait_gone(pid, 10.0)]
    return [], errors


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while procs.alive(pid):
        if time.monotonic() > deadline:
            return False
        try:
            os.waitpid(pid, os.WNOHANG)  # our own child (a shim we started): reap it
        except ChildProcessError:
            pass
        time.sleep(0.01)
    return True


# --- exec ----------------------------------------------------------------------------------------------
