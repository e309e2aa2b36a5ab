"""`minibox-oci exec`: another process in a running container, from a process.json (as conmon and containerd-shim pass it) or from arguments.

    minibox-oci exec (E0, a child subreaper) ── fork ──> E1: join the cgroups, setns into PID
      1's namespaces (user first, mount last), chroot to its root, fork ──> the process:
      the steps plan.oci.plan_process makes of `process` (rlimits, user, capabilities,
      seccomp), then execve

E1 reports the process's PID and exits; the process, orphaned, is reparented to E0, which
waits for it and exits with its status (or, with --detach, writes --pid-file and leaves it
to the engine's subreaper). The process's stdio is E0's, as the engine gave it; with
--tty its terminal is a pty of the container's devpts, sent over --console-socket.
"""

from __future__ import annotations

import json
import os

import prctl

from minibox import linux
from minibox.errors import Conflict, InvalidSpec, MiniboxError
from minibox.oci import state as ocistate
from minibox.oci.create import NS_FLAGS, connect_console, read_config, seccomp_step
from minibox.plan import oci as ociplan

NS_ORDER = ("user", "ipc", "uts", "net", "pid", "cgroup", "mnt")  # mnt last: /proc/PID is read before it


def process_spec(doc: dict, process_file: str, command: list[str], tty: bool, cwd: str, env: list[str],
                 user: str) -> dict:
    """The process to run: process.json as given, or the container's own process with the
    arguments, environment, directory and user replaced, as runc builds it."""
    if process_file:
        try:
            with open(process_file) as f:
                proc = json.load(f)
        except (OSError, ValueError) as e:
            raise InvalidSpec(f"--process {process_file}: {getattr(e, 'strerror', None) or e}") from None
        if not isinstance(proc, dict) or not proc.get("args"):
            raise InvalidSpec(f"--process {process_file}: no args to run")
        return proc
    if not command:
        raise InvalidSpec("exec needs a command, or --process FILE")
    proc = dict(doc.get("process") or {})
    proc.update(args=command, terminal=tty)
    if cwd:
        proc["cwd"] = cwd
    if env:
        proc["env"] = list(proc.get("env") or ()) + env
    if user:
        uid, _, gid = user.partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            raise InvalidSpec(f'--user "{user}": use UID[:GID] (numbers)')
        proc["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    return proc


def exec_process(root: str, cid: str, process_file: str, command: list[str], *, detach: bool = False,
                 pid_file: str = "", console_socket: str = "", tty: bool = False, cwd: str = "",
                 env: list[str] | None = None, user: str = "", preserve_fds: int = 0) -> int:
    c = ocistate.Container(root, cid)
    st = c.load()
    status = c.status(st)
    if status != "running":
        raise Conflict(f"cannot exec in container {cid}: it is {status}, not running")
    doc = read_config(st["bundle"])
    proc = process_spec(doc, process_file, command, tty, cwd, env or [], user)
    if not str(proc.get("cwd", "/")).startswith("/"):
        raise InvalidSpec(f'process.cwd "{proc.get("cwd")}" must be absolute')
    if proc.get("terminal") and not console_socket:
        raise InvalidSpec("a terminal was asked for, but no --console-socket was given to hand it to")
    steps = ociplan.plan_process(proc, doc.get("linux") or {}, seccomp_step({**doc, "process": proc}))
    size = proc.get("consoleSize") or {}
    console = connect_console(console_socket) if proc.get("terminal") else -1
    from minibox.runtime import applier, ociinit, sealed, shimbin  # noqa: F401 - imported before entering a user namespace

    pid1 = st["pid"]
    ns_fds = []
    for ns in NS_ORDER:
        if os.path.exists(f"/proc/{pid1}/ns/{ns}") and os.stat(f"/proc/{pid1}/ns/{ns}").st_ino != \
                os.stat(f"/proc/self/ns/{ns}").st_ino:
            ns_fds.append((ns, os.open(f"/proc/{pid1}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)))
    rootfd = os.open(f"/proc/{pid1}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    prctl.set_child_subreaper(True)  # the process, orphaned by E1, comes back to us
    exec_fd = sealed.prepare(str(shimbin.ensure_execer()))  # before joining (runtime.sealed)
    r, w = os.pipe()
    e1 = os.fork()
    if e1 == 0:
        os.close(r)
        _e1(st, ns_fds, rootfd, w, steps, console, (int(size.get("height", 0)), int(size.get("width", 0))),
            preserve_fds, exec_fd)
    os.close(exec_fd)
    os.close(w)
    for _, fd in ns_fds:
        os.close(fd)
    os.close(rootfd)
    if console >= 0:
        os.close(console)
    msg = b""
    while chunk := os.read(r, 4096):
        msg += chunk
    os.close(r)
    os.waitpid(e1, 0)
    text = msg.decode()
    if not text.startswith("pid "):
        raise MiniboxError(text.removeprefix("error ").strip() or "exec: the helper died before starting the process")
    pid = int(text.split()[1])
    if pid_file:
        tmp = f"{pid_file}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.replace(tmp, pid_file)
    if detach:
        return 0
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _e1(st: dict, ns_fds, rootfd: int, w: int, steps, console: int, size, preserve_fds: int, exec_fd: int) -> None:
    from minibox.runtime import cgroups, command, ociinit
    from minibox.runtime.applier import Applier

    try:
        cgroups.join(list(st.get("cgroup_dirs") or ()), 0)
        for ns, fd in ns_fds:
            linux.setns(fd, NS_FLAGS["mount" if ns == "mnt" else ns])
            os.close(fd)
        os.fchdir(rootfd)
        os.chroot(".")
        os.close(rootfd)
        r2, w2 = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r2)
            os.set_inheritable(w2, False)
            try:
                applier = Applier("/", exec_fd, f"f{w2}")
                applier.pivoted = True
                if console >= 0:
                    ociinit.setup_terminal(console, size, console_node=False)
                else:
                    os.setsid()  # never the engine's terminal session
                for fd in range(3, 3 + preserve_fds):
                    os.set_inheritable(fd, True)
                for step in steps:
                    applier.apply(step)
            except (command.InitError, OSError, MiniboxError) as e:
                os.write(w2, f"error {getattr(e, 'strerror', None) or e}".encode())
            os._exit(127)
        os.close(w2)
        failed = os.read(r2, 4096)  # EOF: the execve closed its O_CLOEXEC end
        if failed[:1].isdigit():  # minibox-exec's "CODE message": its execve failed
            failed = b"error " + failed.partition(b" ")[2]
        if failed:
            os.waitpid(pid, 0)
            os.write(w, failed)
        else:
            os.write(w, f"pid {pid}".encode())
        os._exit(0)
    except BaseException as e:  # noqa: BLE001 - nothing may escape a forked child
        try:
            os.write(w, f"error exec: {getattr(e, 'strerror', None) or e}".encode())
        finally:
            os._exit(1)
