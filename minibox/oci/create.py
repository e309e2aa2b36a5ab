"""`minibox-oci create`: a bundle's config.json planned (plan.oci), then carried out by three processes.

    minibox-oci create (P0)
      └─ fork ──> C1: setns into the namespaces config.json names by path, unshare the user
                  │   namespace (P0 writes its id maps), then the rest (PID included: it
                  │   applies to C1's children), fork, report the child's PID, exit
                  └─ fork ──> PID 1 (runtime.applier): waits for "go" while P0 puts it in its
                              cgroup, builds the root, runs the hooks, says "created", then
                              blocks on exec.fifo until `start`

C1 exists so that PID 1's PID namespace belongs to its user namespace (unshare(CLONE_NEWUSER)
in P0 would cost P0 its rights on the host), and so that PID 1, its parent gone, is
reparented to the engine's subreaper (containerd-shim, conmon), as runc's init is. P0
returns once PID 1 says "created"; PID 1 inherits P0's stdin/stdout/stderr, which are
the engine's pipes or files. Any failure before that kills what was started, removes
the cgroup and the state, and is reported by P0.
"""

from __future__ import annotations

import json
import os
import socket
import sys

from minibox import config, linux
from minibox.errors import InvalidSpec, MiniboxError
from minibox.oci import state as ocistate
from minibox.plan import oci as ociplan
from minibox.plan.steps import Exec, LoadSeccomp, PivotRoot, RunHook, WaitStart

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
        tmp = f"{pid_file}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.replace(tmp, pid_file)
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
    from minibox.runtime import cgroups, ociinit, procs, sealed, shimbin  # noqa: F401 - ociinit: see below

    # Everything the children run is imported now: in a user namespace they may no longer
    # read the interpreter's own files (a Python under /root, 0700, as uid 1000).
    ours, theirs = socket.socketpair()
    console = connect_console(console_socket) if p.terminal else -1
    ns_fds = [(j.kind, os.open(j.path, os.O_RDONLY | os.O_CLOEXEC)) for j in p.join]
    # Before any namespace is joined: non-dumpable (this process and its children), and
    # the sealed program PID 1's command is exec'd through (runtime.sealed).
    exec_fd = sealed.prepare(str(shimbin.ensure_execer()))
    c1 = os.fork()
    if c1 == 0:
        ours.close()
        _c1(p, ns_fds, theirs, console, c.fifo, preserve_fds, st, exec_fd)  # never returns
    os.close(exec_fd)
    theirs.close()
    for _, fd in ns_fds:
        os.close(fd)
    if console >= 0:
        os.close(console)
    launched.append(c1)
    talk = _Talk(ours)
    pid1 = 0
    while not pid1:
        msg = talk.hear()
        if msg == "idmap":
            write_id_maps(c1, p.idmap)
            talk.say("mapped")
        elif msg.startswith("pid "):
            pid1 = int(msg.split()[1])
            launched.append(pid1)
        else:
            _failed(msg)
    os.waitpid(c1, 0)
    cgroups.create(list(p.cgroups))
    cgroups.join(list(st["cgroup_dirs"]), pid1)
    st.update(pid=pid1, pid_start=procs.start_time(pid1))
    c.save(st)
    talk.say(f"go {pid1}")
    while True:
        msg = talk.hear()
        if msg == "runtime-hooks":
            try:
                for kind in ("prestart", "createRuntime"):
                    for h in p.hooks.get(kind, ()):
                        run_hook(h, c.public(st) | {"status": "creating"})
            except MiniboxError as e:
                talk.say(f"fail {e}")
                raise
            talk.say("ok")
        elif msg == "created":
            return pid1
        else:
            _failed(msg)


def connect_console(path: str) -> int:
    """The engine's --console-socket, connected: the terminal's master goes over it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise MiniboxError(f"--console-socket {path}: {e.strerror}") from None
    return sock.detach()


def _failed(msg: str) -> None:
    if msg.startswith("error "):
        code, _, text = msg[6:].partition(" ")
        err = MiniboxError(text)
        err.code = int(code) if code.isdigit() else 1
        raise err
    raise MiniboxError(f"container init: {msg or 'exited before saying anything'}")


class _Talk:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def say(self, msg: str) -> None:
        self.sock.sendall(msg.encode() + b"\n")

    def hear(self) -> str:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                return ""
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()


def host_id(mapping, cid: int) -> int:
    """The host id that container id `cid` maps to (-1 for none: chown leaves it)."""
    for inside, outside, size in mapping or ():
        if inside <= cid < inside + size:
            return outside + cid - inside
    return -1


def write_id_maps(pid: int, idmap) -> None:
    if idmap is None:
        return
    for name, entries in (("uid_map", idmap.uid_map), ("gid_map", idmap.gid_map)):
        if entries:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write("".join(f"{a} {b} {n}\n" for a, b, n in entries))


def run_hook(h: RunHook, state: dict) -> None:
    from minibox.runtime import ociinit

    try:
        ociinit.run_hook(h, state)
    except ociinit.InitError as e:
        raise MiniboxError(str(e)) from None


def _c1(p: ociplan.Plan, ns_fds, sock: socket.socket, console: int, fifo: str, preserve_fds: int,
        st: dict, exec_fd: int) -> None:
    """The intermediate process: namespaces, then PID 1."""
    talk = _Talk(sock)
    try:
        for kind, fd in sorted(ns_fds, key=lambda x: x[0] != "user"):
            linux.setns(fd, NS_FLAGS[ociplan.NAMESPACES[kind]])
            os.close(fd)
        new = set(p.unshare.namespaces)
        if "user" in new:
            try:
                linux.unshare(NS_FLAGS["user"])
            except PermissionError:
                raise MiniboxError("cannot create a user namespace here: the kernel refuses one to a process "
                                   "in a chroot (or user namespaces are disabled)") from None
            talk.say("idmap")
            if talk.hear() != "mapped":
                os._exit(1)
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        flags = 0
        for n in new - {"user"}:
            flags |= NS_FLAGS[n]
        linux.unshare(flags)
        pid1 = os.fork()
        if pid1 == 0:
            _pid1(p, sock, console, fifo, preserve_fds, st, exec_fd)  # never returns
        talk.say(f"pid {pid1}")
        os._exit(0)
    except BaseException as e:  # noqa: BLE001 - nothing may escape a forked child
        try:
            talk.say(f"error 1 create: {getattr(e, 'strerror', None) or e}")
        finally:
            os._exit(1)


def _pid1(p: ociplan.Plan, sock: socket.socket, console: int, fifo: str, preserve_fds: int, st: dict,
          exec_fd: int) -> None:
    from minibox.runtime import command, ociinit
    from minibox.runtime.applier import Applier

    sync = ociinit.Sync(sock.detach())
    applier = None
    try:
        go = sync.hear()
        if not go.startswith("go "):
            os._exit(1)
        state = {"ociVersion": st["ociVersion"], "id": st["id"], "pid": int(go.split()[1]), "bundle": st["bundle"],
                 "annotations": st["annotations"]}
        # a failed execve: after "created", the command's stderr is all there is (as _pid1_failed)
        applier = Applier(p.rootfs, exec_fd, "l2", sync, state, console, p.console_size)
        applier.open_fifo(fifo)
        runtime_hooks = any(p.hooks.get(k) for k in ("prestart", "createRuntime"))
        for step in p.init:
            if runtime_hooks and (isinstance(step, PivotRoot) or
                                  (isinstance(step, RunHook) and step.kind == "createContainer")):
                sync.say("runtime-hooks")
                if sync.hear() != "ok":
                    os._exit(1)
                runtime_hooks = False
            if isinstance(step, WaitStart):
                # As runc: the command is looked up now, so a missing one fails create, not start.
                ex = next(s for s in p.init if isinstance(s, Exec))
                os.chdir(ex.workdir)
                command.resolve_command(ex.argv[0], ex.env)
            if isinstance(step, WaitStart) and console >= 0:
                ociinit.setup_terminal(console, p.console_size)  # during create, as runc: the engine holds the pty before start
            if isinstance(step, Exec):
                for fd in range(3, 3 + preserve_fds):
                    try:
                        os.set_inheritable(fd, True)
                    except OSError:
                        pass
            try:
                applier.apply(step)
            except OSError as e:
                raise command.InitError(1, f"{step.why or type(step).__name__}: {command.describe(e)}") from None
    except command.InitError as e:
        _pid1_failed(sync, bool(applier and applier.created_said), e.code, str(e))
    except OSError as e:
        _pid1_failed(sync, bool(applier and applier.created_said), 1, command.describe(e))
    except BaseException as e:  # noqa: BLE001
        _pid1_failed(sync, bool(applier and applier.created_said), 1, f"container init: {e!r}")


def _pid1_failed(sync, created: bool, code: int, text: str) -> None:
    """Before "created", `create` reports it; after, the command's own stderr is all there is."""
    try:
        if not created:
            sync.say(f"error {code} {text}")
        else:
            sys.stderr.write(f"minibox-oci: {text}\n")
            sys.stderr.flush()
    finally:
        os._exit(code if code else 1)
