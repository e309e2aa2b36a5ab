"""Step objects: one kernel change each, applied by runtime/ or net/, and described as a shell command.

A plan is a list of steps. The effectful layers carry them out (runtime.init applies the
mount steps, net.links the link steps, net.firewall the rule steps); `explain` prints
`step.command()` and `step.why` for the very same objects. So the lesson a learner reads
is, by construction, what the kernel got.

Everything here is pure: a step holds data and renders text.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

# mount(2) flags (linux/mount.h); here so plans stay pure and renderable.
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

_FLAG_NAMES = ((MS_RDONLY, "ro"), (MS_NOSUID, "nosuid"), (MS_NODEV, "nodev"), (MS_NOEXEC, "noexec"))


def q(word: str) -> str:
    return shlex.quote(str(word))


def in_netns(pid: str | int) -> str:
    """Prefix that runs a command inside a container's network namespace."""
    return f"nsenter --net=/proc/{pid}/ns/net " if pid else ""


@dataclass(frozen=True)
class Step:
    # keyword-only, so each step's own fields stay positional: Mount(src, dst, why="...")
    why: str = field(default="", kw_only=True)

    def command(self) -> str:  # pragma: no cover - every subclass overrides
        raise NotImplementedError


# --- process and namespaces ---------------------------------------------------------


@dataclass(frozen=True)
class Unshare(Step):
    namespaces: tuple[str, ...]  # "pid", "mount", "net", "uts", "ipc"

    def command(self) -> str:
        return "unshare " + " ".join(f"--{n}" for n in self.namespaces) + " --fork"


# --- filesystem ----------------------------------------------------------------------


@dataclass(frozen=True)
class Mount(Step):
    source: str
    target: str
    fstype: str = ""
    flags: int = 0
    data: str = ""

    def command(self) -> str:
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


@dataclass(frozen=True)
class MakeDir(Step):
    path: str
    mode: int = 0o755

    def command(self) -> str:
        return f"mkdir -p -m {self.mode:o} {q(self.path)}"


@dataclass(frozen=True)
class MakeNode(Step):
    path: str
    major: int
    minor: int
    mode: int = 0o666

    def command(self) -> str:
        return f"mknod -m {self.mode:o} {q(self.path)} c {self.major} {self.minor}"


@dataclass(frozen=True)
class Symlink(Step):
    target: str
    path: str

    def command(self) -> str:
        return f"ln -s {q(self.target)} {q(self.path)}"


@dataclass(frozen=True)
class PivotRoot(Step):
    new_root: str

    def command(self) -> str:
        return f"cd {q(self.new_root)} && pivot_root . . && umount -l . && cd /"


# --- identity and privileges -----------------------------------------------------------


@dataclass(frozen=True)
class SetHostname(Step):
    hostname: str

    def command(self) -> str:
        return f"hostname {q(self.hostname)}"


@dataclass(frozen=True)
class DropCapabilities(Step):
    keep: tuple[str, ...]  # lower-case names without CAP_, e.g. "chown"

    def command(self) -> str:
        caps = ",".join(["-all"] + [f"+{c}" for c in self.keep])
        return f"setpriv --bounding-set={caps} --inh-caps=-all --ambient-caps=-all --no-new-privs"


@dataclass(frozen=True)
class Exec(Step):
    argv: tuple[str, ...]
    env: tuple[str, ...]
    workdir: str

    def command(self) -> str:
        env = " ".join(q(e) for e in self.env)
        return f"cd {q(self.workdir)} && exec env -i {env} {' '.join(q(a) for a in self.argv)}"


# --- cgroups -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CgroupCreate(Step):
    path: str
    limits: tuple[tuple[str, str], ...] = ()  # (file, value)

    def command(self) -> str:
        parts = [f"mkdir -p {q(self.path)}"]
        parts += [f"echo {q(v)} > {q(self.path + '/' + f)}" for f, v in self.limits]
        return " && ".join(parts)


@dataclass(frozen=True)
class CgroupJoin(Step):
    path: str
    pid: str

    def command(self) -> str:
        return f"echo {self.pid} > {q(self.path + '/cgroup.procs')}"


# --- network -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BridgeAdd(Step):
    name: str
    mac: str

    def command(self) -> str:
        return f"ip link add {self.name} address {self.mac} type bridge"


@dataclass(frozen=True)
class AddrAdd(Step):
    dev: str
    cidr: str
    netns: str = ""  # container PID (or "$CTR_PID" in a script); "" = the host

    def command(self) -> str:
        return f"{in_netns(self.netns)}ip addr add {self.cidr} dev {self.dev}"


@dataclass(frozen=True)
class LinkUp(Step):
    dev: str
    netns: str = ""

    def command(self) -> str:
        return f"{in_netns(self.netns)}ip link set {self.dev} up"


@dataclass(frozen=True)
class VethAdd(Step):
    host: str
    peer: str
    netns: str
    mac: str

    def command(self) -> str:
        return (f"ip link add {self.host} type veth peer name {self.peer} "
                f"address {self.mac} netns /proc/{self.netns}/ns/net")


@dataclass(frozen=True)
class SetMaster(Step):
    dev: str
    master: str

    def command(self) -> str:
        return f"ip link set {self.dev} master {self.master}"


@dataclass(frozen=True)
class Hairpin(Step):
    dev: str

    def command(self) -> str:
        return f"ip link set {self.dev} type bridge_slave hairpin on"


@dataclass(frozen=True)
class RouteAdd(Step):
    dst: str
    gateway: str
    netns: str = ""

    def command(self) -> str:
        return f"{in_netns(self.netns)}ip route add {self.dst} via {self.gateway}"


@dataclass(frozen=True)
class LinkDel(Step):
    dev: str

    def command(self) -> str:
        return f"ip link del {self.dev}"


@dataclass(frozen=True)
class Sysctl(Step):
    key: str  # dotted, e.g. net.ipv4.ip_forward
    value: str

    def command(self) -> str:
        return f"sysctl -w {self.key}={self.value}"

    @property
    def proc_path(self) -> str:
        return "/proc/sys/" + self.key.replace(".", "/")


@dataclass(frozen=True)
class Firewall(Step):
    """A batch of firewall commands in the syntax of the backend that applies them."""

    backend: str  # "nftables" | "iptables"
    lines: tuple[str, ...]

    def command(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class ConntrackFlush(Step):
    proto: str
    port: int = 0
    addr: str = ""

    def command(self) -> str:
        if self.addr:
            return f"conntrack -D --orig-dst {self.addr}"
        return f"conntrack -D -p {self.proto} --orig-port-dst {self.port}"


def render(steps: list[Step], *, why: bool = True) -> str:
    """Steps as a commented shell script (the form `--explain` and `--dry-run` print)."""
    out = []
    for s in steps:
        if why and s.why:
            out.append(f"# {s.why}")
        out.append(s.command())
    return "\n".join(out)
