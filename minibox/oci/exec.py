"""`minibox-oci exec`: another process in a running container, from a process.json (as conmon and containerd-shim pass it) or from arguments, through the one exec path (runtime.enter).

The process's stdio is the caller's, as the engine gave it; with --tty its terminal is a pty
of the container's devpts, sent over --console-socket. Without --detach this command waits
for the process and exits with its status; with it, it writes --pid-file and leaves the
process to the engine's subreaper.
"""

from __future__ import annotations

import json
from pathlib import Path

from minibox import files
from minibox.errors import Conflict, InvalidSpec
from minibox.oci import state as ocistate
from minibox.oci.create import connect_console, read_config, seccomp_step
from minibox.plan import oci as ociplan

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
    from minibox.runtime import enter, shimbin

    def write_pid(pid: int) -> None:
        if pid_file:
            files.replace_file(Path(pid_file), str(pid))

    cfg = enter.EnterConfig(pid=st["pid"], cgroup_dirs=tuple(st.get("cgroup_dirs") or ()), steps=tuple(steps),
                            execer=str(shimbin.ensure_execer()), stdio="console" if console >= 0 else "inherit",
                            console=console, console_size=(int(size.get("height", 0)), int(size.get("width", 0))),
                            detach=detach, preserve_fds=preserve_fds)
    try:
        return enter.enter(cfg, on_pid=write_pid)
    except enter.Stopped:
        raise Conflict(f"cannot exec in container {cid}: it stopped while exec was starting") from None
