"""The ordered filesystem steps that turn an image's layers into a container's root.

Runs, in this order, inside the container's new mount namespace (runtime.init applies them):
make every mount private, overlay the image's layers, mount proc/dev/devpts/shm/mqueue/sys,
bind the per-container hosts/hostname/resolv.conf files, then the volumes, binds and tmpfs
mounts the user asked for, mask and write-protect what Docker masks, then pivot_root. Mirrors what runc does for Docker's default OCI spec. Every target is a
path inside the overlay, resolved inside it when applied (runtime.inroot), never through
the image's symlinks to the host.
"""

from __future__ import annotations

import posixpath

from minibox.plan.steps import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    CopyUp,
    MakeDir,
    MakeNode,
    Mount,
    PivotRoot,
    Step,
    Symlink,
)
from minibox.value import Value

# Docker's default masked paths: a bind of /dev/null over files, an empty read-only
# tmpfs over directories, so a container cannot read host kernel internals.
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
# Docker's default read-only paths: visible, but a container cannot change the host through them.
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
# Directories that are masked with tmpfs (the rest of MASKED_PATHS are files).
MASKED_DIRS = frozenset({"/proc/asound", "/proc/acpi", "/proc/scsi", "/sys/firmware",
                         "/sys/devices/virtual/powercap"})

# The device nodes every container gets: (name, major, minor).
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
           ("urandom", 1, 9), ("tty", 5, 0))
DEV_SYMLINKS = (("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"),
                ("/proc/self/fd/1", "stdout"), ("/proc/self/fd/2", "stderr"),
                ("pts/ptmx", "ptmx"))
# Files minibox writes per container and binds over the image's copies.
ETC_FILES = ("hostname", "hosts", "resolv.conf")


class RootfsLayout(Value):
    """Where one container's layers live on the host."""

    lower: tuple[str, ...]  # the image's layer directories, top first, never written
    upper: str  # this container's writes
    work: str  # overlayfs scratch space
    merged: str  # mountpoint of the union
    etc_dir: str  # directory holding the per-container hostname/hosts/resolv.conf

    @classmethod
    def for_container(cls, layers: tuple[str, ...] | str, container_dir: str) -> RootfsLayout:
        lower = (layers,) if isinstance(layers, str) else tuple(layers)
        return cls(lower=lower, upper=f"{container_dir}/upper", work=f"{container_dir}/work",
                   merged=f"{container_dir}/merged", etc_dir=container_dir)


class Volume(Value):
    """A mount of the container's, resolved: where its content is on the host."""

    kind: str  # "bind", "volume" or "tmpfs"
    host_path: str  # a bind's source, a volume's directory ("" for tmpfs)
    target: str  # inside the container
    readonly: bool = False
    options: str = ""  # tmpfs
    copy_up: bool = False  # a named volume: copy the image's content in if it is empty


# The mount(2) options hold at most a page (4096 bytes); past this, lowerdirs are given
# relative to their common directory (short names there: image.store), as Docker does.
OPTIONS_MAX = 3800
OVERLAY_MAX_LAYERS = 500  # the kernel's OVL_MAX_STACK


def overlay(layout: RootfsLayout) -> Mount:
    if len(layout.lower) > OVERLAY_MAX_LAYERS:
        from minibox.errors import InvalidSpec

        raise InvalidSpec(f"the image has {len(layout.lower)} layers; overlayfs stacks at most {OVERLAY_MAX_LAYERS}")
    why = ("copy-on-write root: reads come from the image's layers, writes land in this container's upper dir; "
           "nodev, so a device node shipped in an image (or made in it) opens nothing")
    data = f"lowerdir={':'.join(layout.lower)},upperdir={layout.upper},workdir={layout.work}"
    base = posixpath.dirname(layout.lower[0])
    if len(data) > OPTIONS_MAX and all(posixpath.dirname(p) == base for p in layout.lower):
        data = f"lowerdir={':'.join(posixpath.basename(p) for p in layout.lower)},upperdir={layout.upper}," \
               f"workdir={layout.work}"
        return Mount("overlay", layout.merged, "overlay", MS_NODEV, data, cwd=base, why=why)
    return Mount("overlay", layout.merged, "overlay", MS_NODEV, data, why=why)


_TMPFS_FLAGS = {"ro": (MS_RDONLY, True), "rw": (MS_RDONLY, False), "noexec": (MS_NOEXEC, True),
                "exec": (MS_NOEXEC, False), "nosuid": (MS_NOSUID, True), "suid": (MS_NOSUID, False),
                "nodev": (MS_NODEV, True), "dev": (MS_NODEV, False)}


def tmpfs_flags(options: str) -> tuple[int, str]:
    """A tmpfs's options (checked by plan.volumes) as mount(2) takes them: the words that are
    flags (ro, noexec, ..., and their opposites, which clear Docker's defaults) as flags,
    the rest (size=, mode=) as the filesystem's data."""
    flags, data = MS_NOEXEC | MS_NOSUID | MS_NODEV, []
    for opt in (o for o in options.split(",") if o):
        if opt in _TMPFS_FLAGS:
            bit, on = _TMPFS_FLAGS[opt]
            flags = flags | bit if on else flags & ~bit
        else:
            data.append(opt)
    return flags, ",".join(data)


def plan_volumes(merged: str, volumes: tuple[Volume, ...]) -> list[Step]:
    steps: list[Step] = []
    for v in volumes:
        target = f"{merged}{v.target}"
        if v.kind == "tmpfs":
            flags, data = tmpfs_flags(v.options)
            steps.append(Mount("tmpfs", target, "tmpfs", flags, data,
                               why=f"--tmpfs {v.target}: memory-backed, gone with the container; noexec, nosuid "
                                   "and nodev unless its options say exec, suid or dev, as Docker's"))
            continue
        if v.copy_up:
            steps.append(CopyUp(target, v.host_path, why="a new volume gets what the image has at its target"))
        what = "the volume" if v.kind == "volume" else "the host directory"
        steps.append(Mount(v.host_path, target, flags=MS_BIND | MS_REC,
                           why=f"{what} {v.host_path} at {v.target}: writes go there, not to the container's layer"))
        if v.readonly:
            steps.append(Mount(v.host_path, target, flags=MS_BIND | MS_REMOUNT | MS_RDONLY,
                               why=f"{v.target} read-only (:ro)"))
    return steps


def plan_rootfs(layout: RootfsLayout, *, mask: bool = True, volumes: tuple[Volume, ...] = (),
                read_only: bool = False, workdir: str = "/") -> list[Step]:
    m = layout.merged
    nosuid_noexec_nodev = MS_NOSUID | MS_NOEXEC | MS_NODEV
    steps: list[Step] = [
        Mount("none", "/", flags=MS_REC | MS_PRIVATE,
              why="stop mounts below from propagating back to the host (it may share '/')"),
        overlay(layout),
        Mount("proc", f"{m}/proc", "proc", nosuid_noexec_nodev,
              why="a /proc of the new PID namespace: the container sees only its own processes"),
        Mount("tmpfs", f"{m}/dev", "tmpfs", MS_NOSUID, "mode=755,size=65536k",
              why="an empty /dev of its own instead of the host's devices"),
    ]
    for name, major, minor in DEVICES:
        steps.append(MakeNode(f"{m}/dev/{name}", major, minor, 0o666, why=f"the one device /dev/{name}"))
    for target, name in DEV_SYMLINKS:
        steps.append(Symlink(target, f"{m}/dev/{name}", why=""))
    steps += [
        MakeDir(f"{m}/dev/pts", why=""),
        Mount("devpts", f"{m}/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620,gid=5",
              why="a private set of pseudo-terminals, so the container cannot reach host ttys"),
        MakeDir(f"{m}/dev/shm", 0o1777, why=""),
        Mount("shm", f"{m}/dev/shm", "tmpfs", nosuid_noexec_nodev, "mode=1777,size=65536k",
              why="POSIX shared memory of the container's own IPC namespace"),
        MakeDir(f"{m}/dev/mqueue", why=""),
        Mount("mqueue", f"{m}/dev/mqueue", "mqueue", nosuid_noexec_nodev,
              why="POSIX message queues of the container's own IPC namespace"),
        Mount("sysfs", f"{m}/sys", "sysfs", nosuid_noexec_nodev | MS_RDONLY,
              why="/sys read-only: shows the container's network devices, changes nothing on the host"),
    ]
    for name in ETC_FILES:
        steps.append(Mount(f"{layout.etc_dir}/{name}", f"{m}/etc/{name}", flags=MS_BIND,
                           why=f"per-container /etc/{name}, kept out of the image and the upper layer"))
    steps += plan_volumes(m, volumes)
    if workdir != "/":
        steps.append(MakeDir(f"{m}{workdir}", why="the working directory, made (as root) if the image lacks it, "
                                                  "as Docker does"))
    if mask:
        for path in MASKED_PATHS:
            if path in MASKED_DIRS:
                steps.append(Mount("tmpfs", f"{m}{path}", "tmpfs", MS_RDONLY,
                                   why=f"mask {path}: host kernel details a container has no need for"))
            else:
                steps.append(Mount(f"{m}/dev/null", f"{m}{path}", flags=MS_BIND,
                                   why=f"mask {path}: reads as empty"))
        for path in READONLY_PATHS:
            steps.append(Mount(f"{m}{path}", f"{m}{path}", flags=MS_BIND | MS_REC,
                               why=f"make {path} read-only (step 1: bind it onto itself)"))
            steps.append(Mount(f"{m}{path}", f"{m}{path}",
                               flags=MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC | MS_NODEV,
                               why=f"make {path} read-only (step 2: remount the bind read-only)"))
    if read_only:
        steps.append(Mount(m, m, flags=MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NODEV,
                           why="--read-only: the root itself cannot be written (volumes and tmpfs mounts still can)"))
    steps.append(PivotRoot(m, why="make the overlay the new '/', then detach the host's old root entirely"))
    return steps
