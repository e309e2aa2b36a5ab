"""`minibox-oci` verbs after create: start, state, kill, delete, list, ps, pause, resume, update, features.

Each reads ROOT/ID/state.json and asks the kernel for the rest (oci.state), so a verb works
whatever moment an earlier one was killed in. The lifecycle and its errors are
runtime-spec's: `start` only a created container, `delete` only a stopped one (or
`--force`), `kill` a created or running one.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from minibox.errors import Conflict, MiniboxError, NotFound, NotRunning
from minibox.oci import state as ocistate
from minibox.plan.steps import RunHook
from minibox.runtime import cgroups



def start(root: str, cid: str) -> None:
    c = ocistate.Container(root, cid)
    st = c.load()
    status = c.status(st)
    if status != "created":
        raise Conflict(f"cannot start container {cid}: it is {status}, and only a created container starts")
    from minibox.runtime import launcher

    why = launcher.let_start(c.fifo, lambda: c.status(st) == "stopped")
    if why:
        raise MiniboxError(f"cannot start container {cid}: {why}")
    # runtime-spec: a failing poststart hook is a warning; the container keeps running.
    for h in hooks(st, "poststart"):
        warn_on_failure(h, c.public(st))


def hooks(st: dict, kind: str) -> list[RunHook]:
    return [RunHook(**h) for h in (st.get("hooks") or {}).get(kind, ())]


def warn_on_failure(h: RunHook, public: dict) -> None:
    from minibox.runtime import command
    from minibox.runtime.hooks import run_hook

    try:
        run_hook(h, public)
    except command.InitError as e:
        log_warning(str(e))


def log_warning(msg: str) -> None:
    sys.stderr.write(f"minibox-oci: warning: {msg}\n")


def state(root: str, cid: str) -> dict:
    c = ocistate.Container(root, cid)
    return c.public(c.load())


def parse_signal(value: str) -> int:
    """runc's forms: 9, KILL, SIGKILL (any case); 0, as kill(2) takes it, only checks."""
    v = value.strip().upper()
    if v.isdigit():
        n = int(v)
        if 0 <= n < signal.NSIG:
            return n
    else:
        name = v if v.startswith("SIG") else "SIG" + v
        sig = getattr(signal.Signals, name, None) if name in signal.Signals.__members__ else None
        if sig is not None:
            return int(sig)
    raise MiniboxError(f'invalid signal "{value}": use a number (0-{signal.NSIG - 1}) or a name such as TERM or SIGKILL')


def kill(root: str, cid: str, sig: str = "SIGTERM", all_procs: bool = False) -> None:
    """runc 1.1's kill, in every state. With --all: every process left in the container's
    cgroup is signalled, whatever the state, and that is success (containerd's shim deletes
    every task with `kill --all ID 9` after it exited, and retries until it succeeds).
    Without: PID 1 if it still runs (created, running, paused), else "container not
    running", which the shim takes for "already finished"."""
    c = ocistate.Container(root, cid)
    st = c.load()
    signum = parse_signal(sig)
    status = c.status(st)
    dirs = st.get("cgroup_dirs") or ()
    if all_procs:
        pids = set(ocistate.cgroup_pids(dirs))
        if status in ("created", "running", "paused"):
            pids.add(st["pid"])  # (a container without cgroups: PID 1 is what there is)
        _signal(pids, signum)
    elif status in ("created", "running", "paused"):
        _signal({st["pid"]}, signum)
    else:
        raise NotRunning(f"cannot kill container {cid}: container not running (it is {status})")
    if status == "paused" and signum == signal.SIGKILL:
        cgroups.freeze(dirs, False)  # a frozen process dies only once thawed (v1), as runc does


def _signal(pids: set[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def delete(root: str, cid: str, force: bool = False) -> None:
    c = ocistate.Container(root, cid)
    try:
        st = c.load()
    except NotFound:
        if force:
            return
        raise
    except MiniboxError:
        if not force:
            raise
        st = {}  # damaged: --force still removes the directory
    status = c.status(st) if st else "stopped"
    # runtime-spec: deleting a container that is not stopped is an error. runc 1.1 lets a
    # created one go (it kills PID 1 first): containerd's shim deletes a task whose start
    # failed that way, and would be left with it otherwise.
    if status in ("running", "paused") and not force:
        raise Conflict(f"cannot delete container {cid} that is not stopped: it is {status} (use --force)")
    if status != "stopped" and st.get("pid"):
        dirs = st.get("cgroup_dirs") or ()
        if status == "paused":
            cgroups.freeze(dirs, False)
        for pid in set(ocistate.cgroup_pids(dirs)) | {st["pid"]}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_gone(st)
    problems = []
    for h in hooks(st, "poststop"):
        warn_on_failure(h, c.public(st) | {"status": "stopped", "pid": 0})
    from minibox import config
    problems += cgroups.remove(list(st.get("cgroup_dirs") or ()), config.cgroup_parent())[1]
    c.remove()
    if problems:
        raise MiniboxError("delete: " + "; ".join(map(str, problems)))


def wait_gone(st: dict, timeout: float = 10.0) -> None:
    from minibox.runtime import procs

    deadline = time.monotonic() + timeout
    while procs.alive(st["pid"], st.get("pid_start", 0)) and time.monotonic() < deadline:
        time.sleep(0.01)


def update_resources(path: str, memory: str, pids_limit: int | None) -> dict:
    """runc update's input as linux.resources: a JSON file (or - for stdin), then the flags."""
    from minibox.errors import InvalidSpec
    from minibox.plan.spec import parse_memory

    res: dict = {}
    if path:
        try:
            text = sys.stdin.read() if path == "-" else open(path).read()
            res = json.loads(text)
        except (OSError, ValueError) as e:
            raise InvalidSpec(f'cannot read resources from "{path}": {e}') from None
        if not isinstance(res, dict):
            raise InvalidSpec(f'resources in "{path}" must be a JSON object (linux.resources)')
    if memory:
        res.setdefault("memory", {})["limit"] = parse_memory(memory)
    if pids_limit is not None:
        res.setdefault("pids", {})["limit"] = pids_limit
    if not res:
        raise InvalidSpec("nothing to update: give --memory, --pids-limit or --resources")
    return res


def update(root: str, cid: str, res: dict) -> None:
    from minibox.plan import ociresources
    c = ocistate.Container(root, cid)
    st = c.load()
    status = c.status(st)
    if status not in ("created", "running", "paused"):
        raise NotRunning(f"cannot update container {cid}: container not running (it is {status})")
    dirs = tuple(st.get("cgroup_dirs") or ())
    cgroups.create(ociresources.plan_update(res, dirs, bool(dirs) and cgroups.is_cgroup2(dirs[0])))


def list_all(root: str) -> list[dict]:
    out = []
    for cid in ocistate.all_ids(root):
        c = ocistate.Container(root, cid)
        try:
            out.append(c.public(c.load()))
        except MiniboxError:
            out.append({"id": cid, "pid": 0, "status": "stopped", "bundle": "", "created": ""})
    return out


def list_text(items: list[dict], quiet: bool) -> str:
    if quiet:
        return "".join(i["id"] + "\n" for i in items)
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    rows += [(i["id"], str(i["pid"]), i["status"], i["bundle"], i["created"], "root") for i in items]
    widths = [max(len(r[k]) for r in rows) for k in range(5)]
    return "".join("   ".join(r[k].ljust(widths[k]) for k in range(5)) + "   " + r[5] + "\n" for r in rows)


def ps(root: str, cid: str) -> list[int]:
    c = ocistate.Container(root, cid)
    st = c.load()
    return ocistate.cgroup_pids(st.get("cgroup_dirs") or ())


def pause(root: str, cid: str, on: bool) -> None:
    """runc's pause (of a running or created container) and resume (of a paused one)."""
    c = ocistate.Container(root, cid)
    st = c.load()
    status = c.status(st)
    if on and status not in ("running", "created"):
        raise NotRunning(f"cannot pause container {cid}: container not running (it is {status})")
    if not on and status != "paused":
        raise Conflict(f"cannot resume container {cid}: container not paused (it is {status})")
    cgroups.freeze(st.get("cgroup_dirs") or (), on)


def features() -> dict:
    from minibox.plan import oci as ociplan
    from minibox.plan import ocifs
    from minibox.plan.procsteps import CAP_NUMBERS

    return {"ociVersionMin": "1.0.0", "ociVersionMax": "1.1.0",
            "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
            "mountOptions": sorted(ocifs.FLAGS) + sorted(ocifs.PROPAGATION),
            "linux": {"namespaces": sorted(ociplan.NAMESPACES),
                      "capabilities": sorted("CAP_" + n.upper() for n in CAP_NUMBERS),
                      "cgroup": {"v1": True, "v2": True, "systemd": False},
                      "seccomp": {"enabled": True}, "apparmor": {"enabled": False},
                      "selinux": {"enabled": False}},
            "annotations": {"org.opencontainers.runc.version": "none (minibox-oci)"}}


def dump(obj) -> str:
    return json.dumps(obj, indent=2) + "\n"
