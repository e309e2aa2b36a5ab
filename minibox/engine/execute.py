"""`minibox exec`: the process the container's own spec describes (containers/ID/spec.json, as PID 1 got it), with exec's arguments, environment, directory and user, through the one exec path (runtime.enter).

Nothing is derived again: the capabilities, the no_new_privs and the seccomp program are
what `run` gave PID 1 (the program as compiled then, containers/ID/seccomp.bpf). A
container from before minibox kept its spec has its process planned from its record, as
`run` planned it.
"""

from __future__ import annotations

import contextlib
import json
import os

from minibox import config
from minibox.errors import Conflict, NotRunning
from minibox.model import ContainerRecord, ContainerState

SPEC_FILE = "spec.json"  # the container's runtime spec, as planned by `run` (plan.run)
SECCOMP_FILE = "seccomp.bpf"  # its seccomp filter, as compiled for PID 1


def save_spec(cid: str, spec: dict, seccomp) -> None:
    """What exec reads back, written by `run` (and `start`) before PID 1 exists: the spec,
    and the seccomp filter (a LoadSeccomp; None: unconfined) as compiled for PID 1."""
    from minibox import files

    cdir = config.paths().container(cid)
    if seccomp is not None:
        spec = {**spec, "annotations": {**(spec.get("annotations") or {}), "minibox/seccomp": seccomp.source,
                                        "minibox/seccomp.rules": str(seccomp.rules)}}
        files.replace_file(cdir / SECCOMP_FILE, seccomp.program)
    else:
        (cdir / SECCOMP_FILE).unlink(missing_ok=True)
    files.write_json(cdir / SPEC_FILE, spec)


def container_spec(rec: ContainerRecord) -> tuple[dict, bytes]:
    """The runtime spec PID 1 was planned from, and its seccomp program."""
    cdir = config.paths().container(rec.id)
    try:
        spec = json.loads((cdir / SPEC_FILE).read_text())
    except (OSError, ValueError):
        from minibox.plan.mounts import RootfsLayout
        from minibox.plan.runspec import runtime_spec

        spec = runtime_spec(rec.spec, rec, RootfsLayout.for_container(rec.image_layers, str(cdir)),
                            str(config.paths().volumes), cgroups=True)
    try:
        program = (cdir / SECCOMP_FILE).read_bytes()
    except OSError:
        program = b""
    return spec, program


def exec_in(rec: ContainerRecord, state: ContainerState, argv: tuple[str, ...], env: tuple[str, ...],
            workdir: str, tty: bool, interactive: bool, explain=None, user: str = "", detach: bool = False,
            privileged: bool = False, on_pid=None, output_limit: int = 0) -> int:
    """Run `argv` in the container; its exit status, or (`detach`) 0 once it runs, its
    output discarded. `privileged`: every capability this runtime holds (Docker's exec
    --privileged), its seccomp filter and no_new_privs unchanged. `on_pid(pid)`: told the
    process's host PID once it runs (the health monitor's timeout kills it). `output_limit`:
    at most that many bytes of its output are passed on (the rest is read and dropped)."""
    from minibox.plan import oci as ociplan
    from minibox.plan import ociresources
    from minibox.plan.steps import LoadSeccomp, Nsenter
    from minibox.runtime import cgroups, enter, shimbin

    if cgroups.frozen(cgroups.existing_dirs(config.cgroup_parent(), rec.id)):
        raise Conflict(f"container {rec.name} is paused: `minibox unpause {rec.name}` first")  # as Docker's
    spec, program = container_spec(rec)
    process = dict(spec["process"])
    merged = dict(e.split("=", 1) for e in process.get("env") or () if "=" in e)
    if user:
        who = exec_user(rec, state, user)
        merged["HOME"] = who.get("home", "/")
        process["user"] = {"uid": who["uid"], "gid": who["gid"], "additionalGids": list(who.get("groups") or ())}
    for item in env:
        k, _, v = item.partition("=")
        merged[k] = v
    if tty:
        merged.setdefault("TERM", "xterm")
    process.update(args=list(argv), env=[f"{k}={v}" for k, v in merged.items()], cwd=workdir or process["cwd"],
                   terminal=tty)
    if privileged:
        from minibox.engine.facts import granted_caps

        held = ["CAP_" + c.upper() for c in granted_caps(rec.spec._replace(privileged=True), ())]
        process["capabilities"] = {"bounding": held, "effective": held, "permitted": held, "inheritable": [],
                                   "ambient": []}
    notes = spec.get("annotations") or {}
    seccomp = LoadSeccomp(notes.get("minibox/seccomp", "the container's own"),
                          int(notes.get("minibox/seccomp.rules", "0")), program,
                          why="the same seccomp filter as the container's PID 1") if program else None
    steps = ociplan.plan_process(process, spec.get("linux") or {},
                                 ociplan.seccomp_timing(seccomp, bool(process.get("noNewPrivileges"))))
    steps[-1] = steps[-1]._replace(why="a new process in the container: its PID there is the next free one, not 1")
    dirs = cgroups.existing_dirs(config.cgroup_parent(), rec.id)
    try:
        joined = enter.namespaces(state.pid)
    except enter.Stopped:
        raise NotRunning(f"container {rec.name} stopped while exec was starting") from None
    if explain is not None:
        explain([Nsenter(str(state.pid), tuple(joined), why="join the namespaces of the container's PID 1, and "
                                                            "its root (/proc/PID/ns/*, /proc/PID/root)"),
                 *ociresources.plan_join(dirs, "$$"), *steps], state.pid)
    cfg = enter.EnterConfig(pid=state.pid, cgroup_dirs=tuple(dirs), steps=tuple(steps),
                            execer=str(shimbin.ensure_execer()),
                            stdio="inherit" if detach else "pty" if tty else "pipes", interactive=interactive,
                            detach=detach, output_limit=output_limit)
    try:
        if not detach:
            return enter.enter(cfg, on_pid)
        with _quiet_stdio():  # the command inherits /dev/null; ours come back for any error
            return enter.enter(cfg)
    except enter.Stopped:
        raise NotRunning(f"container {rec.name} stopped while exec was starting") from None


@contextlib.contextmanager
def _quiet_stdio():
    """fds 0-2 on /dev/null for the block (what `exec -d`'s command inherits), then back."""
    saved = [os.dup(fd) for fd in (0, 1, 2)]
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        yield
    finally:
        for fd, old in zip((0, 1, 2), saved):
            os.dup2(old, fd)
            os.close(old)
        os.close(null)


def exec_user(rec: ContainerRecord, state: ContainerState, user: str) -> dict:
    """`exec -u`, resolved against the container's own /etc/passwd and /etc/group (read
    inside its root, as it is now)."""
    from minibox.plan import users
    from minibox.fs import inroot

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
