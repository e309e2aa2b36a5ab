"""An OCI container's state under --root: its directory, its status as runtime-spec defines it, and its cgroup.

    ROOT/ID/state.json   id, bundle, PID 1 (host PID and start time), cgroup dirs, hooks,
                         created, annotations; written by create, read by every verb
    ROOT/ID/exec.fifo    exists from create until start: PID 1 waits on it

The status is read from the kernel, never stored: "paused" while its freezer is frozen,
"created" while the FIFO exists and PID 1 lives, "running" once start removed the FIFO,
"stopped" when PID 1 is gone or a zombie. So a runtime killed at any point leaves a state that the
next `state` reads right, and `delete --force` finishes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from minibox import files
from minibox.errors import Conflict, InvalidSpec, MiniboxError, NotFound
from minibox.runtime import procs

DEFAULT_ROOT = "/run/minibox-oci"
ID_RE = re.compile(r"^[\w+\-.]+$")
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio")


def check_id(cid: str) -> str:
    if not cid or not ID_RE.match(cid) or cid in (".", ".."):
        raise InvalidSpec(f'invalid container id "{cid}": use letters, digits and "_+-."')
    return cid


class Container:
    def __init__(self, root: str, cid: str):
        self.root = root
        self.id = check_id(cid)
        self.dir = os.path.join(root, cid)

    @property
    def fifo(self) -> str:
        return os.path.join(self.dir, "exec.fifo")

    def exists(self) -> bool:
        return os.path.exists(os.path.join(self.dir, "state.json"))

    def load(self) -> dict:
        try:
            with open(os.path.join(self.dir, "state.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            raise NotFound(f"container {self.id} does not exist") from None
        except ValueError:
            raise MiniboxError(f"{self.dir}/state.json is damaged: `delete --force {self.id}` removes it") from None

    def save(self, st: dict) -> None:
        files.replace_file(Path(self.dir) / "state.json", json.dumps(st))

    def make(self) -> None:
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(self.dir, 0o711)
        except FileExistsError:
            raise Conflict(f"container with id {self.id} already exists") from None

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def status(self, st: dict) -> str:
        pid = st.get("pid", 0)
        if not pid:
            return "creating"
        if not procs.alive(pid, st.get("pid_start", 0)):
            return "stopped"
        from minibox.runtime import cgroups

        if cgroups.frozen(st.get("cgroup_dirs") or ()):
            return "paused"  # a created container can be paused too (runc's pause takes both)
        return "created" if os.path.exists(self.fifo) else "running"

    def public(self, st: dict) -> dict:
        """The state as `state` prints it (runtime-spec's fields, and runc's extras)."""
        status = self.status(st)
        return {"ociVersion": st.get("ociVersion", "1.0.2"), "id": self.id,
                "pid": st.get("pid", 0) if status not in ("stopped", "creating") else 0, "status": status,
                "bundle": st.get("bundle", ""), "rootfs": st.get("rootfs", ""), "created": st.get("created", ""),
                "owner": "", "annotations": st.get("annotations") or {}}


def all_ids(root: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(root) if os.path.exists(os.path.join(root, n, "state.json")))
    except FileNotFoundError:
        return []


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


# --- cgroups --------------------------------------------------------------------------------------


def cgroup_dirs(cgroups_path: str, cid: str, parent: str) -> tuple[list[str], bool]:
    """Where linux.cgroupsPath is on this host (one dir per v1 hierarchy, or one on v2), and
    whether it is v2. A relative path (or none) goes under minibox's own parent group."""
    from minibox.runtime import cgroups

    lay = cgroups.layout()
    # "oci-" keeps it apart from minibox run's groups, which `minibox gc` sweeps by their 64-hex id
    path = cgroups_path or f"{parent}/oci-{cid}"
    if ":" in path and not path.startswith("/"):
        raise InvalidSpec(f'linux.cgroupsPath "{path}" is in systemd form (slice:prefix:name): this runtime '
                          "manages cgroupfs paths only (run without --systemd-cgroup)")
    path = "/" + path.lstrip("/")
    if os.path.normpath(path) != path or "/.." in path:
        raise InvalidSpec(f'linux.cgroupsPath "{cgroups_path}" must be a plain path, without ".."')
    return cgroups.dirs_of(path, lay, V1_CONTROLLERS), lay.version == "v2"


def cgroup_pids(dirs) -> list[int]:
    from minibox.runtime import cgroups

    return sorted(cgroups.procs(list(dirs)))
