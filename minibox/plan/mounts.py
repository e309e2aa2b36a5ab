"""A container's root as `run` makes it: the image's layers overlaid, and Docker's defaults a runtime spec then mounts on it.

The overlay is root.path of the container's runtime spec (plan.run): read from the image's
layer directories, written to the container's own upper directory. The rest is Docker's
defaults, for plan.run's spec: the devices every container gets, the /dev symlinks, the
masked and read-only paths, the per-container /etc files. Pure.
"""

from __future__ import annotations

import posixpath

from minibox.plan.steps import MS_NODEV, Mount
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
