"""Removing containers, one or many in one pass: `rm`, `rm -f`, gc's and a failed run's teardown.

`teardown` is the one way a container goes away (`rm`, `rm -f`, `gc`, and a `run` that
fails half-way): it finds what belongs to the container by its id (the record if it can
be read, else the names and tags every kernel object carries), kills, releases, and
deletes, going on past errors and reporting them all.

Many containers at once (`rm -f A B C`, `container prune`) take the same path in phases,
so that what is paid per host, not per container, is paid once: each is marked removing
and sent SIGKILL (under its lock), all are waited for together, one firewall transaction,
one conntrack pass and one DNS reload give back all their published ports, flows and
names, and then each one's veth, address, cgroups, directory and name go. One container
is a batch of one.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import time

from minibox import config, store
from minibox.engine.lifecycle import Collector, refresh, release_resources, steps_of
from minibox.errors import CleanupErrors, Conflict, Damaged, MiniboxError, WriteFailed
from minibox.model import CREATED, CREATING, EXITED, REMOVING, RUNNING, ContainerRecord, ContainerState
from minibox.runtime import cgroups, procs


class Target:
    """One container a teardown works on: its id, and its record and state as far as they
    can be read (None: damaged or never written)."""

    def __init__(self, cid: str, rec: ContainerRecord | None = None, state: ContainerState | None = None):
        self.cid, self.rec, self.state = cid, rec, state
        self.collector = Collector()
        self.pids: list[int] = []


def remove(cid: str, force: bool = False, volumes: bool = False) -> list:
    """`rm` (refuses a running container) or `rm -f`, with `-v` its anonymous volumes too;
    returns the steps removal took, including the release of its resources, whoever carried
    that out. Works on a container whose record or state is damaged."""
    result = remove_many([cid], force, volumes)[0]
    if isinstance(result, MiniboxError):
        raise result
    return result


def remove_many(cids: list[str], force: bool = False, volumes: bool = False) -> list[list | MiniboxError]:
    """`remove` of each container, in one pass: per container, the steps its removal took,
    or the error that stopped it (a running one without `force`, say); the others go on."""
    from minibox.engine import events
    from minibox.plan.steps import Kill

    results: dict[str, list | MiniboxError] = {}
    targets = []
    for cid in dict.fromkeys(cids):
        try:
            rec: ContainerRecord | None = store.load_record(cid)
        except (Damaged, FileNotFoundError):  # or a directory a run killed before its record left
            rec = None
        try:
            state = refresh(cid) if rec is not None else store.load_state(cid)
        except (Damaged, CleanupErrors, WriteFailed, FileNotFoundError):
            state = None
        name = rec.name if rec else cid[:12]
        if state is not None and state.status in (RUNNING, CREATING, CREATED) and not force:
            results[cid] = Conflict(f"container {name} is {state.status}: stop it first, or use "
                                    f"`minibox rm -f {name}`")
            continue
        if state is not None and state.status == EXITED and state.shim_pid and store.load_exit(cid) is None:
            _wait_gone(state.shim_pid, 5.0)  # the shim may still be recording the exit
        targets.append(Target(cid, rec, state))
    kills = {t.cid: [Kill(str(t.state.pid), why="rm -f: SIGKILL to PID 1; the kernel then kills every process "
                                                 "of its PID namespace")]
             if t.state is not None and t.state.status == RUNNING else [] for t in targets}
    released = {t.cid: t.state is not None and t.state.released for t in targets}
    logs = {t.cid: steps_of(t.state.release_log) if released[t.cid] else [] for t in targets}
    for t, (done, errors) in zip(targets, teardown_many(targets, volumes=volumes)):
        events.record(t.cid, "destroy", **({"name": t.rec.name, "image": t.rec.spec.image} if t.rec else {}))
        name = t.rec.name if t.rec else t.cid[:12]
        results[t.cid] = CleanupErrors(f"removing {name} (run `minibox rm -f {name}` again, or `minibox gc`)",
                                       errors) if errors else kills[t.cid] + logs[t.cid] + done
    return [results[cid] for cid in cids]


def teardown(cid: str, rec: ContainerRecord | None = None, state: ContainerState | None = None,
             volumes: bool = False) -> tuple[list, list[str]]:
    """Remove container `cid` and everything it holds: (steps done, errors met)."""
    return teardown_many([Target(cid, rec, state)], volumes)[0]


def teardown_many(targets: list[Target], volumes: bool = False) -> list[tuple[list, list[str]]]:
    """Remove each container and everything it holds, in this order: mark it removing,
    kill its processes, give back network and cgroups, delete its directory (and, with
    `volumes`, its anonymous volumes), free its name. Goes on past errors; per container
    (steps done, errors met). The ports and flows all of them held are given back in one
    pass: its steps and errors are those of every container that had any."""
    found = procs.helpers()  # one look at every process, for every container's shim
    for t in targets:
        with _lock(t.cid):
            _mark_removing(t.cid)
            try:  # as it is now that we hold the lock: a restart policy may have started it again
                t.state = store.load_state(t.cid)
            except (Damaged, OSError):
                pass
            try:
                t.pids = _kill(t.cid, t.state, found)
            except Exception as e:  # noqa: BLE001 - teardown goes on past anything, and says what
                t.collector.errors.append(f"processes: {e}")
    deadline = time.monotonic() + 10.0
    for t in targets:
        t.collector.errors += [f"process {pid} did not die" for pid in t.pids
                               if not _wait_gone(pid, deadline - time.monotonic())]
    releasing = [t for t in targets if t.rec is not None and not (t.state is not None and t.state.released)]
    if any(t.rec.endpoint is not None for t in releasing):
        from minibox.net import endpoint  # ~10 ms of imports that `--network none` never needs

        try:
            shared = endpoint.release_bulk([t.rec for t in releasing])
        except Exception as e:  # noqa: BLE001
            shared = [], [f"network: {e}"]
        for t in releasing:
            if t.rec.endpoint is not None:
                t.collector.add(shared)
    for t in targets:
        _remove_rest(t, volumes)
    with store.global_lock():
        store.release_names_of(*(t.cid for t in targets))
    return [t.collector.result for t in targets]


def _remove_rest(t: Target, volumes: bool) -> None:
    """What one container holds on its own: its veth, address, cgroups and directory."""
    from minibox.plan.steps import RemovePath

    c, cid = t.collector, t.cid
    cdir = config.paths().container(cid)
    with _lock(cid):
        if t.rec is not None:
            if not (t.state is not None and t.state.released):
                c.add(release_resources(t.rec, bulk=False))
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
        if t.rec is not None and (volumes or t.rec.spec.remove):
            from minibox.engine import volumes as vols

            for m in t.rec.mounts:
                if m.kind == "volume" and m.anonymous:
                    c.attempt("volumes", vols.remove_anonymous, m.source)


def _lock(cid: str):
    return store.container_lock(cid) if config.paths().container(cid).is_dir() else _nothing()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _mark_removing(cid: str) -> None:
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
    """SIGKILL every process of the container and wait until they are gone: (no steps, errors)."""
    pids = _kill(cid, state, procs.helpers())
    return [], [f"process {pid} did not die" for pid in pids if not _wait_gone(pid, 10.0)]


def _kill(cid: str, state: ContainerState | None, found: procs.Helpers) -> list[int]:
    """SIGKILL every process of the container, found three ways: the PIDs its state names
    (if they are still those processes), its cgroups' members, and its shim (and exit
    command) by command line, among those `found`. PID 1 first (its
    namespace dies with it), then the shim. The PIDs signalled."""
    pids: list[int] = []
    if state is not None and procs.alive(state.pid, state.pid_start):
        pids.append(state.pid)
    pids += sorted(cgroups.procs(cgroups.existing_dirs(config.cgroup_parent(), cid)))
    shims = procs.find_shims(str(config.paths().container(cid)), found)
    if state is not None and procs.alive(state.shim_pid, state.shim_start) and state.shim_pid not in shims:
        shims.append(state.shim_pid)
    shims += procs.find_cleanups(cid, found)  # an exit command waiting to restart it: it must not
    shims += procs.find_proxies(str(config.paths().container(cid)), found)  # net.proxy's: they hold host ports
    for pid in pids + shims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if cgroups.frozen(dirs := cgroups.existing_dirs(config.cgroup_parent(), cid)):
        cgroups.freeze(dirs, False)  # paused: on cgroup v1 a frozen process dies only once thawed
    return pids + shims


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait until `pid` has exited (reaping it if it is our child), waking as it does."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        fd = -1  # gone already (or an old kernel: poll below)
    try:
        deadline = time.monotonic() + max(timeout, 0.0)
        while procs.alive(pid):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _reap(pid)
            if fd < 0:
                time.sleep(0.01)
            elif select.select([fd], [], [], min(left, 0.05))[0]:
                _reap(pid)
                return True  # it exited (its PID may be another process's by now)
        return True
    finally:
        if fd >= 0:
            os.close(fd)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)  # our own child (a shim we started): reap it
    except ChildProcessError:
        pass
