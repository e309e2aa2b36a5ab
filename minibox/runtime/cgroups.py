"""One cgroup per container, on cgroup v1 or v2, behind a small interface: plan, create, join, remove.

Which hierarchy is used (MINIBOX_CGROUP, default auto):
  - auto: `cgroup2fs` at /sys/fs/cgroup is a pure v2 host; a tmpfs there holding v1
    hierarchies (one per controller, as on this project's VMs) is v1. Such hybrid hosts
    also mount an empty v2 hierarchy at /sys/fs/cgroup/unified.
  - v2: the v2 hierarchy even on a hybrid host (its `unified` mount): device control by
    eBPF, as on a v2 host, but no memory or pids limits there (v1 owns those controllers).
  - v1, or none: no cgroups at all (limits refused; see device_control).
A v1 group is the same name under each controller's hierarchy; a v2 group is one directory.

The device allowlist (plan.devices) is enforced by the v1 `devices` controller or by an eBPF
program attached to the v2 group. Where neither exists, device_control() says so and the
caller drops CAP_MKNOD instead (the rootfs is always mounted nodev).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import struct
import time

from minibox import linux
from minibox.errors import InvalidSpec, MiniboxError
from minibox.plan.steps import CgroupCreate, DeviceFilter, RemovePath, Step
from minibox.value import Value

ROOT = "/sys/fs/cgroup"
CGROUP2_SUPER_MAGIC = 0x63677270
# freezer: `cp` freezes a running container while it copies (v2 has a freezer in every group)
V1_CONTROLLERS = ("memory", "pids", "cpu", "devices", "freezer")
MODES = ("auto", "v1", "v2", "none")
EXTRA_V1 = ("cpuset", "blkio")  # joined only by containers run with --cpuset-* or --blkio-weight


class Layout(Value):
    version: str  # "v1", "v2" or "none"
    root: str  # v1: the directory holding one hierarchy per controller; v2: the cgroup2 mount


def is_cgroup2(path: str) -> bool:
    try:
        return linux.statfs_type(path) == CGROUP2_SUPER_MAGIC
    except OSError:
        return False


def layout(root: str = ROOT) -> Layout:
    mode = os.environ.get("MINIBOX_CGROUP", "auto") or "auto"
    if mode not in MODES:
        raise InvalidSpec(f'MINIBOX_CGROUP="{mode}" is not one of {", ".join(MODES)}')
    if mode == "none":
        return Layout("none", "")
    if is_cgroup2(root):
        return Layout("v2", root)
    if mode == "v2":
        if is_cgroup2(f"{root}/unified"):
            return Layout("v2", f"{root}/unified")
        raise MiniboxError(f"MINIBOX_CGROUP=v2, but no cgroup2 hierarchy is mounted at {root} or {root}/unified")
    if any(os.path.isdir(f"{root}/{c}") for c in V1_CONTROLLERS):
        return Layout("v1", root)
    return Layout("none", "")


def available(kind: str) -> str:
    """The host's CPUs or memory nodes ("cpus", "mems") as a cpuset list ("0-1"): what a
    container's cpuset may name."""
    path = "/sys/devices/system/cpu/online" if kind == "cpus" else "/sys/devices/system/node/online"
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return "0" if kind == "mems" else ""  # no NUMA nodes listed: one node


def has_io_weight(lay: Layout | None = None) -> bool:
    """Can a group's I/O weight be set here? It needs the BFQ scheduler (or CFQ's v1
    blkio.weight); without it Docker warns and discards --blkio-weight."""
    import glob

    lay = lay or layout()
    if lay.version == "v1" and os.path.exists(f"{lay.root}/blkio/blkio.weight"):
        return True
    if lay.version == "none" or (lay.version == "v1" and not os.path.isdir(f"{lay.root}/blkio")):
        return False
    for path in glob.glob("/sys/block/*/queue/scheduler"):
        with contextlib.suppress(OSError), open(path) as f:
            if "[bfq]" in f.read():
                return True
    return False


def all_roots(root: str = ROOT) -> list[str]:
    """Every directory that may hold minibox's parent group, whatever the mode: for gc and leak checks."""
    return [root, f"{root}/unified"] + [f"{root}/{c}" for c in V1_CONTROLLERS + EXTRA_V1]


def group_dirs(parent: str, cid: str, lay: Layout | None = None, extra: tuple[str, ...] = ()) -> list[str]:
    """Every directory that makes up container `cid`'s cgroup (existing controllers only;
    `extra`: v1 controllers it needs beyond the usual ones)."""
    return dirs_of(f"/{parent}/{cid}", lay, V1_CONTROLLERS + extra)


def dirs_of(path: str, lay: Layout | None = None, controllers: tuple[str, ...] = V1_CONTROLLERS) -> list[str]:
    """The directories that make up the group at `path` (like /minibox/ID): one on v2, one
    per existing v1 controller of `controllers`; none without cgroups."""
    lay = lay or layout()
    if lay.version == "v2":
        return [f"{lay.root}{path}"]
    if lay.version == "v1":
        return [f"{lay.root}/{c}{path}" for c in controllers if os.path.isdir(f"{lay.root}/{c}")]
    return []


def existing_dirs(parent: str, cid: str) -> list[str]:
    """The groups container `cid` has, wherever they are: found on the kernel's side, so
    exec, release and gc agree with the run that made them whatever MINIBOX_CGROUP says now."""
    return [d for d in (f"{r}/{parent}/{cid}" for r in all_roots()) if os.path.isdir(d)]


def device_control(lay: Layout | None = None) -> str:
    """How the device allowlist is enforced here: "v1 devices controller", "v2 eBPF", or ""."""
    lay = lay or layout()
    if lay.version == "v1" and os.path.isdir(f"{lay.root}/devices"):
        return "v1 devices controller"
    if lay.version == "v2":
        return "v2 eBPF"
    return ""


def controllers(lay: Layout) -> set[str]:
    """The controllers a container's group can have here: v1's mounted hierarchies, or what
    the v2 root offers (cgroup.controllers; a hybrid host's v1 keeps most of them)."""
    if lay.version == "v1":
        return {c for c in V1_CONTROLLERS + EXTRA_V1 if os.path.isdir(f"{lay.root}/{c}")}
    if lay.version == "v2":
        with contextlib.suppress(OSError), open(f"{lay.root}/cgroup.controllers") as f:
            return set(f.read().split())
    return set()


def check_limits(lay: Layout, asked: dict[str, str]) -> None:
    """`asked`: controller -> the flags that need it. A limit no controller enforces would
    let the container run without the bound its user asked for: refused, in one line."""
    if lay.version == "none" and asked:
        raise InvalidSpec(f"{' and '.join(asked.values())} need cgroups, and this host has none that minibox can "
                          "use (or MINIBOX_CGROUP=none)")
    have = controllers(lay)
    for ctl, flags in asked.items():
        if ctl not in have:
            raise InvalidSpec(f"{flags}: this host's cgroup {lay.version} hierarchy has no {ctl} controller for "
                              f"containers (it has: {', '.join(sorted(have)) or 'none'}); run without it")


def create(steps: list[Step]) -> None:
    creates = [s for s in steps if isinstance(s, CgroupCreate)]
    for step in creates:
        _make_parents(step.path)
        os.makedirs(step.path, exist_ok=True)
        _fill_cpuset(step.path)
        for name, value in step.limits:
            if name == "blkio.bfq.weight" and not os.path.exists(f"{step.path}/{name}"):
                name = "blkio.weight"  # CFQ's, on kernels that still have it
            try:
                with open(f"{step.path}/{name}", "w") as f:
                    f.write(value)
            except (FileNotFoundError, PermissionError):  # v2 refuses to make a file it lacks: EACCES
                if os.path.exists(f"{step.path}/{name}"):
                    raise
                raise MiniboxError(f"cannot set {name} in {step.path}: this cgroup hierarchy has no such file "
                                   "(its controller is not available here)") from None
    for step in steps:
        if isinstance(step, DeviceFilter):
            attach_device_filter(step.path, step.program)


def _fill_cpuset(path: str) -> None:
    """A new v1 cpuset group starts with empty cpus and mems, and refuses tasks (ENOSPC)
    until both are set: copy them down from the nearest ancestor that has them."""
    if not os.path.exists(f"{path}/cpuset.cpus"):
        return
    chain = [path]
    while os.path.exists(f"{os.path.dirname(chain[-1])}/cpuset.cpus"):
        chain.append(os.path.dirname(chain[-1]))
    for child, parent in reversed(list(zip(chain, chain[1:]))):
        for name in ("cpuset.cpus", "cpuset.mems"):
            with open(f"{child}/{name}") as f:
                if f.read().strip():
                    continue
            with open(f"{parent}/{name}") as f, open(f"{child}/{name}", "w") as g:
                g.write(f.read().strip())


def _make_parents(path: str) -> None:
    """v2 only hands a controller to children whose parent enabled it, level by level."""
    parent = os.path.dirname(path)
    if os.path.isdir(parent) or not is_cgroup2(os.path.dirname(parent)):
        os.makedirs(parent, exist_ok=True)
        return
    try:
        with open(f"{os.path.dirname(parent)}/cgroup.controllers") as f:
            available = set(f.read().split())
        wanted = " ".join(f"+{c}" for c in ("memory", "pids", "cpu", "cpuset", "io") if c in available)
        if wanted:
            with open(f"{os.path.dirname(parent)}/cgroup.subtree_control", "w") as f:
                f.write(wanted)
    except OSError:
        pass  # a controller we cannot enable just means no limit of that kind
    os.makedirs(parent, exist_ok=True)


BPF_PROG_LOAD, BPF_PROG_ATTACH = 5, 8
BPF_PROG_TYPE_CGROUP_DEVICE, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI = 15, 6, 2


def attach_device_filter(path: str, program: bytes) -> None:
    """Load `program` as a BPF_PROG_TYPE_CGROUP_DEVICE program and attach it to cgroup `path`.
    The attachment keeps the program alive; it goes away with the cgroup."""
    insns = ctypes.create_string_buffer(program, len(program))
    license = ctypes.create_string_buffer(b"Apache-2.0")
    log = ctypes.create_string_buffer(4096)

    def load(log_level: int) -> int:
        attr = struct.pack("<IIQQIIQII16sII", BPF_PROG_TYPE_CGROUP_DEVICE, len(program) // 8,
                           ctypes.addressof(insns), ctypes.addressof(license), log_level,
                           len(log) if log_level else 0, ctypes.addressof(log) if log_level else 0,
                           0, 0, b"minibox_devices", 0, BPF_CGROUP_DEVICE)
        return linux.bpf(BPF_PROG_LOAD, attr)

    try:
        prog = load(0)
    except OSError as e:
        detail = ""
        try:
            load(1)
        except OSError:
            detail = log.value.decode(errors="replace").strip().splitlines()[-1:] or ""
        raise MiniboxError(f"loading the device allowlist (eBPF) failed: {e.strerror} {detail}".strip()) from None
    cg = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        linux.bpf(BPF_PROG_ATTACH, struct.pack("<IIIII", cg, prog, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI, 0))
    except OSError as e:
        raise MiniboxError(f"attaching the device allowlist to {path} failed: {e.strerror}") from None
    finally:
        os.close(cg)
        os.close(prog)


def join(dirs: list[str] | tuple[str, ...], pid: int) -> None:
    """Move `pid` (0: the calling process) into each group. On v1 the first such write in
    a process waits for an RCU grace period (8-14 ms measured): PID 1 makes it for itself,
    while the CLI sets up the network."""
    for d in dirs:
        try:
            with open(f"{d}/cgroup.procs", "w") as f:
                f.write(str(pid))
        except OSError as e:
            raise MiniboxError(f"cannot move process {pid} into cgroup {d}: {e.strerror}") from None


def procs(dirs: list[str] | tuple[str, ...]) -> set[int]:
    """Every process in the groups (a way to find a container's processes with no record)."""
    out: set[int] = set()
    for d in dirs:
        try:
            with open(f"{d}/cgroup.procs") as f:
                out |= {int(x) for x in f.read().split()}
        except OSError:
            continue
    return out


FROZEN_V1, FROZEN_V2 = ("freezer.state", "FROZEN"), ("cgroup.events", "frozen 1")  # (file, its line when frozen)


def frozen(dirs: list[str] | tuple[str, ...]) -> bool:
    """Whether the group is frozen: v1's freezer.state says FROZEN, v2's cgroup.events `frozen 1`."""
    for d in dirs:
        for name, line in (FROZEN_V1, FROZEN_V2):
            try:
                with open(os.path.join(d, name)) as f:
                    if line in f.read().splitlines():
                        return True
            except OSError:
                continue
    return False


_freezers: list[tuple[str, str, str]] | None = None  # (hierarchy, file, frozen line): found once


def freezer_of(parent: str, cid: str) -> tuple[str, str]:
    """Where the group says whether it is frozen, as frozen() reads it: (its file, the line
    it holds when frozen) in the hierarchy where this host has a freezer and the group is
    (v1's freezer controller, a v2 or hybrid unified tree: looked for once), or ("", "").
    `ps` keeps it per container (engine.listing), to read that one file."""
    global _freezers
    if _freezers is None:
        _freezers = [(root, *how) for root, here, how in (
            (f"{ROOT}/freezer", os.path.isdir(f"{ROOT}/freezer"), FROZEN_V1),
            (ROOT, is_cgroup2(ROOT), FROZEN_V2), (f"{ROOT}/unified", is_cgroup2(f"{ROOT}/unified"), FROZEN_V2)) if here]
    for root, name, line in _freezers:
        if os.path.exists(f"{root}/{parent}/{cid}/{name}"):
            return f"{root}/{parent}/{cid}/{name}", line
    return "", ""


def freezer_file(dirs: list[str] | tuple[str, ...]) -> str:
    """The file that freezes the group (v1 freezer.state, v2 cgroup.freeze), "" if it has none."""
    for d in dirs:
        for name in ("freezer.state", "cgroup.freeze"):
            if os.path.exists(os.path.join(d, name)):
                return os.path.join(d, name)
    return ""


def freeze(dirs: list[str] | tuple[str, ...], on: bool) -> None:
    """Freeze (or thaw) every process of the group, and wait until the kernel says it is
    frozen: v1 passes through FREEZING, v2 sets `frozen 1` in cgroup.events once done."""
    path = freezer_file(dirs)
    if not path:
        raise MiniboxError("this host has no freezer for the container's cgroup (v1 freezer or cgroup v2)")
    v1 = path.endswith("freezer.state")
    with open(path, "w") as f:
        f.write(("FROZEN" if on else "THAWED") if v1 else ("1" if on else "0"))
    deadline = time.monotonic() + 5
    while on and not frozen(dirs):
        if time.monotonic() > deadline:
            raise MiniboxError(f"the container's processes did not freeze within 5 s ({path})")
        time.sleep(0.002)


@contextlib.contextmanager
def held_frozen(dirs: list[str] | tuple[str, ...]):
    """Freeze the group for the `with` block; thaw it on every way out, the caller's kill -9
    included. A guard process does both: it freezes, then blocks reading a pipe whose write
    end only the caller (and the caller's children) hold, and thaws when the last of them
    is gone, however it went. It ignores Ctrl-C and hang-ups, which are the caller's."""
    r, w = os.pipe()
    said_r, said_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _guard(dirs, r, w, said_r, said_w)  # never returns
    os.close(r)
    os.close(said_w)
    try:
        with os.fdopen(said_r, "rb") as f:
            said = f.read().decode(errors="replace")
        if said != "+":
            raise MiniboxError(f"cannot freeze the container: {said or 'its guard ended'}")
        yield
    finally:
        os.close(w)
        os.waitpid(pid, 0)  # thawed once it has returned


def _guard(dirs, r: int, w: int, said_r: int, said_w: int) -> None:
    try:
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP):
            signal.signal(sig, signal.SIG_IGN)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)  # the caller's pipes reach EOF when the caller is done
        os.close(w)
        os.close(said_r)
        try:
            freeze(dirs, True)
            os.write(said_w, b"+")
        except (OSError, MiniboxError) as e:
            os.write(said_w, str(e).encode())
        os.close(said_w)
        while os.read(r, 1):
            pass  # nothing is ever written: EOF, every write end closed, is the signal
    finally:
        try:
            freeze(dirs, False)
        finally:
            os._exit(0)


def remove(dirs: list[str], own_parent: str = "") -> tuple[list[RemovePath], list[str]]:
    """rmdir every group: (steps done, errors), never raising, so teardown can go on. A
    parent group named `own_parent` (minibox's) goes too once empty; any other parent (an
    engine's, given as an OCI cgroupsPath) stays, empty or not."""
    errors, steps = [], []
    for d in dirs:
        for attempt in range(50):
            try:
                os.rmdir(d)
                steps.append(RemovePath(d, "dir", why="the container's cgroup, empty now"))
                if own_parent and os.path.basename(os.path.dirname(d)) == own_parent.strip("/"):
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
