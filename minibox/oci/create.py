"""`minibox-oci create`: a bundle's config.json checked and planned (plan.oci), then started by the one launcher.

runtime.launcher forks C1 and PID 1 as for `run`, but C1 exits instead of becoming a shim,
so PID 1, its parent gone, is reparented to the engine's subreaper (containerd-shim,
conmon), as runc's init is; and PID 1 inherits this process's stdin/stdout/stderr, which
are the engine's pipes or files. `create` returns once PID 1 says "created" (its WaitStart
step). Any failure before that kills what was started, removes the cgroup and the state,
and is reported here.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from minibox import config, files, linux
from minibox.errors import InvalidSpec, MiniboxError
from minibox.oci import state as ocistate
from minibox.plan import oci as ociplan
from minibox.plan.steps import LoadSeccomp, RunHook

NS_FLAGS = {"pid": linux.CLONE_NEWPID, "net": linux.CLONE_NEWNET, "mount": linux.CLONE_NEWNS,
            "ipc": linux.CLONE_NEWIPC, "uts": linux.CLONE_NEWUTS, "user": 0x10000000,
            "cgroup": linux.CLONE_NEWCGROUP, "time": 0x00000080}
NSFS_MAGIC = 0x6E736673
NS_GET_NSTYPE = 0xB703


def read_config(bundle: str) -> dict:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise InvalidSpec(f"no config.json in the bundle {bundle}") from None
    except ValueError as e:
        raise InvalidSpec(f"{path} is not valid JSON: {e}") from None


def seccomp_step(doc: dict) -> LoadSeccomp | None:
    profile = (doc.get("linux") or {}).get("seccomp")
    if not profile:
        return None
    from minibox.plan import seccomp as policy
    from minibox.runtime import seccomp

    p = policy.plan(profile, "config.json linux.seccomp", (), tighten=False)
    nnp = bool((doc.get("process") or {}).get("noNewPrivileges"))
    return LoadSeccomp(p.source, len(p.rules), seccomp.compile_bpf(p),
                       why=("late" if nnp else "early") + ": linux.seccomp, " + str(len(p.rules)) + " rules")


def prepare(root: str, cid: str, bundle: str) -> tuple[ocistate.Container, dict, ociplan.Plan]:
    """Read and plan, changing nothing: what `create` and `create --explain` share."""
    c = ocistate.Container(root, cid)
    bundle = os.path.abspath(bundle or ".")
    doc = read_config(bundle)
    ociplan.check_version(doc)
    if c.exists():
        raise MiniboxError(f"container with id {cid} already exists")
    linux_cfg = doc.get("linux") or {}
    dirs, v2 = ocistate.cgroup_dirs(linux_cfg.get("cgroupsPath") or "", cid, config.cgroup_parent())
    facts = ociplan.Facts(id=cid, bundle=bundle, state_dir=c.dir, cgroup_dirs=tuple(dirs), cgroup_v2=v2,
                          seccomp=seccomp_step(doc))
    p = ociplan.plan(doc, facts)
    for j in p.join:
        check_namespace(j.kind, j.path)
    check_capabilities(p.init)
    return c, doc, p


def check_capabilities(steps) -> None:
    """A capability this runtime does not hold itself cannot be granted: refuse it at create,
    by name, rather than fail in PID 1 after "created" (this VM's own bounding set lacks
    CAP_SYS_RESOURCE, for one)."""
    from minibox.plan.procsteps import CAP_NUMBERS, SetCapabilities
    from minibox.runtime.caps import last_cap

    _, held, _ = linux.capget()
    top = last_cap()
    for s in steps:
        if isinstance(s, SetCapabilities) and s.ignored:
            from minibox.oci.ops import log_warning

            log_warning("ignoring unknown or unavailable capabilities: " + " ".join(s.ignored))  # runc's words
        if isinstance(s, SetCapabilities):
            wanted = set(s.bounding) | set(s.effective) | set(s.permitted) | set(s.inheritable) | set(s.ambient)
            missing = sorted(n for n in wanted if CAP_NUMBERS[n] <= top and not held & (1 << CAP_NUMBERS[n]))
            if missing:
                raise InvalidSpec("process.capabilities: " + ", ".join("CAP_" + n.upper() for n in missing)
                                  + " cannot be granted: this runtime does not hold it (its own bounding set)")


def check_namespace(kind: str, path: str) -> None:
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise InvalidSpec(f"linux.namespaces: {kind} path {path}: {e.strerror}") from None
    try:
        if linux.statfs_type(f"/proc/self/fd/{fd}") != NSFS_MAGIC:
            raise InvalidSpec(f"linux.namespaces: {path} is not a namespace (nsfs) file")
        got = fcntl.ioctl(fd, NS_GET_NSTYPE)
        if got != NS_FLAGS[ociplan.NAMESPACES[kind]]:
            raise InvalidSpec(f"linux.namespaces: {path} is not a {kind} namespace")
    finally:
        os.close(fd)


def create(root: str, cid: str, bundle: str, pid_file: str = "", console_socket: str = "",
           preserve_fds: int = 0) -> int:
    c, doc, p = prepare(root, cid, bundle)
    if p.terminal and not console_socket:
        raise InvalidSpec("process.terminal is true, but no --console-socket was given to hand the terminal to")
    st = {"id": cid, "ociVersion": doc["ociVersion"], "bundle": p.bundle, "rootfs": p.rootfs, "pid": 0,
          "created": ocistate.now_rfc3339(), "annotations": doc.get("annotations") or {},
          "cgroup_dirs": [s.path for s in p.cgroups if type(s).__name__ == "CgroupCreate"],
          "hooks": {k: [h._asdict() for h in v] for k, v in p.hooks.items()}}
    c.make()
    os.mkfifo(c.fifo, 0o600)
    if p.idmap is not None:
        # PID 1 opens it as the container's root, which a user namespace maps to another uid.
        os.chown(c.fifo, host_id(p.idmap.uid_map, 0), host_id(p.idmap.gid_map, 0))
    c.save(st)
    launched: list[int] = []
    try:
        pid = launch(c, st, p, console_socket, preserve_fds, launched)
    except BaseException:
        undo(c, st, launched)
        raise
    if pid_file:
        files.replace_file(Path(pid_file), str(pid))
    return pid


def undo(c: ocistate.Container, st: dict, launched: list[int]) -> None:
    import signal

    from minibox.runtime import cgroups

    for pid in launched:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in launched:
        try:
            os.waitpid(pid, 0)  # C1 is ours; PID 1, reparented, is not, and is gone with SIGKILL
        except ChildProcessError:
            pass
    cgroups.remove(list(st.get("cgroup_dirs") or ()), config.cgroup_parent())
    c.remove()


def launch(c: ocistate.Container, st: dict, p: ociplan.Plan, console_socket: str, preserve_fds: int,
           launched: list[int]) -> int:
    # Everything the children run is imported now: in a user namespace they may no longer
    # read the interpreter's own files (a Python under /root, 0700, as uid 1000).
    from minibox.runtime import cgroups, launcher, procs, shimbin

    cgroups.create(list(p.cgroups))
    req = launcher.Launch(
        steps=p.init, rootfs=p.rootfs, unshare=p.unshare.namespaces, join=tuple((j.kind, j.path) for j in p.join),
        idmap=p.idmap, cgroup_dirs=tuple(st["cgroup_dirs"]), execer=str(shimbin.ensure_execer()),
        terminal=p.terminal, console=connect_console(console_socket) if p.terminal else -1,
        console_size=p.console_size, session=p.terminal, preserve_fds=preserve_fds,
        hook_state={k: st[k] for k in ("ociVersion", "id", "bundle", "annotations")},
        runtime_hooks=any(p.hooks.get(k) for k in ("prestart", "createRuntime")))
    h = launcher.launch(req)
    launched.append(h.pid)
    st.update(pid=h.pid, pid_start=procs.start_time(h.pid))
    c.save(st)
    h.release()

    def runtime_hooks() -> None:
        for kind in ("prestart", "createRuntime"):
            for hook in p.hooks.get(kind, ()):
                run_hook(hook, c.public(st) | {"status": "creating"})

    if not h.wait(runtime_hooks):
        raise MiniboxError("container init: it ran its command without waiting for start")
    return h.pid


def connect_console(path: str) -> int:
    """The engine's --console-socket, connected: the terminal's master goes over it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise MiniboxError(f"--console-socket {path}: {e.strerror}") from None
    return sock.detach()


def host_id(mapping, cid: int) -> int:
    """The host id that container id `cid` maps to (-1 for none: chown leaves it)."""
    for inside, outside, size in mapping or ():
        if inside <= cid < inside + size:
            return outside + cid - inside
    return -1


def run_hook(h: RunHook, state: dict) -> None:
    from minibox.runtime import command, hooks

    try:
        hooks.run_hook(h, state)
    except command.InitError as e:
        raise MiniboxError(str(e)) from None
