"""`minibox exec`: the steps that join a running container (its namespaces, cgroup, privileges, user), carried out by runtime.enter."""

from __future__ import annotations

import os

from minibox import config
from minibox.errors import NotRunning
from minibox.model import ContainerRecord, ContainerState
from minibox.runtime import cgroups


def exec_in(rec: ContainerRecord, state: ContainerState, argv: tuple[str, ...], env: tuple[str, ...],
            workdir: str, tty: bool, interactive: bool, explain=None, user: str = "") -> int:
    from minibox.plan import ociresources
    from minibox.plan.steps import DropCapabilities, Exec, Nsenter, SetUser
    from minibox.runtime import caps, enter, seccomp, shimbin

    who = exec_user(rec, state, user)
    merged = dict(e.split("=", 1) for e in rec.env)
    if user:
        merged["HOME"] = who.get("home", "/")
    for item in env:
        k, _, v = item.partition("=")
        merged[k] = v
    if tty:
        merged.setdefault("TERM", "xterm")
    namespaces = ("ipc", "uts", "pid", "mnt") if rec.spec.network == "host" else ("ipc", "uts", "net", "pid", "mnt")
    steps = [Nsenter(str(state.pid), namespaces, why="join the namespaces of the container's PID 1, and its root "
                                                     "(/proc/PID/ns/*, /proc/PID/root)")]
    keep = rec.caps or caps.DEFAULT_CAPS
    steps += ociresources.plan_join(cgroups.existing_dirs(config.cgroup_parent(), rec.id), "$$")
    steps.append(DropCapabilities(keep, why="the same privileges as the container's PID 1"))
    if who:  # (a container from before users were recorded keeps minibox's groups, as it did)
        steps.append(SetUser(who["uid"], who["gid"], tuple(who.get("groups") or ()),
                             why="the container's user (or -u), with its groups: no capabilities unless uid 0"))
    filter_step = seccomp.step_for(rec.spec.seccomp, keep)
    if filter_step is not None:
        steps.append(filter_step._replace(why="the same seccomp filter as the container's PID 1"))
    steps.append(Exec(argv, tuple(f"{k}={v}" for k, v in merged.items()), workdir or rec.workdir,
                      why="a new process in the container: its PID there is the next free one, not 1"))
    if explain is not None:
        explain(steps, state.pid)
    try:
        return enter.enter(enter.EnterConfig.from_steps(steps, tty=tty, interactive=interactive,
                                                        execer=str(shimbin.ensure_execer())))
    except enter.Stopped:
        raise NotRunning(f"container {rec.name} stopped while exec was starting") from None


def exec_user(rec: ContainerRecord, state: ContainerState, user: str) -> dict:
    """`exec -u`, resolved against the container's own /etc/passwd and /etc/group (read
    inside its root, as it is now); without -u, the container's user."""
    if not user:
        return rec.user or {}
    from minibox.plan import users
    from minibox.runtime import inroot

    users.validate(user)
    texts = []
    root = inroot.Root(f"/proc/{state.pid}/root")
    try:
        for name in ("etc/passwd", "etc/group"):
            try:
                fd = root.open(name, os.O_RDONLY)
            except OSError:
                texts.append("")
                continue
            with os.fdopen(fd) as f:
                texts.append(f.read(1 << 20))
    finally:
        root.close()
    return users.resolve(user, (), texts[0], texts[1])._asdict()


def validate_exec_args(workdir: str) -> None:
    from minibox.plan import spec as specs

    if workdir:
        specs.validate_workdir(workdir)
