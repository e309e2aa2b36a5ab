"""`stats`: each running container's CPU, memory, network I/O, block I/O and PIDs, read from its cgroups, its processes and its network namespace.

Two samples a moment apart give CPU % as Docker computes it: CPU time used over wall time,
100% per CPU. CPU time is v2's cpu.stat, or, on v1 (whose cpuacct minibox does not
make a group in), the user and system time of the group's processes from /proc. Memory is
the group's usage less its inactive file cache (Docker's "MEM USAGE"), against its limit or
the host's memory. Network I/O is every interface but lo of the container's network
namespace, read through PID 1's /proc/PID/net/dev. Nothing here writes.
"""

from __future__ import annotations

import os
import time

from minibox import config
from minibox.runtime import cgroups
from minibox.value import Value

TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


class Sample(Value):
    at: float  # time.monotonic() of the sample
    cpu_ns: int
    mem: int
    mem_limit: int
    net_rx: int
    net_tx: int
    blk_read: int
    blk_write: int
    pids: int


def _read(dirs: list[str], name: str) -> str:
    """The first of `dirs` that has file `name`. A v1 controller's directory is asked only
    for its own files (memory.* of the memory one): a file opened where it cannot be costs
    as much as one read, and stats of a hundred containers opened thousands."""
    controller = name.split(".", 1)[0]
    for d in dirs:
        hierarchy = d[len(cgroups.ROOT) + 1:].split("/", 1)[0] if d.startswith(cgroups.ROOT + "/") else ""
        if controller != "cgroup" and hierarchy in cgroups.V1_CONTROLLERS + cgroups.EXTRA_V1 and \
                controller not in hierarchy.split(","):
            continue
        try:
            with open(os.path.join(d, name)) as f:
                return f.read()
        except OSError:
            continue
    return ""


def _keyed(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


_host_memory: list[int] = []  # MemTotal, read once: it does not change while a command runs


def host_memory() -> int:
    if not _host_memory:
        total = 0
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * 1024
                    break
        _host_memory.append(total)
    return _host_memory[0]


def sample(cid: str, pid: int, dirs: list[str] | None = None) -> Sample:
    """One sample of container `cid`, whose PID 1 is `pid`; `dirs`: its cgroups, when the
    caller found them already (the second sample of a pair)."""
    dirs = cgroups.existing_dirs(config.cgroup_parent(), cid) if dirs is None else dirs
    stat = _keyed(_read(dirs, "cpu.stat"))
    if "usage_usec" in stat:
        cpu = stat["usage_usec"] * 1000
    else:
        cpu = 0
        for p in cgroups.procs(dirs[:1]):  # on v1 every hierarchy holds the same processes
            try:
                with open(f"/proc/{p}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                cpu += (int(fields[11]) + int(fields[12])) * TICK_NS  # utime, stime
            except (OSError, IndexError, ValueError):
                continue
    mstat = _keyed(_read(dirs, "memory.stat"))
    used = (_read(dirs, "memory.current") or _read(dirs, "memory.usage_in_bytes")).strip()
    mem = max(0, int(used or 0) - mstat.get("inactive_file", mstat.get("total_inactive_file", 0)))
    limit_text = (_read(dirs, "memory.max") or _read(dirs, "memory.limit_in_bytes")).strip()
    host = host_memory()
    limit = min(int(limit_text), host) if limit_text.isdigit() else host
    rx = tx = 0
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            for line in f.readlines()[2:]:
                name, _, rest = line.partition(":")
                if name.strip() != "lo":
                    values = rest.split()
                    rx, tx = rx + int(values[0]), tx + int(values[8])
    except (OSError, IndexError, ValueError):
        pass
    io = {}
    for line in _read(dirs, "io.stat").splitlines():
        for kv in line.split()[1:]:
            k, _, v = kv.partition("=")
            io[k] = io.get(k, 0) + int(v) if v.isdigit() else io.get(k, 0)
    pids = _read(dirs, "pids.current").strip()
    return Sample(time.monotonic(), cpu, mem, limit, rx, tx, io.get("rbytes", 0), io.get("wbytes", 0),
                  int(pids) if pids.isdigit() else len(cgroups.procs(dirs[:1])))


def cpu_percent(a: Sample, b: Sample) -> float:
    wall = (b.at - a.at) * 1e9
    return 100.0 * (b.cpu_ns - a.cpu_ns) / wall if wall > 0 else 0.0
