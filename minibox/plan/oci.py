"""A container's runtime spec (config.json's shape, runtime-spec 1.x) as the one plan minibox applies: an engine's bundle, or what `minibox run` built.

    config.json field                 step(s)
    linux.namespaces[] (new)          Unshare                     (path: JoinNamespace)
    linux.uidMappings/gidMappings     IdMap
    linux.cgroupsPath, resources      CgroupCreate (+ DeviceFilter on cgroup v2)
    root.path, mounts[], devices,     (plan.ocifs) Mount, MakeDir, MakeNode, Symlink, Sysctl,
      sysctl, masks, root.readonly      MaskPath, ReadonlyPath, PivotRoot
    a new network namespace           LinkUp lo (as runc brings it up)
    hostname                          SetHostname
    hooks.createContainer             RunHook (in the container's namespaces, before pivot_root)
    (create/start split)              WaitStart
    hooks.startContainer              RunHook (inside, after start)
    process.oomScoreAdj, rlimits      OomScoreAdj, SetRlimit
    process.user                      SetUser
    process.capabilities, noNewPriv.  SetCapabilities
    linux.seccomp                     LoadSeccomp (compiled by the runtime layer)
    process.args/env/cwd              Exec

Every step's `why` starts with the field it came from (or, for `run`, says what the flag
asked for), so `--explain` prints config.json as the kernel got it. `minibox run` adds
what no runtime spec holds (plan.run): its files, its network and firewall, its veth.
Pure: the parsed document and a few facts in.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from minibox.errors import InvalidSpec
from minibox.model import ContainerRecord
from minibox.plan import ociresources
from minibox.plan.ocifs import _list, plan_rootfs
from minibox.plan.procsteps import CAP_NUMBERS
from minibox.plan.steps import (
    PID,
    Exec,
    IdMap,
    JoinNamespace,
    LinkUp,
    LoadSeccomp,
    OomScoreAdj,
    PivotRoot,
    RunHook,
    SetCapabilities,
    SetHostname,
    SetRlimit,
    SetUser,
    Step,
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

def check_version(doc: dict) -> str:
    version = doc.get("ociVersion")
    if not isinstance(version, str) or not version.startswith(VERSIONS):
        raise InvalidSpec(f'unsupported ociVersion "{version}" in config.json: this runtime reads 1.0.x to 1.3.x')
    return version


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
    """What the runtime read (or reserved) before planning."""

    id: str
    bundle: str  # absolute: root.path and bind sources are relative to it
    state_dir: str  # this container's directory under --root (its exec.fifo)
    cgroup_dirs: tuple[str, ...]  # where cgroupsPath is, per hierarchy
    cgroup_v2: bool
    seccomp: LoadSeccomp | None = None  # linux.seccomp compiled (why: "early" without noNewPrivileges)
    prepare: tuple[Step, ...] = ()  # what makes root.path (`run`: the image's overlay); an engine made it already
    wait_start: bool = True  # the create/start split in PID 1 (`run`: only for `minibox create`)


class Plan(Value):
    """The one plan: every step of a container's creation, in the order applied. minibox-oci
    fills what config.json gives; `run` adds its record, files, network and endpoint."""

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
    spec: dict | None = None  # the runtime spec it was made from (what exec reads back)
    record: ContainerRecord | None = None  # `run`: the container's record
    files: tuple[Step, ...] = ()  # `run`: its directories and /etc files, on the host
    network: tuple[Step, ...] = ()  # `run`: its bridge and sysctls, and the firewall transaction
    endpoint: tuple[Step, ...] = ()  # `run`: the veth pair into PID 1's network namespace; conntrack

    def steps(self) -> list[Step]:
        hooks_before = [*self.hooks.get("prestart", ()), *self.hooks.get("createRuntime", ())]
        return [*self.files, *self.network, *self.join, self.unshare, *([self.idmap] if self.idmap else []),
                *self.cgroups, *hooks_before, *self.endpoint, *self.init]

    @property
    def cgroup_dirs(self) -> list[str]:
        return [s.path for s in self.cgroups if type(s).__name__ == "CgroupCreate"]


def seccomp_timing(step: LoadSeccomp | None, no_new_privs: bool) -> LoadSeccomp | None:
    """Without no_new_privs the kernel loads a filter only for a process holding
    CAP_SYS_ADMIN: "early", before the capabilities go (runc's order too); with it, last."""
    if step is None or step.why.startswith("early") == (not no_new_privs):
        return step
    return step._replace(why=("early: " if not no_new_privs else "") + step.why.removeprefix("early: "))


def plan(doc: dict, facts: Facts) -> Plan:
    """The whole of `create` for this runtime spec, in the order it is applied."""
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
    all_hooks = hooks(doc)
    # Without a mount namespace of its own (or joined) the container shares the host's
    # mounts: nothing is mounted (runc would mount on the host's), and it chroots into its
    # root, as runc does, since pivot_root would move the host's.
    init = plan_rootfs(doc, rootfs, facts.bundle, facts.cgroup_dirs, facts.cgroup_v2, facts.prepare,
                       all_hooks["createContainer"]) if "mount" in kinds else \
        [PivotRoot(rootfs, chroot=True, why="root.path, and no mount namespace: chroot into it, as runc does")]
    if doc.get("hostname") or doc.get("domainname"):
        if "uts" not in kinds:
            raise InvalidSpec("config.json: hostname is set, but linux.namespaces has no uts namespace to set it in")
        init.append(SetHostname(str(doc.get("hostname") or ""), why="hostname: the UTS namespace's own",
                                domainname=str(doc.get("domainname") or "")))
    if "net" in new:
        init.append(LinkUp("lo", netns=PID, why="(a new network namespace): lo starts down; runc brings it up"))
    process_steps = plan_process(process, linux, facts.seccomp)
    # What runc's parent sets during create, so that create fails if the kernel refuses it
    # (a runtime without CAP_SYS_RESOURCE may not lower oom_score_adj): not PID 1 at start.
    early = [s for s in process_steps if isinstance(s, (OomScoreAdj, SetRlimit))]
    init += early
    if facts.wait_start:
        init.append(WaitStart(f"{facts.state_dir}/exec.fifo",
                              why="(create/start): PID 1 waits, its command not yet run, until `start`"))
    init += all_hooks["startContainer"]
    init += [s for s in process_steps if s not in early]
    size = process.get("consoleSize") or {}
    return Plan(
        id=facts.id, bundle=facts.bundle, rootfs=rootfs, terminal=bool(process.get("terminal")),
        unshare=Unshare(tuple(new), why="linux.namespaces: the new ones " + ", ".join(new)),
        join=join, idmap=id_map(linux) if "user" in new else None,
        cgroups=tuple(ociresources.plan_cgroups(linux, facts.cgroup_dirs, facts.cgroup_v2)), init=tuple(init),
        hooks=all_hooks, console_size=(int(size.get("height", 0)), int(size.get("width", 0))), spec=doc)


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
