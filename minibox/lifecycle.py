"""Container lifecycle: run, stop, kill, rm, exec and the release of what a stopped container held.

Each verb is plan -> apply -> save. `run` plans (validation, name, address, ports, mounts,
cgroup), applies with an ExitStack that undoes every step if a later one fails, and saves
the record and state. State is refreshed before it is read: a container whose shim wrote
exit.json (or whose PID 1 vanished) is marked exited, and what it held (network, rules,
cgroup) is given back once, whoever notices first: the shim's exit command, `stop`, `rm`,
or any later `ps`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field

from minibox import config, store
from minibox.errors import CleanupErrors, Conflict, ExecFailed, InvalidSpec, MiniboxError, NotRunning
from minibox.model import (CREATED, EXITED, RUNNING, ContainerRecord, ContainerSpec, ContainerState)
from minibox.runtime import cgroups, procs

# Every command pays for what this module imports at load time, so what only `run` needs
# (mount plans, spawn, the container init, ~20 ms) is imported inside run().

NAMESPACES = ("pid", "mount", "net", "uts", "ipc")


@dataclass
class RunResult:
    record: ContainerRecord
    exit_code: int | None = None  # None for a detached container
    steps: list = field(default_factory=list)  # the Steps that were applied, for --explain


def require_root() -> None:
    if os.geteuid() != 0:
        raise MiniboxError("minibox needs root for this (namespaces, mounts, netfilter): run it with sudo")
    store.secure_root()


# --- run ------------------------------------------------------------------------------


def run(spec: ContainerSpec, explain=None) -> RunResult:
    """Create and start a container. `explain(steps, pid)`, if given, is called with every
    step applied, just before the container's command is allowed to start."""
    from minibox import images
    from minibox.plan import spec as specs
    from minibox.plan.mounts import RootfsLayout, plan_rootfs
    from minibox.plan.steps import PID, CgroupCreate, DropCapabilities, Exec, LinkUp, SetHostname, Unshare
    from minibox.runtime import caps, seccomp, shimbin, spawn
    from minibox.runtime.init import InitConfig

    require_root()
    image = images.get(spec.image)
    check_cmd(spec.cmd)
    cg_layout = cgroups.layout()
    keep = container_caps(cgroups.device_control(cg_layout))
    filter_step = seccomp.step_for(spec.seccomp, keep)
    mode = spec.network or "bridge"
    netinfo = None
    if mode not in ("none", "host"):
        from minibox.net import endpoint  # pyroute2 is only paid for by bridged containers

        netinfo = endpoint.resolve_network(mode, spec)
    shim = str(shimbin.ensure_shim())
    cid = os.urandom(32).hex()
    cdir = config.paths().container(cid)
    hostname = spec.hostname or cid[:12]
    with contextlib.ExitStack() as undo:
        store.make_container_dir(cid)
        undo.callback(shutil.rmtree, cdir, ignore_errors=True)
        name = spec.name or specs.generate_name(store.name_taken)
        store.reserve_name(name, cid)  # atomic: of parallel runs asking for one name, one wins
        undo.callback(store.release_name, name, cid)
        env = specs.container_env(spec.env, hostname, spec.tty)
        record = ContainerRecord(id=cid, name=name, created=time.time(), spec=spec,
                                 image_dir=str(image.rootfs), hostname=hostname, env=env, caps=keep)
        store.save_state(cid, ContainerState(status=CREATED))
        store.save_record(record)
        prepared = None
        if netinfo is not None:
            prepared = endpoint.prepare(record, netinfo)
            undo.push(lambda *exc: prepared.rollback())
            record = prepared.record
            store.save_record(record)
        _write_etc_files(record)
        layout = RootfsLayout.for_container(record.image_dir, str(cdir))
        for d in (layout.upper, layout.work, layout.merged):
            os.mkdir(d)

        limits = cgroups.Limits(memory=spec.memory, pids=spec.pids_limit)
        cg_steps = cgroups.plan_create(config.cgroup_parent(), cid, limits, cg_layout)
        cg_dirs = [s.path for s in cg_steps if isinstance(s, CgroupCreate)]
        undo.callback(cgroups.remove, cg_dirs)  # (steps, errors) ignored: rollback goes on
        cgroups.create(cg_steps)

        namespaces = tuple(n for n in NAMESPACES if not (n == "net" and mode == "host"))
        init_steps = plan_rootfs(layout) + [SetHostname(hostname, why="the UTS namespace's own hostname")]
        if mode != "host":
            init_steps.append(LinkUp("lo", netns=PID, why="a new network namespace starts with lo down"))
        init_steps.append(DropCapabilities(keep, why=caps_why(keep)))
        if filter_step is not None:
            init_steps.append(filter_step)
        init_steps.append(Exec(spec.cmd, env, spec.workdir, why="replace minibox with the command, all signals "
                                                                "reset to their defaults: it becomes the "
                                                                "container's PID 1"))
        init_cfg = InitConfig(steps=init_steps, tty=spec.tty)
        exit_cmd = [] if not spec.detach else [sys.executable, "-m", "minibox.cleanup", cid]
        hold = prepared.sockets if prepared else []
        sp = spawn.spawn(spawn.SpawnRequest(
            init=init_cfg, namespaces=namespaces, shim=shim, exit_file=str(cdir / "exit.json"),
            log_file=str(cdir / "container.log"), attach=not spec.detach,
            interactive=spec.interactive, exit_command=exit_cmd, hold_fds=[s.fileno() for s in hold]))
        undo.callback(_reap_shim, sp.shim_pid)
        undo.callback(sp.abort)
        if prepared:
            prepared.close_sockets()  # the shim holds them now

        steps: list = [Unshare(namespaces, why="new namespaces: the container's own PIDs, mounts, "
                                                      "network, hostname and IPC")]
        steps += cg_steps + cgroups.plan_join(cg_dirs, PID)
        cgroups.join(cg_dirs, sp.pid)
        if prepared:
            steps += prepared.attach(sp.pid)
        steps += init_steps
        if explain is not None:
            explain(steps, sp.pid, cid)
        state = ContainerState(status=RUNNING, pid=sp.pid, pid_start=procs.start_time(sp.pid),
                               shim_pid=sp.shim_pid, started_at=time.time())
        store.save_state(cid, state)
        sp.release()
        undo.pop_all()
    try:
        sp.wait_exec()
    except ExecFailed:
        if spec.detach:
            _wait_exit(cid, 5.0)  # the shim records the 126/127 and runs the cleanup
        else:
            _reap_shim(sp.shim_pid)
        _finish(cid)
        raise
    if spec.detach:
        return RunResult(record, None, steps)
    return RunResult(record, _wait_attached(record, sp), steps)


def _reap_shim(pid: int) -> int:
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return 0
    return os.waitstatus_to_exitcode(status)


def _wait_attached(record: ContainerRecord, sp) -> int:
    """Wait for an attached container, passing our signals on to it (Docker's sig-proxy)."""
    def forward(signum, _frame):
        try:
            os.kill(sp.pid, signum)
        except ProcessLookupError:
            pass

    forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
    old = {s: signal.signal(s, forward) for s in forwarded}
    try:
        from minibox.runtime import tty  # only attached containers need the terminal

        with tty.raw_mode(0) if record.spec.tty and record.spec.interactive else contextlib.nullcontext():
            _reap_shim(sp.shim_pid)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    state = _finish(record.id)
    return state.exit_code


def _finish(cid: str) -> ContainerState:
    """After PID 1 exited: record it, give back what it held, and remove it if --rm."""
    state = refresh(cid)
    rec = store.load_record(cid)
    if rec.spec.remove:
        remove_container(rec)
    return state


def _write_etc_files(rec: ContainerRecord) -> None:
    from minibox.plan import spec as specs

    cdir = config.paths().container(rec.id)
    ep = rec.endpoint
    peers = ()
    if ep is not None:
        from minibox.net import endpoint

        peers = endpoint.peers(rec)
    (cdir / "hostname").write_text(rec.hostname + "\n")
    (cdir / "hosts").write_text(specs.hosts_file(rec.hostname, ep.ip if ep else "", peers))
    try:
        host_resolv = open("/etc/resolv.conf").read()
    except OSError:
        host_resolv = ""
    (cdir / "resolv.conf").write_text(specs.resolv_conf(host_resolv))


# --- state --------------------------------------------------------------------------------


def refresh(cid: str, done: list | None = None) -> ContainerState:
    """Bring state.json up to date with the kernel, releasing resources of a stopped container."""
    state = store.load_state(cid)
    if state.status == RUNNING:
        exit_info = store.load_exit(cid)
        if exit_info is None and not procs.alive(state.pid, state.pid_start):
            # PID 1 is gone; its shim writes exit.json right after draining the logs.
            exit_info = _wait_exit(cid, 2.0, state.shim_pid) or {"exit_code": 255, "finished_at": None}
        if exit_info is not None:
            with store.container_lock(cid):
                state = store.load_state(cid)
                if state.status == RUNNING:
                    state = state.replace(status=EXITED, exit_code=exit_info["exit_code"],
                                          finished_at=_parse_ts(exit_info.get("finished_at")))
                    store.save_state(cid, state)
    if state.status == EXITED and not state.released:
        state = release(cid, done)
    return state


def _parse_ts(ts: str | None) -> float:
    if not ts:
        return time.time()
    from datetime import datetime

    return datetime.fromisoformat(ts[:26].rstrip("Z") + "+00:00").timestamp()


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
        store.save_state(cid, state)
        return state


def release_resources(rec: ContainerRecord) -> tuple[list, list[str]]:
    steps, errors = [], []
    if rec.endpoint is not None or rec.ports:
        from minibox.net import endpoint

        steps, errors = endpoint.release(rec)
    s, e = cgroups.remove(cgroups.existing_dirs(config.cgroup_parent(), rec.id))
    return steps + s, errors + e


def _wait_exit(cid: str, timeout: float, shim_pid: int = 0) -> dict | None:
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


# --- stop, kill, rm -----------------------------------------------------------------------


def stop(rec: ContainerRecord, timeout: int = config.STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds: a PID 1 without a SIGTERM handler
    (sh, sleep, busybox httpd) ignores SIGTERM, because the kernel protects init."""
    state = refresh(rec.id)
    if state.status != RUNNING:
        return
    _signal(state, signal.SIGTERM)
    if not _wait_exit(rec.id, timeout):
        _signal(state, signal.SIGKILL)
        _wait_exit(rec.id, 10)
    refresh(rec.id)


def kill(rec: ContainerRecord, sig: int) -> None:
    state = refresh(rec.id)
    if state.status != RUNNING:
        raise NotRunning(f"container {rec.name} is not running")
    _signal(state, sig)


def _signal(state: ContainerState, sig: int) -> None:
    if procs.alive(state.pid, state.pid_start):
        try:
            os.kill(state.pid, sig)
        except ProcessLookupError:
            pass


def remove(rec: ContainerRecord, force: bool = False) -> list:
    """Remove a container (killing it first with force); returns the steps that removal took,
    including the release of its resources, whoever carried that out."""
    from minibox.plan.steps import Kill

    steps: list = []
    state = refresh(rec.id)
    if state.status == RUNNING:
        if not force:
            raise Conflict(f"container {rec.name} is running: stop it first, or use `minibox rm -f {rec.name}`")
        steps.append(Kill(str(state.pid), why="rm -f: SIGKILL to PID 1; the kernel then kills every process "
                                               "of its PID namespace"))
        _signal(state, signal.SIGKILL)
        _wait_exit(rec.id, 10)
        state = refresh(rec.id)
    return steps + remove_container(rec)


def remove_container(rec: ContainerRecord, wait_for_shim: bool = True) -> list:
    """Delete a stopped container: release whatever is still held, then its directory.

    The shim may still be finishing (exit.json, the exit command); wait for it unless we
    are that exit command, which the shim itself is waiting for."""
    from minibox.plan.steps import RemovePath

    cdir = config.paths().container(rec.id)
    if not cdir.exists():
        return []
    state = store.load_state(rec.id)
    if not state.released:
        steps, errors = release_resources(rec)
        if errors:
            raise CleanupErrors(f"removing {rec.name}", errors)
        state = state.replace(released=True, release_log=log_of(steps))
    deadline = time.monotonic() + 5
    while wait_for_shim and procs.alive(state.shim_pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    with store.global_lock():
        shutil.rmtree(cdir, ignore_errors=True)
        store.release_name(rec.name, rec.id)
    return steps_of(state.release_log) + [RemovePath(str(cdir), "tree", why="its state, logs and upper layer: the "
                                                                          "image below is untouched")]


def log_of(steps: list) -> tuple:
    """Steps as (why, command) pairs: what release() keeps in the state for later explaining."""
    return tuple((s.why, s.command()) for s in steps)


def steps_of(log) -> list:
    from minibox.plan.steps import Logged

    return [Logged(cmd, why=why) for why, cmd in log]


# --- exec ----------------------------------------------------------------------------------


def exec_in(rec: ContainerRecord, argv: tuple[str, ...], env: tuple[str, ...], workdir: str,
            tty: bool, interactive: bool, explain=None) -> int:
    from minibox.plan.steps import DropCapabilities, Exec, Nsenter
    from minibox.runtime import caps, enter, seccomp

    state = refresh(rec.id)
    if state.status != RUNNING:
        raise NotRunning(f"container {rec.name} is not running: start a new one with `minibox run`")
    merged = dict(e.split("=", 1) for e in rec.env)
    for item in env:
        k, _, v = item.partition("=")
        merged[k] = v
    if tty:
        merged.setdefault("TERM", "xterm")
    namespaces = ("ipc", "uts", "pid", "mnt") if rec.spec.network == "host" else ("ipc", "uts", "net", "pid", "mnt")
    steps = [Nsenter(str(state.pid), namespaces, why="join the namespaces of the container's PID 1, and its root "
                                                     "(/proc/PID/ns/*, /proc/PID/root)")]
    keep = rec.caps or caps.DEFAULT_CAPS
    steps += cgroups.plan_join(cgroups.existing_dirs(config.cgroup_parent(), rec.id), "$$")
    steps.append(DropCapabilities(keep, why="the same privileges as the container's PID 1"))
    filter_step = seccomp.step_for(rec.spec.seccomp, keep)
    if filter_step is not None:
        steps.append(filter_step._replace(why="the same seccomp filter as the container's PID 1"))
    steps.append(Exec(argv, tuple(f"{k}={v}" for k, v in merged.items()), workdir or rec.spec.workdir,
                      why="a new process in the container: its PID there is the next free one, not 1"))
    if explain is not None:
        explain(steps, state.pid)
    return enter.enter(enter.EnterConfig.from_steps(steps, tty=tty, interactive=interactive))


def validate_exec_args(workdir: str) -> None:
    from minibox.plan import spec as specs

    if workdir:
        specs.validate_workdir(workdir)


def container_caps(device_control: str) -> tuple[str, ...]:
    """Docker's 14 capabilities; without a device cgroup, CAP_MKNOD goes too (said once)."""
    from minibox.runtime import caps

    if device_control:
        return caps.DEFAULT_CAPS
    marker = config.paths().root / "cache" / "warned-no-device-cgroup"
    if not marker.exists():
        print("minibox: note: no device cgroup here (neither the v1 devices controller nor cgroup v2): containers "
              "get no CAP_MKNOD, and their root is mounted nodev, so they cannot open host devices",
              file=sys.stderr)
        with contextlib.suppress(OSError):
            marker.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            marker.touch()
    return tuple(c for c in caps.DEFAULT_CAPS if c != "mknod")


def caps_why(keep: tuple[str, ...]) -> str:
    what = "Docker's 14 default capabilities" if len(keep) == 14 else f"{len(keep)} of Docker's capabilities"
    return f"keep {what}, nothing inheritable or ambient, and no_new_privs"


def check_cmd(cmd: tuple[str, ...]) -> None:
    if not cmd:
        raise InvalidSpec("no command given: the busybox image has no default command; e.g. `minibox run busybox sh`")
