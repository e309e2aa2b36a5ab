"""`start`, `restart` and restart policies: a created container let go, an exited one run again.

A container made by `create` has a PID 1 that holds its namespaces, network and cgroup, has
built its root, and waits at its WaitStart step on containers/ID/exec.fifo; `start` reads
the FIFO, and the command runs (runc's create/start split, as minibox-oci's). An exited container has given back its address, ports,
veth and cgroup; `start` plans it again from its record, keeping its id, name, writable
layer, volumes, logs and host ports, and runs it detached as a new PID 1 (its address
may differ, as in Docker). The restart policy's decision (plan.restart) is carried out by
the shim's exit command, which calls `policy_after_exit` here.
"""

from __future__ import annotations

import contextlib
import os
import time

from minibox import notes
from minibox import config, store
from minibox.engine import facts, launch, lifecycle
from minibox.errors import Conflict
from minibox.model import CREATED, CREATING, EXITED, RUNNING, ContainerState, can_move
from minibox.plan import restart as policy
from minibox.runtime import procs


def start(cid: str) -> ContainerState:
    """Let a created container's command run, or run an exited one again; a running one
    is left as it is (Docker's `start` of a running container does nothing)."""
    state = lifecycle.refresh(cid)
    if state.status == RUNNING:
        return state
    if state.status == CREATED and state.parked:
        return _unpark(cid)
    if state.status == EXITED:
        return run_again(cid)
    name = store.load_record(cid).name
    raise Conflict(f"container {name} is {state.status}: wait until it is created, or `minibox rm -f {name}`")


def _unpark(cid: str) -> ContainerState:
    from minibox.runtime import launcher

    state = lifecycle.move(cid, RUNNING, started_at=time.time(), parked=False)
    from minibox.engine import events

    events.record(cid, "start")
    fifo = str(config.paths().container(cid) / launch.START_FIFO)
    why = launcher.let_start(fifo, lambda: not procs.alive(state.pid))
    if not why and store.load_record(cid).healthcheck:
        from minibox.engine import health

        health.spawn(cid)
    if why:
        name = store.load_record(cid).name
        lifecycle.refresh(cid)  # its end, recorded
        raise Conflict(f"container {name} cannot start: {why}: `minibox ps -a` shows it")
    return state


def run_again(cid: str, restarts: int = 0, quick: int = 0, unless=None) -> ContainerState:
    """An exited container, planned again from its record and started detached. `restarts`
    and `quick` are its restart policy's counts (a user's start sets them back to 0, as
    Docker's does); `unless(state)`, checked under the container's lock, calls it off."""
    from minibox.runtime import shimbin

    lifecycle.release(cid)  # idempotent: what the last run held must be free
    rec = store.load_record(cid)
    me = os.getpid()
    with store.container_lock(cid):
        state = store.load_state(cid)
        if unless is not None and unless(state):
            return state  # the user stopped, removed or started it meanwhile: their word wins
        if not can_move(state.status, CREATING):
            raise Conflict(f"container {rec.name} is {state.status}: it cannot be started now")
        store.save_state(cid, state.replace(
            status=CREATING, creator_pid=me, creator_start=procs.start_time(me), pid=0, pid_start=0, shim_pid=0,
            shim_start=0, exit_code=0, error="", released=False, release_log=(), started_at=0.0, finished_at=0.0,
            stopped_by_user=False, parked=False, restart_count=restarts, quick_restarts=quick, again=True,
            supervisor_died=False))
    with contextlib.suppress(FileNotFoundError):
        (config.paths().container(cid) / "exit.json").unlink()  # the last run's end
    # Its own image (by id: a tag may have moved), its resolved host ports, in the background.
    spec = rec.spec._replace(image=rec.image_id or rec.spec.image, pull="never", ports=rec.ports,
                             publish_all=False, detach=True, interactive=False)
    try:
        basics = facts.read(spec, cid=rec.id, name=rec.name)
        _plan, sp, _steps = launch.plan_and_apply(spec, basics, rec, str(shimbin.ensure_shim()), again=True)
        if rec.extra:  # the networks `network connect` added, plugged in again
            from minibox.net import connect

            for problem in connect.attach_all(store.load_record(cid), sp.pid):
                notes.say(f"warning: {problem}")
    except BaseException as e:
        _give_up(cid, e)
        raise
    with contextlib.suppress(Exception):
        sp.wait()  # a failed exec is recorded by the shim as 126/127, as for `run -d`
    return lifecycle.refresh(cid)


def _give_up(cid: str, err: BaseException) -> None:
    """A start that failed half-way: the container is exited again, holding nothing."""
    with contextlib.suppress(Exception):
        from minibox.engine import removal

        removal.kill_all(cid, store.load_state(cid))
    with contextlib.suppress(Exception):
        lifecycle.move(cid, EXITED, exit_code=125, error=f"starting it again: {err}", finished_at=time.time())
    with contextlib.suppress(Exception):
        lifecycle.release(cid)


def policy_after_exit(cid: str) -> bool:
    """The shim's exit command, after the exit is recorded: start the container again if
    its restart policy says so (after the backoff). True if it was started again."""
    rec = store.load_record(cid)
    pol = policy.parse(rec.spec.restart)
    state = store.load_state(cid)
    if state.status != EXITED or not policy.should_restart(pol, state.exit_code, state.restart_count,
                                                           state.stopped_by_user):
        return False
    quick, wait = policy.backoff(state.quick_restarts, state.finished_at - state.started_at)
    time.sleep(wait)
    try:
        after = run_again(cid, state.restart_count + 1, quick, unless=lambda now: now.status != EXITED or
                          now.stopped_by_user or now.finished_at != state.finished_at)
    except Exception as e:  # noqa: BLE001 - the shim's exit command has nobody to tell but the state
        notes.say(f"restarting {rec.name}: {e}")
        return False
    return after.restart_count == state.restart_count + 1 and after.status != EXITED
