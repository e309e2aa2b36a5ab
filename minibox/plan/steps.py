"""Step objects: one kernel change each, applied by runtime/ or net/, and described as a shell command.

A plan is a list of steps. The effectful layers carry them out (runtime.applier applies the
mount steps, net.links the link steps, net.firewall the rule steps); `explain` prints
`step.command()` and `step.why` for the very same objects. So the lesson a learner reads
is, by construction, what the kernel got.

Everything here is pure: a step holds data and renders text. Steps are immutable values
(minibox.value: cheap to define, which every command pays for) with `why` as their last
field.
"""

from __future__ import annotations

import shlex
from typing import Union

from minibox.plan.netsteps import (  # noqa: F401 - re-exported: one place to import any step from
    AddrAdd,
    BridgeAdd,
    ConntrackFlush,
    DnsRecord,
    Firewall,
    InPlace,
    Hairpin,
    LinkDel,
    LinkUp,
    RouteAdd,
    SetMaster,
    Sysctl,
    UserlandProxy,
    VethAdd,
    in_netns,
)
from minibox.plan.procsteps import (  # noqa: F401 - re-exported too
    IdMap,
    JoinNamespace,
    OomScoreAdj,
    RunHook,
    SetCapabilities,
    SetRlimit,
    WaitStart,
)
from minibox.value import Value

# mount(2) flags (linux/mount.h); here so plans stay pure and renderable.
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_UNBINDABLE = 1 << 17
MS_SHARED = 1 << 20
MS_PROPAGATION = MS_PRIVATE | MS_SLAVE | MS_SHARED | MS_UNBINDABLE  # mount(2) flags that only change propagation

_FLAG_NAMES = ((MS_RDONLY, "ro"), (MS_NOSUID, "nosuid"), (MS_NODEV, "nodev"), (MS_NOEXEC, "noexec"))


def q(word: str) -> str:
    return shlex.quote(str(word))




# --- process and namespaces ---------------------------------------------------------


class Unshare(Value):
    namespaces: tuple[str, ...]  # "pid", "mount", "net", "uts", "ipc"
    why: str = ""

    def command(self) -> str:
        return "unshare " + " ".join(f"--{n}" for n in self.namespaces) + " --fork"


class Nsenter(Value):
    """Join a running container's namespaces (and root) from the host, as exec does."""

    pid: str
    namespaces: tuple[str, ...]  # as in /proc/PID/ns: "ipc", "uts", "net", "pid", "mnt"
    why: str = ""

    def command(self) -> str:
        flags = {"user": "--user", "ipc": "--ipc", "uts": "--uts", "net": "--net", "pid": "--pid",
                 "cgroup": "--cgroup", "mnt": "--mount"}
        return f"nsenter --target {self.pid} " + " ".join(flags[n] for n in self.namespaces) + " --root --wdns=/"


# --- filesystem ----------------------------------------------------------------------


class Mount(Value):
    source: str
    target: str
    fstype: str = ""
    flags: int = 0
    data: str = ""
    cwd: str = ""  # where relative paths in `data` start (a deep image's lowerdirs)
    why: str = ""

    def command(self) -> str:
        if self.cwd:
            return f"cd {q(self.cwd)} && " + self._replace(cwd="").command()
        if self.flags & MS_PRIVATE:
            return f"mount --make-rprivate {q(self.target)}"
        opts = [name for bit, name in _FLAG_NAMES if self.flags & bit]
        if self.flags & MS_REMOUNT:
            return f"mount -o {','.join(['remount', 'bind'] + opts)} {q(self.target)}"
        if self.flags & MS_BIND:
            rec = "--rbind" if self.flags & MS_REC else "--bind"
            return f"mount {rec} {q(self.source)} {q(self.target)}"
        if self.data:
            opts.append(self.data)
        o = f" -o {q(','.join(opts))}" if opts else ""
        return f"mount -t {self.fstype}{o} {q(self.source)} {q(self.target)}"


class MakeDir(Value):
    path: str
    mode: int = 0o755
    why: str = ""

    def command(self) -> str:
        return f"mkdir -p -m {self.mode:o} {q(self.path)}"


class WriteFile(Value):
    """A file minibox writes on the host (a container's /etc/hosts, say), whole."""

    path: str
    content: str
    if_missing: bool = False  # leave a file that is there alone (a volume's metadata)
    why: str = ""

    def command(self) -> str:
        guard = f"[ -e {q(self.path)} ] || " if self.if_missing else ""
        return f"{guard}cat > {q(self.path)} <<'EOF'\n{self.content.rstrip()}\nEOF"


class CopyUp(Value):
    """A named volume's first use: the image's content at its target copied in, if it is empty."""

    source: str  # the target, inside the container's root
    dest: str  # the volume's directory
    why: str = ""

    def command(self) -> str:
        return f'[ -n "$(ls -A {q(self.dest)})" ] || cp -a {q(self.source)}/. {q(self.dest)}/'


class SetUser(Value):
    """Become the container's user: supplementary groups, gid, uid (the capabilities go with uid 0)."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    why: str = ""

    def command(self) -> str:
        groups = f"--groups={','.join(str(g) for g in self.groups)}" if self.groups else "--clear-groups"
        return f"setpriv --reuid={self.uid} --regid={self.gid} {groups}"


class MakeNode(Value):
    path: str
    major: int
    minor: int
    mode: int = 0o666
    kind: str = "c"  # c (character), b (block) or p (FIFO)
    uid: int = 0
    gid: int = 0
    why: str = ""

    def command(self) -> str:
        nums = f" {self.major} {self.minor}" if self.kind != "p" else ""
        own = f" && chown {self.uid}:{self.gid} {q(self.path)}" if self.uid or self.gid else ""
        return f"mknod -m {self.mode:o} {q(self.path)} {self.kind}{nums}{own}"


class MaskPath(Value):
    """Hide a path the image or config names: a read-only empty tmpfs over a directory,
    /dev/null over a file (which it is is known only when applied)."""

    path: str
    why: str = ""

    def command(self) -> str:
        p = q(self.path)
        return f"if [ -d {p} ]; then mount -t tmpfs -o ro tmpfs {p}; elif [ -e {p} ]; then mount --bind /dev/null {p}; fi"


class ReadonlyPath(Value):
    path: str
    why: str = ""

    def command(self) -> str:
        p = q(self.path)
        return f"[ ! -e {p} ] || {{ mount --bind {p} {p} && mount -o remount,bind,ro,nosuid,nodev,noexec {p}; }}"


class Symlink(Value):
    target: str
    path: str
    why: str = ""

    def command(self) -> str:
        return f"ln -s {q(self.target)} {q(self.path)}"


class PivotRoot(Value):
    new_root: str
    chroot: bool = False  # no mount namespace of its own: chroot (the host's mounts stay as they are)
    why: str = ""

    def command(self) -> str:
        if self.chroot:
            return f"cd {q(self.new_root)} && chroot ."
        return f"cd {q(self.new_root)} && pivot_root . . && umount -l . && cd /"


# --- identity and privileges -----------------------------------------------------------


class SetHostname(Value):
    hostname: str
    why: str = ""
    domainname: str = ""  # the NIS domain name, set with it ("": left as it is)

    def command(self) -> str:
        return f"hostname {q(self.hostname)}" + (f" && domainname {q(self.domainname)}" if self.domainname else "")


class DropCapabilities(Value):
    keep: tuple[str, ...]  # lower-case names without CAP_, e.g. "chown"
    why: str = ""

    def command(self) -> str:
        caps = ",".join(["-all"] + [f"+{c}" for c in self.keep])
        return f"setpriv --bounding-set={caps} --inh-caps=-all --ambient-caps=-all --no-new-privs"


class LoadSeccomp(Value):
    """A seccomp filter, compiled from a profile, loaded right before execve."""

    source: str  # the profile's path, and what minibox changed in it
    rules: int  # syscall rules in the filter
    program: bytes = b""  # classic BPF, struct sock_filter[]
    why: str = ""

    def command(self) -> str:
        # No standard tool loads a seccomp filter from the shell (setpriv cannot).
        return (f": seccomp filter from {self.source}: {self.rules} rules, {len(self.program) // 8} BPF "
                "instructions, loaded with seccomp(SECCOMP_SET_MODE_FILTER) just before execve")


class Exec(Value):
    argv: tuple[str, ...]
    env: tuple[str, ...]
    workdir: str
    why: str = ""

    def command(self) -> str:
        env = " ".join(q(e) for e in self.env)
        return f"cd {q(self.workdir)} && exec env -i {env} {' '.join(q(a) for a in self.argv)}"


class RemovePath(Value):
    path: str
    kind: str = "file"  # "file", "dir" (empty) or "tree"
    why: str = ""

    def command(self) -> str:
        return {"file": "rm -f", "dir": "rmdir", "tree": "rm -rf"}[self.kind] + f" {q(self.path)}"


class Logged(Value):
    """A step another process already carried out, as it was recorded (see lifecycle.release)."""

    text: str
    why: str = ""

    def command(self) -> str:
        return self.text


class Kill(Value):
    pid: str
    signal: str = "KILL"
    why: str = ""

    def command(self) -> str:
        return f"kill -{self.signal} {self.pid}"


# --- cgroups -------------------------------------------------------------------------------


class CgroupCreate(Value):
    path: str
    limits: tuple[tuple[str, str], ...] = ()  # (file, value)
    why: str = ""

    def command(self) -> str:
        parts = [f"mkdir -p {q(self.path)}"]
        parts += [f"echo {q(v)} > {q(self.path + '/' + f)}" for f, v in self.limits]
        return " && ".join(parts)


class DeviceFilter(Value):
    """cgroup v2's device allowlist: a BPF_PROG_TYPE_CGROUP_DEVICE program on the group."""

    path: str
    allowed: tuple[str, ...]  # rules as cgroup v1 writes them: "c 1:3 rwm"
    program: bytes = b""  # eBPF instructions, 8 bytes each
    why: str = ""

    def command(self) -> str:
        # bpftool could attach a compiled object; there is no one-line shell form of a program.
        return (f": attach a BPF_PROG_TYPE_CGROUP_DEVICE program ({len(self.program) // 8} instructions) to "
                f"{q(self.path)}, allowing only: {', '.join(self.allowed)}")


class CgroupJoin(Value):
    path: str
    pid: str
    why: str = ""

    def command(self) -> str:
        return f"echo {self.pid} > {q(self.path + '/cgroup.procs')}"


class Freeze(Value):
    """Freeze (or thaw) every process of a group: v1's freezer.state, v2's cgroup.freeze."""

    path: str  # the file written
    frozen: bool
    why: str = ""

    def command(self) -> str:
        v1 = self.path.endswith("freezer.state")
        value = ("FROZEN" if self.frozen else "THAWED") if v1 else ("1" if self.frozen else "0")
        return f"echo {value} > {q(self.path)}"


class CopyFiles(Value):
    """`minibox cp`: a copy between a container's root (as /proc/PID/root) and the host."""

    source: str
    dest: str
    why: str = ""

    def command(self) -> str:
        return f"cp -a {q(self.source)} {q(self.dest)}"


# Any step; each type above is applied by the layer that owns it (runtime.applier, net.*).
Step = Union[
    Unshare, Nsenter, JoinNamespace, IdMap, Mount, MakeDir, WriteFile, CopyUp, SetUser, MakeNode, MaskPath, ReadonlyPath, SetCapabilities,
    SetRlimit, OomScoreAdj, WaitStart, RunHook, Symlink, PivotRoot, RemovePath, Kill, Logged, SetHostname,
    DropCapabilities, LoadSeccomp, Exec, CgroupCreate, DeviceFilter, CgroupJoin, Freeze, CopyFiles, BridgeAdd,
    AddrAdd, LinkUp, VethAdd, SetMaster, Hairpin, RouteAdd, LinkDel, Sysctl, Firewall, ConntrackFlush,
    DnsRecord, InPlace, UserlandProxy,
]


# Steps that refer to the container's PID 1 hold this placeholder until it exists: a script
# keeps it as a shell variable, `--explain` shows the real number.
PID = "$CTR_PID"


def render(steps: list[Step], *, why: bool = True, pid: int | str = PID) -> str:
    """Steps as a commented shell script (the form `--explain` and `--dry-run` print)."""
    out = []
    for s in steps:
        if why and s.why:
            out.append(f"# {s.why}")
        out.append(s.command().replace(PID, str(pid)))
    return "\n".join(out)
