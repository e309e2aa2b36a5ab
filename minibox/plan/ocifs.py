"""The filesystem half of a config.json as steps: root.path and its propagation, mounts[], devices, sysctls, masks, pivot_root.

    root.path (+ rootfsPropagation)   Mount (propagation), Mount (the root bound onto itself)
    mounts[]                          Mount (in order: type, source, flags, data), MakeDir
    linux.devices[] + the defaults    MakeNode, Symlink (/dev/fd, /dev/ptmx, ...)
    linux.sysctl                      Sysctl (written inside, before /proc/sys goes read-only)
    linux.maskedPaths/readonlyPaths   MaskPath, ReadonlyPath
    process.cwd                       MakeDir (if the root lacks it)
    root (pivot), root.readonly       PivotRoot, Mount (remount read-only)

`minibox run` builds its container's config.json (plan.run) and gets its filesystem here
too; two things only `run` asks for, as an engine's own work before a runtime: the
`prepare` steps that make root.path (the image's overlay), and a mount's option word
`copyup` (a new volume gets the image's content at its target, as Docker's daemon does).
A mount may carry a "why" of its own, for the lesson `--explain` prints. Pure.
"""

from __future__ import annotations

import posixpath

from minibox.errors import InvalidSpec
from minibox.plan.mounts import DEV_SYMLINKS, DEVICES
from minibox.plan.steps import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SHARED,
    MS_SLAVE,
    MS_UNBINDABLE,
    CopyUp,
    MakeDir,
    MakeNode,
    MaskPath,
    Mount,
    PivotRoot,
    ReadonlyPath,
    Step,
    Symlink,
    Sysctl,
)
from minibox.value import Value

MS_SYNCHRONOUS, MS_MANDLOCK, MS_DIRSYNC, MS_NOATIME, MS_NODIRATIME = 16, 64, 128, 1024, 2048
MS_RELATIME, MS_STRICTATIME = 1 << 21, 1 << 24
# mount(8)'s option words, as runc reads them: (clear, set) for flags...
FLAGS = {"ro": (0, MS_RDONLY), "rw": (MS_RDONLY, 0), "nosuid": (0, MS_NOSUID), "suid": (MS_NOSUID, 0),
         "nodev": (0, MS_NODEV), "dev": (MS_NODEV, 0), "noexec": (0, MS_NOEXEC), "exec": (MS_NOEXEC, 0),
         "sync": (0, MS_SYNCHRONOUS), "async": (MS_SYNCHRONOUS, 0), "dirsync": (0, MS_DIRSYNC),
         "remount": (0, MS_REMOUNT), "mand": (0, MS_MANDLOCK), "nomand": (MS_MANDLOCK, 0),
         "atime": (MS_NOATIME, 0), "noatime": (0, MS_NOATIME), "diratime": (MS_NODIRATIME, 0),
         "nodiratime": (0, MS_NODIRATIME), "bind": (0, MS_BIND), "rbind": (0, MS_BIND | MS_REC),
         "relatime": (0, MS_RELATIME), "norelatime": (MS_RELATIME, 0), "strictatime": (0, MS_STRICTATIME),
         "nostrictatime": (MS_STRICTATIME, 0)}
# ...and for propagation, which takes a mount call of its own.
PROPAGATION = {"private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "shared": MS_SHARED,
               "rshared": MS_SHARED | MS_REC, "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
               "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC}


class MountOptions(Value):
    flags: int
    propagation: int
    data: str


def mount_options(options: list[str] | tuple[str, ...]) -> MountOptions:
    """A mount's option words split as mount(2) takes them: flags, propagation, and the
    filesystem's own options (mode=755, size=64k, ...) passed on as data."""
    flags = prop = 0
    data = []
    for opt in options or ():
        if opt in FLAGS:
            clear, set_ = FLAGS[opt]
            flags = (flags & ~clear) | set_
        elif opt in PROPAGATION:
            prop |= PROPAGATION[opt]
        elif opt in ("defaults", "tmpcopyup", "idmap", "ridmap", "copyup"):
            continue  # nothing for mount(2) (tmpcopyup, idmap: not supported here, and harmless without)
        else:
            data.append(opt)
    return MountOptions(flags, prop, ",".join(data))


def _list(doc: dict, key: str, where: str) -> list:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidSpec(f"config.json: {where}{key} must be a list")
    return value


def plan_rootfs(doc: dict, rootfs: str, bundle: str, cgroup_dirs: tuple[str, ...], cgroup_v2: bool,
                prepare: tuple[Step, ...] = (), create_hooks: tuple[Step, ...] = ()) -> list[Step]:
    """Everything before (and including) pivot_root, and the root's own flags after it."""
    linux = doc.get("linux") or {}
    root = doc.get("root") or {}
    prop = linux.get("rootfsPropagation") or ""
    if prop and prop not in PROPAGATION:
        raise InvalidSpec(f'config.json: linux.rootfsPropagation "{prop}" is not one of {", ".join(PROPAGATION)}')
    steps: list[Step] = [
        Mount("none", "/", flags=PROPAGATION[prop] if prop else MS_REC | MS_SLAVE,
              why=f"linux.rootfsPropagation: {prop}" if prop else
              "(runtime): rslave, as runc: the host's unmounts reach the container, nothing goes back"),
        *prepare,
        Mount(rootfs, rootfs, flags=MS_BIND | MS_REC,
              why=f"root.path: {rootfs} bound onto itself, so that it is a mount pivot_root can use"),
    ]
    cgroupns = any(isinstance(n, dict) and n.get("type") == "cgroup" and not n.get("path")
                   for n in _list(linux, "namespaces", "linux."))
    for i, m in enumerate(_list(doc, "mounts", "")):
        steps += plan_mount(i, m, rootfs, bundle, cgroup_dirs, cgroup_v2, cgroupns)
    steps += plan_devices(linux, rootfs, bool((doc.get("process") or {}).get("terminal")))
    for key, value in sorted((linux.get("sysctl") or {}).items()):
        steps.append(Sysctl(key, str(value), why=f"linux.sysctl: {key}, in the container's own namespaces"))
    for p in linux.get("maskedPaths") or ():
        steps.append(MaskPath(f"{rootfs}{_abs(p)}", why=f"linux.maskedPaths: {p}"))
    for p in linux.get("readonlyPaths") or ():
        steps.append(ReadonlyPath(f"{rootfs}{_abs(p)}", why=f"linux.readonlyPaths: {p}"))
    cwd = posixpath.normpath((doc.get("process") or {}).get("cwd") or "/")
    if cwd != "/":
        steps.append(MakeDir(f"{rootfs}{cwd}", why="process.cwd: made if the rootfs lacks it, as runc does"))
    steps += create_hooks
    steps.append(PivotRoot(rootfs, why="root.path: the new '/'; the host's old root detached"))
    if prop:
        steps.append(Mount("none", "/", flags=PROPAGATION[prop], why=f"linux.rootfsPropagation: {prop}, on the "
                                                                     "new root"))
    if root.get("readonly"):
        steps.append(Mount("/", "/", flags=MS_BIND | MS_REMOUNT | MS_RDONLY,
                           why="root.readonly: the root itself read-only (after pivot_root)"))
    return steps


def _abs(path: str) -> str:
    return posixpath.normpath("/" + str(path).lstrip("/"))  # (normpath keeps a leading "//")


def plan_mount(i: int, m: dict, rootfs: str, bundle: str, cgroup_dirs: tuple[str, ...] = (),
               cgroup_v2: bool = False, cgroupns: bool = False) -> list[Step]:
    where = f"mounts[{i}]"
    if not isinstance(m, dict) or not str(m.get("destination", "")).startswith("/"):
        raise InvalidSpec(f"config.json: {where}.destination must be an absolute path")
    dest = posixpath.normpath(m["destination"])
    target = f"{rootfs}{dest}" if dest != "/" else rootfs
    opts = mount_options(m.get("options") or ())
    kind = m.get("type") or ""
    source = m.get("source") or kind or "none"
    why = str(m.get("why") or f"{where}: {kind or 'bind'} {m.get('source', '')} at {dest}")
    steps: list[Step] = []
    if opts.flags & MS_BIND:
        if not source.startswith("/"):
            source = posixpath.normpath(posixpath.join(bundle, source))
        if "copyup" in (m.get("options") or ()):
            steps.append(CopyUp(target, source, why="a new volume gets what the image has at its target"))
        steps.append(Mount(source, target, "", opts.flags & (MS_BIND | MS_REC), "", why=why))
        extra = opts.flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
        if extra:
            steps.append(Mount(source, target, "", MS_BIND | MS_REMOUNT | extra, "",
                               why=f"{where}: its options {','.join(m.get('options') or ())} (a bind takes them "
                                   "in a remount)"))
    elif kind == "cgroup" and not cgroup_v2:
        steps += _cgroup_v1_mount(target, opts, cgroup_dirs, why)
    elif kind == "cgroup" and (cgroupns or not cgroup_dirs):
        steps.append(Mount(source, target, "cgroup2", opts.flags & ~MS_REMOUNT, opts.data,
                           why=why + (" (cgroup v2: one hierarchy, whose root the cgroup namespace makes the "
                                      "container's own group)" if cgroupns else " (cgroup v2)")))
    elif kind == "cgroup":  # v2 without a cgroup namespace: its own group bound there, as runc does
        steps.append(Mount(cgroup_dirs[0], target, "", MS_BIND, why=why + " (cgroup v2: the container's group, "
                                                                           "bound: no cgroup namespace)"))
        if opts.flags & ~MS_REMOUNT & ~MS_BIND:
            steps.append(Mount(cgroup_dirs[0], target, "", MS_BIND | MS_REMOUNT | (opts.flags & ~MS_REMOUNT), why=""))
    else:
        steps.append(Mount(source, target, kind, opts.flags & ~MS_REMOUNT, opts.data, why=why))
    if opts.propagation:
        steps.append(Mount("none", target, "", opts.propagation, why=f"{where}: propagation"))
    return steps


def _cgroup_v1_mount(target: str, opts: MountOptions, cgroup_dirs: tuple[str, ...], why: str) -> list[Step]:
    """cgroup v1 has no one filesystem to mount: a tmpfs, and in it each hierarchy's group of
    this container bound at its controller's name, as runc does."""
    steps: list[Step] = [Mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755",
                               why=why + " (cgroup v1: a tmpfs holding one bind per hierarchy)")]
    for d in cgroup_dirs:
        controller = d.split("/sys/fs/cgroup/", 1)[-1].split("/", 1)[0]
        steps.append(MakeDir(f"{target}/{controller}", why=""))
        steps.append(Mount(d, f"{target}/{controller}", "", MS_BIND, why=f"the container's {controller} group"))
        if opts.flags & MS_RDONLY:
            steps.append(Mount(d, f"{target}/{controller}", "", MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID |
                               MS_NODEV | MS_NOEXEC, why=""))
    if opts.flags & MS_RDONLY:
        steps.append(Mount("tmpfs", target, "", MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                           why=why + " read-only"))
    return steps


def plan_devices(linux: dict, rootfs: str, terminal: bool) -> list[Step]:
    """Device nodes made with mknod; in a user namespace, where mknod is refused, the
    host's node of the same path bound over an empty file instead, as runc does."""
    steps: list[Step] = []
    given = set()
    userns = any(isinstance(n, dict) and n.get("type") == "user" for n in linux.get("namespaces") or ())

    def node(path: str, major: int, minor: int, mode: int, why: str, **kw) -> Step:
        if userns:
            return Mount(path, f"{rootfs}{path}", flags=MS_BIND, why=f"{why} (the host's, bound: no mknod in a "
                                                                     "user namespace)")
        return MakeNode(f"{rootfs}{path}", major, minor, mode, why=why, **kw)

    for i, d in enumerate(_list(linux, "devices", "linux.")):
        path = d.get("path", "")
        kind = d.get("type")
        if not str(path).startswith("/dev/") or kind not in ("c", "b", "u", "p"):
            raise InvalidSpec(f"config.json: linux.devices[{i}] needs a path under /dev and a type c, b, u or p")
        given.add(path)
        if path == "/dev/ptmx":
            continue  # runc makes it the symlink below whatever the config says (containerd lists it, privileged)
        steps.append(node(path, int(d.get("major", 0)), int(d.get("minor", 0)), int(d.get("fileMode", 0o666)) & 0o7777,
                          f"linux.devices[{i}]: {path}", kind="c" if kind == "u" else kind, uid=int(d.get("uid", 0)),
                          gid=int(d.get("gid", 0))))
    for name, major, minor in DEVICES:
        if f"/dev/{name}" not in given:
            steps.append(node(f"/dev/{name}", major, minor, 0o666, f"(runtime-spec's default devices): /dev/{name}"))
    for target, name in DEV_SYMLINKS:
        if name == "ptmx" or f"/dev/{name}" not in given:  # a path the config names is not made again
            steps.append(Symlink(target, f"{rootfs}/dev/{name}", why=f"(default symlinks): /dev/{name}"))
    if terminal and not userns and "/dev/console" not in given:  # in a user namespace the pty is bound over nothing: there is no console node
        steps.append(MakeNode(f"{rootfs}/dev/console", 5, 1, 0o620, why="process.terminal: /dev/console"))
    return steps
