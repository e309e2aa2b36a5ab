"""One cgroup per container, on cgroup v1 or v2, behind a three-call interface: create, join, remove.

The layout is detected once from the filesystem type of /sys/fs/cgroup: `cgroup2fs` is a
pure v2 host; anything else (tmpfs) holds v1 hierarchies, one per controller, as on this
project's VMs, where v2 exists but owns no useful controller. A v1 group is the same name
under each controller's hierarchy; a v2 group is one directory.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass

from minibox.plan.steps import CgroupCreate, CgroupJoin, RemovePath
from minibox.runtime import linux

ROOT = "/sys/fs/cgroup"
CGROUP2_SUPER_MAGIC = 0x63677270
V1_CONTROLLERS = ("memory", "pids", "cpu")


@dataclass(frozen=True)
class Limits:
    memory: int = 0  # bytes, 0 = none
    pids: int = 0  # 0 = none


def is_v2(root: str = ROOT) -> bool:
    try:
        return linux.statfs_type(root) == CGROUP2_SUPER_MAGIC
    except OSError:
        return False


def group_dirs(parent: str, cid: str, root: str = ROOT) -> list[str]:
    """Every directory that makes up container `cid`'s cgroup (existing controllers only)."""
    if is_v2(root):
        return [f"{root}/{parent}/{cid}"]
    return [f"{root}/{c}/{parent}/{cid}" for c in V1_CONTROLLERS if os.path.isdir(f"{root}/{c}")]


def plan_create(parent: str, cid: str, limits: Limits, root: str = ROOT) -> list[CgroupCreate]:
    v2 = is_v2(root)
    steps = []
    for d in group_dirs(parent, cid, root):
        files: list[tuple[str, str]] = []
        if limits.memory and (v2 or "/memory/" in d):
            files.append(("memory.max" if v2 else "memory.limit_in_bytes", str(limits.memory)))
        if limits.pids and (v2 or "/pids/" in d):
            files.append(("pids.max", str(limits.pids)))
        steps.append(CgroupCreate(d, tuple(files), why="a cgroup of its own: limits, and a list of every process in it"))
    return steps


def create(steps: list[CgroupCreate], root: str = ROOT) -> None:
    if steps and is_v2(root):
        _enable_v2_controllers(os.path.dirname(steps[0].path), root)
    for step in steps:
        os.makedirs(step.path, exist_ok=True)
        for name, value in step.limits:
            with open(f"{step.path}/{name}", "w") as f:
                f.write(value)


def _enable_v2_controllers(parent_dir: str, root: str) -> None:
    # v2 only hands a controller to children whose parent enabled it, level by level.
    rel = os.path.relpath(parent_dir, root)
    cur = root
    for part in [p for p in rel.split("/") if p not in ("", ".")]:
        try:
            with open(f"{cur}/cgroup.controllers") as f:
                available = set(f.read().split())
            wanted = " ".join(f"+{c}" for c in ("memory", "pids", "cpu") if c in available)
            if wanted:
                with open(f"{cur}/cgroup.subtree_control", "w") as f:
                    f.write(wanted)
        except OSError:
            pass  # a controller we cannot enable just means no limit of that kind
        cur = f"{cur}/{part}"
        os.makedirs(cur, exist_ok=True)


def plan_join(dirs: list[str], pid: int | str) -> list[CgroupJoin]:
    return [CgroupJoin(d, str(pid), why="put the process in the container's cgroup before it runs anything") for d in dirs]


def join(dirs: list[str], pid: int) -> None:
    for d in dirs:
        with open(f"{d}/cgroup.procs", "w") as f:
            f.write(str(pid))


def remove(dirs: list[str]) -> tuple[list[RemovePath], list[str]]:
    """rmdir every group: (steps done, errors), never raising, so teardown can go on."""
    errors, steps = [], []
    for d in dirs:
        for attempt in range(50):
            try:
                os.rmdir(d)
                steps.append(RemovePath(d, "dir", why="the container's cgroup, empty now"))
                _remove_parent_if_empty(os.path.dirname(d))
                break
            except FileNotFoundError:
                break
            except OSError as e:
                # EBUSY for a moment after the last process exits, while the kernel reaps it.
                if e.errno != errno.EBUSY or attempt == 49:
                    errors.append(f"rmdir {d}: {e.strerror}")
                    break
                time.sleep(0.01)
    return steps, errors


def _remove_parent_if_empty(parent: str) -> None:
    """The per-runtime parent group goes with its last container, as docker's does not."""
    try:
        os.rmdir(parent)
    except OSError:
        pass  # other containers still in it, or another runtime's
