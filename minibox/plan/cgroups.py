"""A container's cgroup as steps: the groups with their limits and device allowlist, and joining them.

Pure: the group directories (runtime.cgroups finds where they go on this host) and the
limits in, steps out.
"""

from __future__ import annotations

from minibox.plan import devices
from minibox.plan.steps import CgroupCreate, CgroupJoin, DeviceFilter, Step
from minibox.value import Value

WHY = "a cgroup of its own: limits, and a list of every process in it"


class Limits(Value):
    memory: int = 0  # bytes, 0 = none
    pids: int = 0  # 0 = none


def plan_create(dirs: tuple[str, ...] | list[str], v2: bool, limits: Limits) -> list[Step]:
    steps: list[Step] = []
    for d in dirs:
        files: list[tuple[str, str]] = []
        why = WHY
        if limits.memory and (v2 or "/memory/" in d):
            files.append(("memory.max" if v2 else "memory.limit_in_bytes", str(limits.memory)))
        if limits.pids and (v2 or "/pids/" in d):
            files.append(("pids.max", str(limits.pids)))
        if "/devices/" in d and not v2:
            files += devices.v1_writes()
            why = ("its device allowlist (cgroup v1): deny every device, then allow Docker's list; mknod of "
                   "/dev/kmsg or a disk then gives a node that cannot be opened")
        steps.append(CgroupCreate(d, tuple(files), why=why))
    if v2 and steps:
        steps.append(DeviceFilter(steps[0].path, tuple(r.line() for r in devices.DEFAULT_RULES),
                                  devices.bpf_program(),
                                  why="its device allowlist (cgroup v2): an eBPF program the kernel runs on "
                                      "every open or mknod of a device node in this group"))
    return steps


def plan_join(dirs: tuple[str, ...] | list[str], pid: int | str) -> list[CgroupJoin]:
    return [CgroupJoin(d, str(pid), why="put the process in the container's cgroup before it runs anything")
            for d in dirs]
