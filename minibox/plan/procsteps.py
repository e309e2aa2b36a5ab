"""Steps of a process's identity and life that OCI's config.json asks for: namespaces joined by path, id maps, the five capability sets, rlimits, the OOM score, hooks, and the create/start wait (see plan.steps)."""

from __future__ import annotations

from minibox.plan.netsteps import q
from minibox.value import Value

# Every capability by its kernel number (linux/capability.h), lower-case without CAP_.
CAP_NUMBERS = {name: i for i, name in enumerate((
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
    "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw", "ipc_lock", "ipc_owner",
    "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
    "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write", "audit_control", "setfcap",
    "mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf",
    "checkpoint_restore"))}


class JoinNamespace(Value):
    """Enter an existing namespace by path (OCI's namespaces[].path: an engine made it)."""

    kind: str  # OCI's type: network, ipc, uts, mount, pid, user, cgroup
    path: str
    why: str = ""

    def command(self) -> str:
        flag = {"network": "net", "mount": "mount", "user": "user", "pid": "pid", "ipc": "ipc", "uts": "uts",
                "cgroup": "cgroup", "time": "time"}[self.kind]
        return f"nsenter --{flag}={q(self.path)}"


class IdMap(Value):
    """A new user namespace's uid and gid maps, written from the runtime's side."""

    uid_map: tuple[tuple[int, int, int], ...]  # (container id, host id, size)
    gid_map: tuple[tuple[int, int, int], ...]
    why: str = ""

    def command(self) -> str:
        def lines(m):
            return "\\n".join(f"{a} {b} {c}" for a, b, c in m)
        return (f"printf '{lines(self.uid_map)}' > /proc/$CTR_PID/uid_map && "
                f"printf '{lines(self.gid_map)}' > /proc/$CTR_PID/gid_map")


class SetCapabilities(Value):
    """The five capability sets of OCI's process.capabilities, and no_new_privs."""

    bounding: tuple[str, ...]
    effective: tuple[str, ...] = ()
    permitted: tuple[str, ...] = ()
    inheritable: tuple[str, ...] = ()
    ambient: tuple[str, ...] = ()
    no_new_privs: bool = False
    ignored: tuple[str, ...] = ()  # names this runtime does not know (newer than it): warned of, as runc does
    why: str = ""

    def command(self) -> str:
        def caps(names):
            return ",".join(["-all"] + [f"+{c}" for c in names])
        nnp = " --no-new-privs" if self.no_new_privs else ""
        return (f"setpriv --bounding-set={caps(self.bounding)} --inh-caps={caps(self.inheritable)} "
                f"--ambient-caps={caps(self.ambient)}{nnp}  # effective={','.join(self.effective) or '-'} "
                f"permitted={','.join(self.permitted) or '-'}")


class SetRlimit(Value):
    resource: str  # RLIMIT_NOFILE
    soft: int
    hard: int
    why: str = ""

    def command(self) -> str:
        name = self.resource.removeprefix("RLIMIT_").lower()
        return f"prlimit --pid $$ --{name}={self.soft}:{self.hard}"


class OomScoreAdj(Value):
    value: int
    why: str = ""

    def command(self) -> str:
        return f"echo {self.value} > /proc/self/oom_score_adj"


class WaitStart(Value):
    """The create/start split: PID 1 blocks opening this FIFO until `start` reads it."""

    fifo: str
    why: str = ""

    def command(self) -> str:
        return f"echo > {q(self.fifo)}  # blocks until `minibox-oci start` opens it for reading"


class RunHook(Value):
    """One of config.json's hooks, given the container's state on stdin."""

    kind: str  # prestart, createRuntime, createContainer, startContainer, poststart, poststop
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: int = 0
    why: str = ""

    def command(self) -> str:
        env = " ".join(q(e) for e in self.env)
        argv = " ".join(q(a) for a in (self.args[1:] if self.args else ()))
        return f"echo \"$STATE\" | {'env -i ' + env + ' ' if env else ''}{q(self.path)} {argv}".rstrip()
