"""A bundle's config.json (runtime-spec 1.x) as minibox's plan: the steps `minibox run` applies, from an engine's input.

    config.json field                 step(s)
    linux.namespaces[] (new)          Unshare                     (path: JoinNamespace)
    linux.uidMappings/gidMappings     IdMap
    linux.cgroupsPath, resources      CgroupCreate (+ DeviceFilter on cgroup v2)
    root.path, mounts[]               Mount (in order: type, source, flags, data), MakeDir
    linux.devices[] + the defaults    MakeNode, Symlink (/dev/fd, /dev/ptmx, ...)
    linux.sysctl                      Sysctl (written inside, before /proc/sys goes read-only)
    linux.maskedPaths/readonlyPaths   MaskPath, ReadonlyPath
    root (pivot), root.readonly       PivotRoot, Mount (remount read-only)
    hostname                          SetHostname
    hooks.createContainer             RunHook (in the container's namespaces, before pivot_root)
    (create/start split)              WaitStart
    hooks.startContainer              RunHook (inside, after start)
    process.oomScoreAdj, rlimits      OomScoreAdj, SetRlimit
    process.user                      SetUser
    process.capabilities, noNewPriv.  SetCapabilities
    linux.seccomp                     LoadSeccomp (compiled by the runtime layer)
    process.args/env/cwd              Exec

Every step's `why` starts with the field it came from, so `minibox-oci create --explain`
prints config.json as the kernel got it. Pure: the parsed document and a few facts in.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from minibox.errors import InvalidSpec
from minibox.plan import ociresources
from minibox.plan.mounts import DEV_SYMLINKS, DEVICES
from minibox.plan.procsteps import CAP_NUMBERS
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
    Exec,
    IdMap,
    JoinNamespace,
    LoadSeccomp,
    MakeDir,
    MakeNode,
    MaskPath,
    Mount,
    OomScoreAdj,
    PivotRoot,
    ReadonlyPath,
    RunHook,
    SetCapabilities,
    SetHostname,
    SetRlimit,
    SetUser,
    Step,
    Symlink,
    Sysctl,
    Unshare,
    WaitStart,
)
from minibox.value import Value

VERSIONS = ("1.0.", "1.1.", "1.2.", "1.3.")  # the ociVersion prefixes this runtime reads
NAMESPACES = {"pid": "pid", "network": "net", "mount": "mount", "ipc": "ipc", "uts": "uts", "user": "user",
              "cgroup": "cgroup", "time": "time"}
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
RLIMITS = ("RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_LOCKS",
           "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_RSS",
           "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK")

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
        elif opt in ("defaults", "tmpcopyup", "idmap", "ridmap"):
            continue  # nothing for mount(2) (tmpcopyup, idmap: not supported here, and harmless without)
        else:
            data.append(opt)
    return MountOptions(flags, prop, ",".join(data))


def check_version(doc: dict) -> str:
    version = doc.get("ociVersion")
    if not isinstance(version, str) or not version.startswith(VERSIONS):
        raise InvalidSpec(f'unsupported ociVersion "{version}" in config.json: this runtime reads 1.0.x to 1.3.x')
    return version


def _list(doc: dict, key: str, where: str) -> list:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidSpec(f"config.json: {where}{key} must be a list")
    return value


def hooks(doc: dict) -> dict[str, tuple[RunHook, ...]]:
    out: dict[str, tuple[RunHook, ...]] = {}
    raw = doc.get("hooks") or {}
    if not isinstance(raw, dict):
        raise InvalidSpec("config.json: hooks must be an object")
    for kind in HOOK_KINDS:
        entries = []
        for i, h in enumerate(_list(raw, kind, "hooks.")):
            if not isinstance(h, dict) or not str(h.get("path", "")).startswith("/"):
                raise InvalidSpec(f"config.json: hooks.{kind}[{i}].path must be an absolute path")
            entries.append(RunHook(kind, h["path"], tuple(h.get("args") or ()), tuple(h.get("env") or ()),
                                   int(h.get("timeout") or 0), why=f"hooks.{kind}[{i}]"))
        out[kind] = tuple(entries)
    return out


def namespaces(doc: dict) -> tuple[tuple[str, ...], tuple[JoinNamespace, ...]]:
    """(new namespaces in minibox's names, joins by path)."""
    new, join, seen = [], [], set()
    for i, ns in enumerate(_list(doc.get("linux") or {}, "namespaces", "linux.")):
        kind = ns.get("type") if isinstance(ns, dict) else None
        if kind not in NAMESPACES:
            raise InvalidSpec(f'config.json: linux.namespaces[{i}].type "{kind}" is not one of '
                              f'{", ".join(NAMESPACES)}')
        if kind in seen:
            raise InvalidSpec(f'config.json: namespace "{kind}" is given twice')
        seen.add(kind)
        if ns.get("path"):
            join.append(JoinNamespace(kind, ns["path"], why=f"linux.namespaces[{i}]: join the {kind} namespace "
                                                            f"{ns['path']}"))
        else:
            new.append(NAMESPACES[kind])
    # the user namespace first, so that the others belong to it
    join.sort(key=lambda j: j.kind != "user")
    return tuple(sorted(new, key=lambda n: n != "user")), tuple(join)


def id_map(linux: dict) -> IdMap | None:
    def maps(key: str) -> tuple[tuple[int, int, int], ...]:
        out = []
        for m in _list(linux, key, "linux."):
            try:
                out.append((int(m["containerID"]), int(m["hostID"]), int(m["size"])))
            except (KeyError, TypeError, ValueError):
                raise InvalidSpec(f"config.json: linux.{key} entries need containerID, hostID and size") from None
        return tuple(out)

    uid, gid = maps("uidMappings"), maps("gidMappings")
    if not uid and not gid:
        return None
    return IdMap(uid, gid, why="linux.uidMappings, linux.gidMappings: who the user namespace's ids are on the host")


class Facts(Value):
    """What the runtime read before planning."""

    id: str
    bundle: str  # absolute
    state_dir: str  # this container's directory under --root
    cgroup_dirs: tuple[str, ...]  # where cgroupsPath is, per hierarchy
    cgroup_v2: bool
    seccomp: LoadSeccomp | None = None  # linux.seccomp compiled (why: "early" without noNewPrivileges)


class OciPlan(Value):
    id: str
    bundle: str
    rootfs: str
    terminal: bool
    unshare: Unshare
    join: tuple[JoinNamespace, ...]
    idmap: IdMap | None
    cgroups: tuple[Step, ...]
    init: tuple[Step, ...]  # PID 1's own steps, in order, ending with Exec
    hooks: dict  # kind -> tuple[RunHook, ...]
    console_size: tuple[int, int] = (0, 0)  # rows, columns

    def steps(self) -> list[Step]:
        hooks_before = [*self.hooks.get("prestart", ()), *self.hooks.get("createRuntime", ())]
        return [*self.join, self.unshare, *([self.idmap] if self.idmap else []), *self.cgroups, *hooks_before,
                *self.init]


def plan(doc: dict, facts: Facts) -> OciPlan:
    """The whole of `create` for this config.json, in the order it is applied."""
    if not isinstance(doc, dict):
        raise InvalidSpec("config.json is not a JSON object")
    check_version(doc)
    root = doc.get("root") or {}
    if not isinstance(root, dict) or not root.get("path"):
        raise InvalidSpec("config.json: root.path is missing")
    rootfs = posixpath.normpath(posixpath.join(facts.bundle, root["path"]))
    process = doc.get("process")
    if not isinstance(process, dict) or not process.get("args"):
        raise InvalidSpec("config.json: process.args is missing (create needs a process to run)")
    if not str(process.get("cwd", "/")).startswith("/"):
        raise InvalidSpec(f'config.json: process.cwd "{process.get("cwd")}" must be absolute')
    linux = doc.get("linux") or {}
    new, join = namespaces(doc)
    kinds = set(new) | {NAMESPACES[j.kind] for j in join}
    # Without a mount namespace of its own (or joined) the container shares the host's
    # filesystem, as runc does: no root to build, and pivot_root would move the host's.
    init = plan_rootfs(doc, rootfs, facts) if "mount" in kinds else []
    if doc.get("hostname"):
        if "uts" not in kinds:
            raise InvalidSpec("config.json: hostname is set, but linux.namespaces has no uts namespace to set it in")
        init.append(SetHostname(doc["hostname"], why="hostname: the UTS namespace's own"))
    process_steps = plan_process(process, linux, facts.seccomp)
    # What runc's parent sets during create, so that create fails if the kernel refuses it
    # (a runtime without CAP_SYS_RESOURCE may not lower oom_score_adj): not PID 1 at start.
    early = [s for s in process_steps if isinstance(s, (OomScoreAdj, SetRlimit))]
    init += early
    init.append(WaitStart(f"{facts.state_dir}/exec.fifo",
                          why="(create/start): PID 1 waits, its command not yet run, until `start`"))
    init += hooks(doc)["startContainer"]
    init += [s for s in process_steps if s not in early]
    size = process.get("consoleSize") or {}
    return OciPlan(
        id=facts.id, bundle=facts.bundle, rootfs=rootfs, terminal=bool(process.get("terminal")),
        unshare=Unshare(tuple(new), why="linux.namespaces: the new ones " + ", ".join(new)),
        join=join, idmap=id_map(linux) if "user" in new else None,
        cgroups=tuple(ociresources.plan_cgroups(linux, facts.cgroup_dirs, facts.cgroup_v2)), init=tuple(init), hooks=hooks(doc),
        console_size=(int(size.get("height", 0)), int(size.get("width", 0))))


def plan_rootfs(doc: dict, rootfs: str, facts: Facts) -> list[Step]:
    linux = doc.get("linux") or {}
    root = doc.get("root") or {}
    prop = linux.get("rootfsPropagation") or ""
    if prop and prop not in PROPAGATION:
        raise InvalidSpec(f'config.json: linux.rootfsPropagation "{prop}" is not one of {", ".join(PROPAGATION)}')
    steps: list[Step] = [
        Mount("none", "/", flags=PROPAGATION[prop] if prop else MS_REC | MS_SLAVE,
              why=f"linux.rootfsPropagation: {prop}" if prop else
              "(runtime): rslave, as runc: the host's unmounts reach the container, nothing goes back"),
        Mount(rootfs, rootfs, flags=MS_BIND | MS_REC,
              why=f"root.path: {rootfs} bound onto itself, so that it is a mount pivot_root can use"),
    ]
    for i, m in enumerate(_list(doc, "mounts", "")):
        steps += plan_mount(i, m, rootfs, facts)
    steps += plan_devices(linux, rootfs, bool((doc.get("process") or {}).get("terminal")))
    for key, value in sorted((linux.get("sysctl") or {}).items()):
        steps.append(Sysctl(key, str(value), why=f"linux.sysctl: {key}, in the container's own namespaces"))
    for p in linux.get("maskedPaths") or ():
        steps.append(MaskPath(f"{rootfs}{posixpath.normpath('/' + p)}", why=f"linux.maskedPaths: {p}"))
    for p in linux.get("readonlyPaths") or ():
        steps.append(ReadonlyPath(f"{rootfs}{posixpath.normpath('/' + p)}", why=f"linux.readonlyPaths: {p}"))
    cwd = posixpath.normpath((doc.get("process") or {}).get("cwd") or "/")
    if cwd != "/":
        steps.append(MakeDir(f"{rootfs}{cwd}", why="process.cwd: made if the rootfs lacks it, as runc does"))
    steps += hooks(doc)["createContainer"]
    steps.append(PivotRoot(rootfs, why="root.path: the new '/'; the host's old root detached"))
    if prop:
        steps.append(Mount("none", "/", flags=PROPAGATION[prop], why=f"linux.rootfsPropagation: {prop}, on the "
                                                                     "new root"))
    if root.get("readonly"):
        steps.append(Mount("/", "/", flags=MS_BIND | MS_REMOUNT | MS_RDONLY,
                           why="root.readonly: the root itself read-only (after pivot_root)"))
    return steps


def plan_mount(i: int, m: dict, rootfs: str, facts: Facts) -> list[Step]:
    where = f"mounts[{i}]"
    if not isinstance(m, dict) or not str(m.get("destination", "")).startswith("/"):
        raise InvalidSpec(f"config.json: {where}.destination must be an absolute path")
    dest = posixpath.normpath(m["destination"])
    target = f"{rootfs}{dest}" if dest != "/" else rootfs
    opts = mount_options(m.get("options") or ())
    kind = m.get("type") or ""
    source = m.get("source") or kind or "none"
    why = f"{where}: {kind or 'bind'} {m.get('source', '')} at {dest}"
    steps: list[Step] = []
    if opts.flags & MS_BIND:
        if not source.startswith("/"):
            source = posixpath.normpath(posixpath.join(facts.bundle, source))
        steps.append(Mount(source, target, "", opts.flags & (MS_BIND | MS_REC), "", why=why))
        extra = opts.flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
        if extra:
            steps.append(Mount(source, target, "", MS_BIND | MS_REMOUNT | extra, "",
                               why=f"{where}: its options {','.join(m.get('options') or ())} (a bind takes them "
                                   "in a remount)"))
    elif kind == "cgroup" and not facts.cgroup_v2:
        steps += _cgroup_v1_mount(target, opts, facts, why)
    else:
        steps.append(Mount(source, target, kind, opts.flags & ~MS_REMOUNT, opts.data, why=why))
    if opts.propagation:
        steps.append(Mount("none", target, "", opts.propagation, why=f"{where}: propagation"))
    return steps


def _cgroup_v1_mount(target: str, opts: MountOptions, facts: Facts, why: str) -> list[Step]:
    """cgroup v1 has no one filesystem to mount: a tmpfs, and in it each hierarchy's group of
    this container bound at its controller's name, as runc does."""
    steps: list[Step] = [Mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755",
                               why=why + " (cgroup v1: a tmpfs holding one bind per hierarchy)")]
    for d in facts.cgroup_dirs:
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


def _caps(names: Any, where: str) -> tuple[str, ...]:
    """Capability names as lower-case words ("chown"). One of the right form that this
    runtime does not know (CAP_SOMETHING_NEWER) is kept, for the caller to drop with a
    warning, as runc 1.1 ignores it; anything else is refused."""
    out = []
    for n in names or ():
        if not isinstance(n, str) or not re.fullmatch(r"CAP_[A-Z0-9_]+", n.upper()):
            raise InvalidSpec(f'config.json: {where} has "{n}", which is not a capability (they look like '
                              "CAP_CHOWN)")
        out.append(n.upper().removeprefix("CAP_").lower())
    return tuple(out)


def plan_process(process: dict, linux: dict, seccomp: LoadSeccomp | None = None) -> list[Step]:
    steps: list[Step] = []
    if seccomp is not None and seccomp.why.startswith("early"):
        steps.append(seccomp)  # without no_new_privs, loading needs CAP_SYS_ADMIN: before the caps go
    if process.get("oomScoreAdj") is not None:
        steps.append(OomScoreAdj(int(process["oomScoreAdj"]), why="process.oomScoreAdj"))
    for i, r in enumerate(process.get("rlimits") or ()):
        if r.get("type") not in RLIMITS:
            raise InvalidSpec(f'config.json: process.rlimits[{i}].type "{r.get("type")}" is not a known rlimit')
        steps.append(SetRlimit(r["type"], int(r.get("soft", 0)), int(r.get("hard", 0)),
                               why=f"process.rlimits[{i}]: {r['type']}"))
    user = process.get("user") or {}
    caps = process.get("capabilities") or {}
    steps.append(SetUser(int(user.get("uid", 0)), int(user.get("gid", 0)),
                         tuple(int(g) for g in user.get("additionalGids") or ()),
                         why="process.user: uid, gid, additionalGids"))
    sets = {k: _caps(caps.get(k), f"process.capabilities.{k}")
            for k in ("bounding", "effective", "permitted", "inheritable", "ambient")}
    steps.append(SetCapabilities(
        *(tuple(n for n in known if n in CAP_NUMBERS) for known in sets.values()),
        bool(process.get("noNewPrivileges")),
        ignored=tuple(sorted({"CAP_" + n.upper() for known in sets.values() for n in known if n not in CAP_NUMBERS})),
        why="process.capabilities, process.noNewPrivileges"))
    if seccomp is not None and not seccomp.why.startswith("early"):
        steps.append(seccomp)  # loaded right before execve
    steps.append(Exec(tuple(process["args"]), tuple(process.get("env") or ()), process.get("cwd") or "/",
                      why="process.args, env, cwd: PID 1 becomes the container's command"))
    return steps
