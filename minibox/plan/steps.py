"""Step objects: one kernel change each, applied by runtime/ or net/, and described as a shell command.

A plan is a list of steps. The effectful layers carry them out (runtime.init applies the
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

_FLAG_NAMES = ((MS_RDONLY, "ro"), (MS_NOSUID, "nosuid"), (MS_NODEV, "nodev"), (MS_NOEXEC, "noexec"))


def q(word: str) -> str:
    return shlex.quote(str(word))


def in_netns(pid: str | int) -> str:
    """Prefix that runs a command inside a container's network namespace."""
    return f"nsenter --net=/proc/{pid}/ns/net " if pid else ""




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
        flags = {"ipc": "--ipc", "uts": "--uts", "net": "--net", "pid": "--pid", "mnt": "--mount"}
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
    why: str = ""

    def command(self) -> str:
        return f"mknod -m {self.mode:o} {q(self.path)} c {self.major} {self.minor}"


class Symlink(Value):
    target: str
    path: str
    why: str = ""

    def command(self) -> str:
        return f"ln -s {q(self.target)} {q(self.path)}"


class PivotRoot(Value):
    new_root: str
    why: str = ""

    def command(self) -> str:
        return f"cd {q(self.new_root)} && pivot_root . . && umount -l . && cd /"


# --- identity and privileges -----------------------------------------------------------


class SetHostname(Value):
    hostname: str
    why: str = ""

    def command(self) -> str:
        return f"hostname {q(self.hostname)}"


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


# --- network -------------------------------------------------------------------------------


class BridgeAdd(Value):
    name: str
    mac: str
    why: str = ""

    def command(self) -> str:
        return f"ip link add {self.name} address {self.mac} type bridge"


class AddrAdd(Value):
    dev: str
    cidr: str
    netns: str = ""  # container PID (or "$CTR_PID" in a script); "" = the host
    why: str = ""

    def command(self) -> str:
        return f"{in_netns(self.netns)}ip addr add {self.cidr} dev {self.dev}"


class LinkUp(Value):
    dev: str
    netns: str = ""
    why: str = ""

    def command(self) -> str:
        return f"{in_netns(self.netns)}ip link set {self.dev} up"


class VethAdd(Value):
    host: str
    peer: str
    netns: str
    mac: str
    why: str = ""

    def command(self) -> str:
        return (f"ip link add {self.host} type veth peer name {self.peer} "
                f"address {self.mac} netns /proc/{self.netns}/ns/net")


class SetMaster(Value):
    dev: str
    master: str
    why: str = ""

    def command(self) -> str:
        return f"ip link set {self.dev} master {self.master}"


class Hairpin(Value):
    dev: str
    why: str = ""

    def command(self) -> str:
        return f"ip link set {self.dev} type bridge_slave hairpin on"


class RouteAdd(Value):
    dst: str
    gateway: str
    netns: str = ""
    why: str = ""

    def command(self) -> str:
        return f"{in_netns(self.netns)}ip route add {self.dst} via {self.gateway}"


class LinkDel(Value):
    dev: str
    why: str = ""

    def command(self) -> str:
        return f"ip link del {self.dev}"


class Sysctl(Value):
    key: str  # dotted, e.g. net.ipv4.ip_forward
    value: str
    why: str = ""

    def command(self) -> str:
        return f"sysctl -w {self.key}={self.value}"

    @property
    def proc_path(self) -> str:
        return "/proc/sys/" + self.key.replace(".", "/")


class Firewall(Value):
    """A batch of firewall commands in the syntax of the backend that applies them."""

    backend: str  # "nftables" | "iptables"
    lines: tuple[str, ...]
    why: str = ""

    def command(self) -> str:
        tool = "nft -f -" if self.backend == "nftables" else "iptables-restore --noflush"
        return f"{tool} <<'EOF'\n" + "\n".join(self.lines) + "\nEOF"


class ConntrackFlush(Value):
    proto: str
    port: int = 0
    addr: str = ""
    why: str = ""

    def command(self) -> str:
        # `|| true`: conntrack exits 1 when there was nothing to delete, which is fine.
        # An address: the flows it started, and those it answered (DNAT'd to it included).
        if self.addr:
            return f"conntrack -D --orig-src {self.addr} || true; conntrack -D --reply-src {self.addr} || true"
        return f"conntrack -D -p {self.proto} --orig-port-dst {self.port} || true"


# Any step; each type above is applied by the layer that owns it (runtime.init, net.*).
Step = Union[
    Unshare, Nsenter, Mount, MakeDir, WriteFile, CopyUp, SetUser, MakeNode, Symlink, PivotRoot, RemovePath, Kill,
    Logged, SetHostname, DropCapabilities, LoadSeccomp, Exec, CgroupCreate, DeviceFilter, CgroupJoin, BridgeAdd,
    AddrAdd, LinkUp, VethAdd, SetMaster, Hairpin, RouteAdd, LinkDel, Sysctl, Firewall, ConntrackFlush,
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
