"""`update`: a container's resource limits and restart policy changed in its record and, while it runs, in its cgroup."""

from __future__ import annotations

from minibox import config, store
from minibox.engine import lifecycle
from minibox.model import CREATED, RUNNING, ContainerRecord


def update(rec: ContainerRecord, changes: dict) -> None:
    """The kernel first (a memory limit below what it uses now is refused there: EBUSY), then
    the record, so a later `start` plans what the user asked."""
    from minibox.engine.facts import limits_asked
    from minibox.plan import ociresources
    from minibox.plan.runspec import limits
    from minibox.runtime import cgroups

    spec = rec.spec._replace(**changes)
    cgroups.check_limits(cgroups.layout(), limits_asked(changes))
    state = lifecycle.refresh(rec.id)
    if state.status in (RUNNING, CREATED):
        dirs = tuple(cgroups.existing_dirs(config.cgroup_parent(), rec.id))
        if {"cpuset_cpus", "cpuset_mems"} & set(changes) and dirs:
            dirs += _cpuset_group(rec.id, dirs)
        res = {k: v for k, v in limits(spec).items() if k in _touched(changes)}
        if res and dirs:
            try:
                cgroups.create(ociresources.plan_update(res, dirs, cgroups.is_cgroup2(dirs[0])))
            except OSError as e:
                from minibox.errors import MiniboxError

                raise MiniboxError(f"cannot update container {rec.name}: {e.strerror} (a memory limit below what it "
                                   "uses now?)") from None
    with store.container_lock(rec.id):
        store.save_record(store.load_record(rec.id)._replace(spec=spec))


def _touched(changes: dict) -> set[str]:
    out = set()
    for field in changes:
        out.add({"memory": "memory", "memory_swap": "memory", "memory_reservation": "memory", "cpus": "cpu",
                 "cpu_shares": "cpu", "pids_limit": "pids", "cpuset_cpus": "cpu", "cpuset_mems": "cpu"}.get(field, ""))
    return out - {""}


def _cpuset_group(cid: str, dirs: tuple[str, ...]) -> tuple[str, ...]:
    """On v1, a container run without --cpuset-* has no cpuset group: make it (as run
    would have) and move its processes in, so `update --cpuset-cpus` works as Docker's."""
    from minibox.plan.steps import CgroupCreate
    from minibox.runtime import cgroups

    lay = cgroups.layout()
    want = cgroups.group_dirs(config.cgroup_parent(), cid, lay, ("cpuset",))
    new = tuple(d for d in want if "/cpuset/" in d and d not in dirs)
    if new:
        cgroups.create([CgroupCreate(d, ()) for d in new])
        for pid in sorted(cgroups.procs(dirs)):
            cgroups.join(new, pid)
    return new
