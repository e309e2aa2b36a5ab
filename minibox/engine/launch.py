"""`minibox run`: record the container, hold its address and ports, plan it, apply the plan, let it go.

    facts (read) -> record (state: creating) -> hold ports, choose address (recorded first)
      -> plan_run (pure) -> files, network, firewall, cgroups -> launcher (PID 1 joins its cgroup)
      -> veth into its namespace -> state: created -> state: running -> "go"

Every side effect comes after the state that names it, so a `run` killed at any moment
leaves a container that `ps -a` shows and `rm -f` or `gc` can finish. A run that fails
(or is interrupted) undoes itself through removal.teardown, the same path as `rm -f`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from minibox import notes
from minibox import config, files, store
from minibox.engine import facts, lifecycle
from minibox.errors import ExecFailed, MiniboxError
from minibox.model import (
    CREATED,
    CREATING,
    RUNNING,
    ContainerRecord,
    ContainerSpec,
    ContainerState,
)
from minibox.plan.oci import Plan
from minibox.plan.run import plan_run
from minibox.plan.steps import ConntrackFlush, DnsRecord, Firewall, MakeDir, UserlandProxy, WriteFile
from minibox.runtime import procs
from minibox.value import Value

START_FIFO = "exec.fifo"  # plan.oci's WaitStart: where a created PID 1 waits for `start`
ATTACH_SOCKET = "attach.sock"  # where the shim waits for `minibox attach`


class RunResult(Value):
    record: ContainerRecord
    exit_code: int | None = None  # None for a detached container
    steps: tuple | list = ()  # the Steps that were applied, for --explain


def run(spec: ContainerSpec, explain=None, park: bool = False) -> RunResult:
    """Create and start a container. `explain(steps, pid, cid)`, if given, is called with
    every step applied, just before the container's command is allowed to start. With
    `park` (`minibox create`), its PID 1 waits for `start` instead."""
    from minibox.runtime import shimbin

    store.require_root()
    basics = facts.read(spec)
    spec = basics.spec  # with what the image adds (-P)
    shim = str(shimbin.ensure_shim())
    rec = basics.record
    cid = rec.id
    store.reserve_name(rec.name, cid)  # atomic: of parallel runs asking for one name, one wins
    try:
        store.make_container_dir(cid)
        me = os.getpid()
        store.save_record(rec)
        store.save_state(cid, ContainerState(status=CREATING, creator_pid=me, creator_start=procs.start_time(me)))
        plan, sp, steps = plan_and_apply(spec, basics, rec, shim, explain, park)
    except BaseException:
        _undo(cid)
        raise
    if park:
        return RunResult(plan.record, None, steps)
    try:
        sp.wait()
    except ExecFailed:
        if spec.detach:
            lifecycle.wait_exit(cid, 5.0)  # the shim records the 126/127 and runs the cleanup
        else:
            _reap(sp.shim_pid)
        finish(cid)
        raise
    if spec.detach:
        return RunResult(plan.record, None, steps)
    return RunResult(plan.record, _wait_attached(plan.record, sp), steps)


def plan_and_apply(spec: ContainerSpec, basics: facts.Basics, rec: ContainerRecord, shim: str, explain=None,
                   park: bool = False, again: bool = False):
    """Hold rec's host ports and choose its address (on a bridge network), plan, apply:
    (the plan, the Spawned PID 1, the steps). `run` and `start` of an exited container
    both come through here. The ports' sockets are closed if anything fails; on success
    the shim holds them."""
    sockets: list = []
    try:
        if basics.network is None:
            plan = plan_run(spec, facts.for_run(spec, basics, rec), park)
        else:
            from minibox.net import endpoint, firewall, networks

            rec, sockets = endpoint.reserve(rec, spec.ports, basics.network, spec.ip, spec.ip6,
                                            record=store.save_record)
            networks.ensure_up(basics.network)  # converge: the bridge and its sysctls, as the plan has them
            endpoint.index_ports(rec)
            # Plan once: the firewall transaction from facts read under the lock, and that very
            # transaction applied (a parallel run may have changed the ruleset meanwhile).
            with firewall.locked(rec.firewall) as ff:
                plan = plan_run(spec, facts.for_run(spec, basics, rec, ff), park)
                firewall.apply(rec.firewall, [s for s in plan.network if isinstance(s, Firewall)],
                               resync=not ff.in_sync)
        sp, steps = apply(plan, spec, basics, shim, sockets, explain, park, again)
    except BaseException:
        for s in sockets:
            s.close()
        raise
    return plan, sp, steps


def apply(plan: Plan, spec: ContainerSpec, basics: facts.Basics, shim: str, sockets: list, explain,
          park: bool = False, again: bool = False):
    """Carry out the plan, in its order; the Spawned PID 1 and the steps as applied. `park`:
    leave PID 1 waiting for `start`; `again`: the container ran before (its files exist)."""
    from minibox.runtime import cgroups, launcher, shimbin

    rec = plan.record
    cdir = config.paths().container(rec.id)
    for step in plan.files:
        if isinstance(step, MakeDir):
            files.make_dirs(Path(step.path), step.mode)
        elif isinstance(step, WriteFile):
            _write(step, again)
    from minibox.engine import execute

    execute.save_spec(rec.id, plan.spec, basics.seccomp)  # what exec reads back: PID 1's own process
    cgroups.create(list(plan.cgroups))
    # Detached, the shim's exit command records the end; attached with a pty, it does so
    # only if Ctrl-P Ctrl-Q detached the caller (else the caller does, in finish()).
    detachable = spec.tty and spec.interactive and not spec.detach
    exit_cmd = exit_command(rec.id) if spec.detach or detachable else []
    # A port that answers on IPv6 loopback: its userland proxy takes it over from the socket
    # holding it now, before PID 1 is forked (a fork would hold the port too). It only dials
    # the container when a client comes.
    for p in [s for s in plan.endpoint if isinstance(s, UserlandProxy)]:
        from minibox.net import proxy

        if not proxy.binary():
            notes.say(f"warning: [::1]:{p.host_port} is not answered: docker-proxy, which carries ports to "
                      "IPv6 loopback, is not installed (apt install docker.io); every other address is")
            continue
        held = proxy.held_by(p, sockets)
        sockets = [s for s in sockets if s not in held]
        proxy.start(p, rec.id, held)
    if park:
        fifo = str(cdir / START_FIFO)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(fifo)
        os.mkfifo(fifo, 0o600)
    sp = launcher.launch(
        launcher.Launch(steps=plan.init, rootfs=plan.rootfs, unshare=plan.unshare.namespaces,
                        join=tuple((j.kind, j.path) for j in plan.join), cgroup_dirs=tuple(plan.cgroup_dirs),
                        execer=str(shimbin.ensure_execer()), terminal=spec.tty, lookup_at_create=False),
        launcher.Shim(path=shim, exit_file=str(cdir / "exit.json"), log_file=str(cdir / "container.log"),
                      attach=not spec.detach, interactive=spec.interactive, exit_command=exit_cmd,
                      hold_fds=[s.fileno() for s in sockets], log_max_size=spec.log_max_size,
                      log_max_files=spec.log_max_files, attach_socket=str(cdir / ATTACH_SOCKET),
                      detachable=detachable))
    _save(rec.id, pid=sp.pid, pid_start=procs.start_time(sp.pid), shim_pid=sp.shim_pid,
          shim_start=procs.start_time(sp.shim_pid))
    for s in sockets:
        s.close()  # the shim holds them now
    if rec.endpoint is not None:
        from minibox.net import endpoint

        link_steps = [s for s in plan.endpoint if not isinstance(s, (ConntrackFlush, DnsRecord, UserlandProxy))]
        try:
            endpoint.attach(rec, link_steps, [s for s in plan.endpoint if isinstance(s, ConntrackFlush)], sp.pid,
                            [s for s in plan.endpoint if isinstance(s, DnsRecord)])
        except Exception:
            ended = sp.early_end()  # PID 1 gone: the veth had no namespace to go to, and this is why
            if ended:
                raise MiniboxError(f"the container's process ended while its network was set up: {ended}") from None
            raise
    steps = plan.steps()
    if explain is not None:
        explain(steps, sp.pid, rec.id)
    from minibox.engine import events

    if park:
        sp.release()
        sp.wait()  # "created": its root is built, and it waits at WaitStart for `start`
        # No creator to watch any more: the shim holds PID 1, and refresh watches that.
        lifecycle.move(rec.id, CREATED, parked=True, creator_pid=0, creator_start=0)
        events.record(rec.id, "create")
        return sp, steps
    lifecycle.move(rec.id, CREATED)
    lifecycle.move(rec.id, RUNNING, started_at=time.time())
    if not again:
        events.record(rec.id, "create")
    events.record(rec.id, "start")
    sp.release()
    if rec.healthcheck:
        from minibox.engine import health

        health.spawn(rec.id)  # detached: it outlives this command, and ends with the container
    return sp, steps


def _write(step: WriteFile, again: bool) -> None:
    try:
        files.create_exclusive(Path(step.path), step.content)
    except FileExistsError:
        if again and not step.if_missing:  # its /etc files, written anew: the address may differ
            files.replace_file(Path(step.path), step.content)
        elif not step.if_missing:
            raise


def _save(cid: str, **changes) -> None:
    with store.container_lock(cid):
        store.save_state(cid, store.load_state(cid).replace(**changes))


def _undo(cid: str) -> None:
    """A run that failed or was interrupted goes away as `rm -f` would take it."""
    with contextlib.suppress(Exception):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the undo short
    try:
        try:
            rec = store.load_record(cid)
        except Exception:  # noqa: BLE001 - not written, or damaged: teardown finds things by id
            rec = None
        from minibox.engine import removal

        _, errors = removal.teardown(cid, rec, volumes=True)  # its anonymous volumes were made for it
    except Exception as e:  # noqa: BLE001 - the original failure is what the user must see
        errors = [str(e)]
    finally:
        with contextlib.suppress(Exception):
            signal.signal(signal.SIGINT, signal.default_int_handler)
    if errors:
        notes.say(f"warning: undoing the failed run of {cid[:12]}: {'; '.join(errors)} (`minibox gc` finishes it)")


def _reap(pid: int) -> int:
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return 0
    return os.waitstatus_to_exitcode(status)


def _raw_terminal():
    # imported here: only `run -it` needs the terminal module (~2 ms to import)
    from minibox.runtime import tty

    return tty.raw_mode(0)


def _wait_attached(record: ContainerRecord, sp) -> int | None:
    """Wait for an attached container, passing our signals on to it (Docker's sig-proxy);
    None if Ctrl-P Ctrl-Q detached us and it runs on."""
    def forward(signum, _frame):
        try:
            os.kill(sp.pid, signum)
        except ProcessLookupError:
            pass

    forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
    old = {s: signal.signal(s, forward) for s in forwarded}
    try:
        with _raw_terminal() if record.spec.tty and record.spec.interactive else contextlib.nullcontext():
            if sp.wait_detach_or_end():
                return None  # the shim has let our terminal go; the container runs on
            _reap(sp.shim_pid)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return finish(record.id).exit_code


def finish(cid: str) -> ContainerState:
    """After PID 1 exited: record it, give back what it held, and remove it if --rm. With a
    restart policy (`run --restart` in the foreground, as Docker allows), the policy goes on
    in the background, as the shim's exit command applies it to a detached container: this
    command returns the first exit's status."""
    state = lifecycle.refresh(cid)
    rec = store.load_record(cid)
    if rec.spec.remove:
        from minibox.engine import removal

        removal.remove(cid)
    elif rec.spec.restart not in ("", "no"):
        subprocess.Popen(exit_command(cid), start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return state


def exit_command(cid: str) -> list[str]:
    """What runs after PID 1 exits (engine.cleanup): records the exit, applies --rm or the
    restart policy. The shim runs it for a detached container; finish() for an attached
    one with a restart policy."""
    return [sys.executable, "-m", "minibox.engine.cleanup", cid]
