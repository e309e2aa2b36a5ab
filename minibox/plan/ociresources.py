"""A container's cgroup: linux.resources (memory, cpu, cpuset, pids, devices) as the files each group gets, at linux.cgroupsPath; and joining it. Pure."""

from __future__ import annotations

from typing import Any

from minibox.plan import devices as devplan
from minibox.plan.steps import CgroupCreate, CgroupJoin, DeviceFilter, Step


def plan_cgroups(linux: dict, dirs: tuple[str, ...], v2: bool) -> list[Step]:
    """linux.resources as the files each group gets (the groups are at cgroupsPath)."""
    res = linux.get("resources") or {}
    steps: list[Step] = []
    rules = device_rules(res)
    for d in dirs:
        files: list[tuple[str, str]] = []
        ctl = _controller(d, v2)
        files += _resource_files(res, ctl, v2)
        if ctl == "devices":
            files += devplan.v1_writes(rules)
        steps.append(CgroupCreate(d, tuple(files), why=f"linux.cgroupsPath, linux.resources: {d}"))
    if v2 and steps:
        steps.append(DeviceFilter(steps[0].path, tuple(r.line() for r in rules), devplan.bpf_program(rules),
                                  why="linux.resources.devices: an eBPF program on the group"))
    return steps


def plan_update(res: dict, dirs: tuple[str, ...], v2: bool) -> list[Step]:
    """`update`: the files linux.resources sets, written into the container's existing
    groups (its device rules stay as create made them)."""
    steps: list[Step] = []
    for d in dirs:
        files = tuple(_resource_files(res, _controller(d, v2), v2))
        if files:
            steps.append(CgroupCreate(d, files, why=f"update: {', '.join(f'{n}={v}' for n, v in files)}"))
    return steps


def _controller(path: str, v2: bool) -> str:
    """The v1 hierarchy a group is in ("memory" for /sys/fs/cgroup/memory/...); "" on v2."""
    return "" if v2 else path.split("/sys/fs/cgroup/", 1)[-1].split("/", 1)[0]


def device_rules(res: dict) -> tuple[devplan.DeviceRule, ...]:
    """linux.resources.devices in order, then the devices every container gets (as runc adds them)."""
    out = []
    for d in res.get("devices") or ():
        kind = d.get("type") or "a"
        major = d.get("major")
        minor = d.get("minor")
        out.append(devplan.DeviceRule(kind, -1 if major is None else int(major), -1 if minor is None else int(minor),
                                      d.get("access") or "rwm", allow=bool(d.get("allow"))))
    out += devplan.DEFAULT_RULES
    return tuple(out)


def _resource_files(res: dict, ctl: str, v2: bool) -> list[tuple[str, str]]:
    files: list[tuple[str, str]] = []
    mem = res.get("memory") or {}
    cpu = res.get("cpu") or {}
    pids = res.get("pids") or {}

    def put(controller: str, v1: str, v2name: str, value: Any) -> None:
        if value is None or (not v2 and ctl != controller):
            return
        name = v2name if v2 else v1
        if name:
            files.append((name, str(value)))

    put("memory", "memory.limit_in_bytes", "memory.max", mem.get("limit"))
    put("memory", "memory.soft_limit_in_bytes", "memory.low", mem.get("reservation"))
    put("memory", "memory.memsw.limit_in_bytes", "memory.swap.max", mem.get("swap"))
    put("memory", "memory.kmem.limit_in_bytes", "", mem.get("kernel"))
    put("memory", "memory.kmem.tcp.limit_in_bytes", "", mem.get("kernelTCP"))
    put("memory", "memory.swappiness", "", mem.get("swappiness"))
    if mem.get("disableOOMKiller"):
        put("memory", "memory.oom_control", "", 1)
    put("cpu", "cpu.shares", "", cpu.get("shares"))
    put("cpu", "cpu.cfs_period_us", "", cpu.get("period"))
    put("cpu", "cpu.cfs_quota_us", "", cpu.get("quota"))
    put("cpu", "cpu.rt_period_us", "", cpu.get("realtimePeriod"))
    put("cpu", "cpu.rt_runtime_us", "", cpu.get("realtimeRuntime"))
    if v2 and (cpu.get("quota") is not None or cpu.get("period") is not None):
        files.append(("cpu.max", f"{cpu.get('quota') or 'max'} {cpu.get('period') or 100000}"))
    # The weight is BFQ's (blkio.bfq.weight, io.bfq.weight: 1..1000, as --blkio-weight);
    # runtime.cgroups falls back to blkio.weight where only that exists (CFQ's).
    put("blkio", "blkio.bfq.weight", "io.bfq.weight", (res.get("blockIO") or {}).get("weight") or None)  # 0: unset
    put("cpuset", "cpuset.cpus", "cpuset.cpus", cpu.get("cpus"))
    put("cpuset", "cpuset.mems", "cpuset.mems", cpu.get("mems"))
    if "limit" in pids:
        put("pids", "pids.max", "pids.max", "max" if int(pids["limit"]) <= 0 else int(pids["limit"]))
    return files


def plan_join(dirs: tuple[str, ...] | list[str], pid: int | str) -> list[CgroupJoin]:
    return [CgroupJoin(d, str(pid), why="put the process in the container's cgroup before it runs anything")
            for d in dirs]
