"""`update`: a container's resource limits and restart policy changed in its record and, while it runs, in its cgroup."""

from __future__ import annotations

from minibox import config, store
from minibox.engine import lifecycle
from minibox.model import CREATED, RUNNING, ContainerRecord


def update(rec: ContainerRecord, changes: dict) -> None:
    """The kernel first (a memory limit below what it uses now is refused there: EBUSY), then
    the record, so a later `start` plans what the user asked."""
    from minibox.plan import ociresources
    from minibox.plan.runspec import limits
    from minibox.runtime import cgroups

    spec = rec.spec._replace(**changes)
    state = lifecycle.refresh(rec.id)
    if state.status in (RUNNING, CREATED):
        dirs = tuple(cgroups.existing_dirs(config.cgroup_parent(), rec.id))
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
                 "cpu_shares": "cpu", "pids_limit": "pids"}.get(field, ""))
    return out - {""}
