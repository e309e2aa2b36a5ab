"""The container's OCI runtime spec from run's flags, the image's config and what was reserved: every flag the spec has a field for, set here once.

As Docker's client builds it for runc (moby's daemon/oci_linux.go defaults): process (argv,
env, cwd, user, capabilities, rlimits, no_new_privs), root (the overlay, --read-only),
hostname, mounts (Docker's defaults, the per-container /etc files, -v/--mount/--tmpfs),
namespaces, resources (-m, --pids-limit, the device allowlist), devices, sysctls, masks.
Each mount carries a `why` for the lesson. Pure.
"""

from __future__ import annotations

from minibox.model import ContainerRecord, ContainerSpec
from minibox.plan import volumes as volplan
from minibox.plan.mounts import ETC_FILES, MASKED_PATHS, READONLY_PATHS, RootfsLayout


NOSUID_NOEXEC_NODEV = ["nosuid", "noexec", "nodev"]


INIT = "/sbin/docker-init"  # where Docker puts its init (tini) in the container


def runtime_spec(spec: ContainerSpec, rec: ContainerRecord, layout: RootfsLayout, volume_root: str,
                 cgroups: bool, netns: str = "", devices: tuple = (), init: str = "", cgroup_fs: str = "") -> dict:
    """The container's OCI runtime spec, as Docker's client would hand it to runc (moby's
    daemon/oci_linux.go defaults), with a `why` on each mount for the lesson. `devices`:
    linux.devices entries for --device (all the host's with --privileged), read by the
    engine; `init`: the host's tini, for --init; `cgroup_fs`: "v1" or "v2", the
    hierarchies the container's groups are in ("": none)."""
    user = rec.user or {"uid": 0, "gid": 0}
    caps = ["CAP_" + c.upper() for c in rec.caps]
    shm = f"size={spec.shm_size // 1024}k" if spec.shm_size else "size=65536k"
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": NOSUID_NOEXEC_NODEV,
         "why": "a /proc of the new PID namespace: the container sees only its own processes"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755", "size=65536k"],
         "why": "an empty /dev of its own instead of the host's devices"},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
         "why": "a private set of pseudo-terminals, so the container cannot reach host ttys"},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": NOSUID_NOEXEC_NODEV + ([] if spec.privileged else ["ro"]),
         "why": "--privileged: /sys writable, the host's devices and kernel settings with it" if spec.privileged else
                "/sys read-only: shows the container's network devices, changes nothing on the host"},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": NOSUID_NOEXEC_NODEV,
         "why": "POSIX message queues of the container's own IPC namespace"},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": NOSUID_NOEXEC_NODEV + ["mode=1777", shm],
         "why": "POSIX shared memory of the container's own IPC namespace" + (" (--shm-size)" if spec.shm_size else "")},
    ]
    if cgroup_fs:
        # As Docker: /sys/fs/cgroup shows the container's own groups (read-only), so a program
        # sees its -m, --cpus and --pids-limit. v1 binds each hierarchy's group; on v2 a
        # cgroup namespace (Docker's default there, --cgroupns private) makes it the root.
        mounts.append({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                       "options": NOSUID_NOEXEC_NODEV + (["relatime"] if spec.privileged else ["relatime", "ro"]),
                       "why": "the container's own cgroups, read-only: its limits, as programs look for them"})
    for name in ETC_FILES:
        mounts.append({"destination": f"/etc/{name}", "type": "bind", "source": f"{layout.etc_dir}/{name}",
                       "options": ["bind"], "why": f"per-container /etc/{name}, kept out of the image and the "
                                                   "upper layer"})
    mounts += volume_mounts(rec, volume_root)
    args = list(rec.argv)
    if spec.init and init:
        mounts.append({"destination": INIT, "type": "bind", "source": init, "options": ["bind", "ro"],
                       "why": "--init: tini, Docker's docker-init, as PID 1: it reaps orphans and passes signals on"})
        args = [INIT, "--", *args]
    namespaces = [{"type": t} for t in ("pid", "mount", "network", "uts", "ipc")
                  if not (t == "network" and not spec.mode.own_netns)]
    if cgroup_fs == "v2":
        namespaces.append({"type": "cgroup"})
    if netns:
        namespaces.insert(2, {"type": "network", "path": netns})  # --network container:NAME
    allow = [{"allow": True, "type": d["type"], "major": d["major"], "minor": d["minor"], "access": d["perms"]}
             for d in devices] if not spec.privileged else [{"allow": True, "access": "rwm"}]
    resources: dict = {"devices": [{"allow": False, "access": "rwm"}] + allow} if cgroups else {}
    resources |= limits(spec)
    return {
        "ociVersion": "1.0.2",
        "process": {"terminal": spec.tty, "args": args, "env": list(rec.env), "cwd": rec.workdir,
                    "user": {"uid": user["uid"], "gid": user["gid"],
                             "additionalGids": list(user.get("groups") or ())},
                    "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": [],
                                     "ambient": []},
                    "noNewPrivileges": spec.no_new_privs, "rlimits": rlimits(spec.ulimits)},
        "root": {"path": layout.merged, "readonly": spec.read_only},
        "hostname": rec.hostname,
        **({"domainname": spec.domainname} if spec.domainname else {}),
        "mounts": mounts,
        "linux": {"namespaces": namespaces, "resources": resources, "rootfsPropagation": "rprivate",
                  "devices": [{k: v for k, v in d.items() if k != "perms"} for d in devices],
                  "sysctl": dict(x.split("=", 1) for x in spec.sysctls),
                  # --privileged: nothing masked, /proc/sys and the rest writable, as Docker's
                  "maskedPaths": [] if spec.privileged else list(MASKED_PATHS),
                  "readonlyPaths": [] if spec.privileged else list(READONLY_PATHS)},
    }


def rlimits(ulimits: tuple[str, ...]) -> list[dict]:
    from minibox.plan import procflags

    return [{"type": t, "soft": soft, "hard": hard} for t, soft, hard in map(procflags.ulimit, ulimits)]


def volume_mounts(rec: ContainerRecord, volume_root: str) -> list[dict]:
    """-v, --mount and --tmpfs as a runtime spec's mounts (a new volume marked `copyup`)."""
    out = []
    for v in volplan.to_volumes(rec.mounts, volume_root):
        if v.kind == "tmpfs":
            out.append({"destination": v.target, "type": "tmpfs", "source": "tmpfs",
                        "options": NOSUID_NOEXEC_NODEV + [o for o in v.options.split(",") if o],
                        "why": f"--tmpfs {v.target}: memory-backed, gone with the container; noexec, nosuid and "
                               "nodev unless its options say exec, suid or dev, as Docker's"})
            continue
        what = "the volume" if v.kind == "volume" else "the host directory"
        out.append({"destination": v.target, "type": "bind", "source": v.host_path,
                    "options": ["rbind"] + (["ro"] if v.readonly else []) + (["copyup"] if v.copy_up else []),
                    "why": f"{what} {v.host_path} at {v.target}: writes go there, not to the container's layer"
                           + (" (read-only)" if v.readonly else "")})
    return out


def limits(spec: ContainerSpec) -> dict:
    """-m, --memory-swap, --memory-reservation, --oom-kill-disable, --cpus, --cpu-shares and
    --pids-limit as linux.resources (`run` plans them, `update` writes them again)."""
    out: dict = {}
    if spec.memory or spec.memory_reservation or spec.oom_kill_disable:
        out["memory"] = {k: v for k, v in (("limit", spec.memory), ("swap", spec.memory_swap),
                                           ("reservation", spec.memory_reservation)) if v} | \
            ({"disableOOMKiller": True} if spec.oom_kill_disable else {})
    if spec.cpus or spec.cpu_shares or spec.cpuset_cpus or spec.cpuset_mems:
        out["cpu"] = ({"quota": round(spec.cpus * 100000), "period": 100000} if spec.cpus else {}) | \
            ({"shares": spec.cpu_shares} if spec.cpu_shares else {}) | \
            {k: v for k, v in (("cpus", spec.cpuset_cpus), ("mems", spec.cpuset_mems)) if v}
    if spec.blkio_weight:
        out["blockIO"] = {"weight": spec.blkio_weight}
    if spec.pids_limit:
        out["pids"] = {"limit": spec.pids_limit}
    return out
