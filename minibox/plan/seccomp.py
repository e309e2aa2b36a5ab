"""Seccomp as data: a Docker-format profile plus a container's capabilities, turned into the rules of one filter.

The profile format is Docker's and Podman's (`defaultAction`, `archMap`, `syscalls` with
`names`, `action`, `args`, `includes`/`excludes` by capability, architecture and kernel).
The default profile is the one Debian ships for both engines,
/usr/share/containers/seccomp.json (package golang-github-containers-common).

That file is Podman's flavour: it allows `unshare`, `clone` with namespace flags, `mount`,
`keyctl` and a few others, relying on the missing capabilities alone. Docker's default
refuses them to a container without CAP_SYS_ADMIN, and since Docker 25 refuses io_uring
too; minibox follows Docker there (TIGHTEN, below, each with the attack it stops), so the
default is at least as strict as Docker's. A profile given with
`--security-opt seccomp=FILE` is used exactly as written.

Pure: no I/O. runtime.seccomp compiles the rules with libseccomp.
"""

from __future__ import annotations

import errno as errnos
from typing import Any

from minibox.config import DEFAULT_SECCOMP_PROFILE as DEFAULT_PROFILE  # noqa: F401 - part of this interface
from minibox.errors import InvalidSpec
from minibox.value import Value

# Syscalls minibox refuses (EPERM) unless the container holds CAP_SYS_ADMIN, wherever the
# distribution's profile allows them: name -> the attack it stops.
TIGHTEN = {
    "unshare": "new namespaces: a user namespace grants every capability inside it",
    "setns": "joining another namespace",
    "mount": "mounting: a new proc or sysfs without minibox's masks",
    "umount": "unmounting the masks over /proc",
    "umount2": "unmounting the masks over /proc",
    "pivot_root": "changing the root",
    "fsopen": "the new mount API",
    "fsconfig": "the new mount API",
    "fsmount": "the new mount API",
    "fspick": "the new mount API",
    "move_mount": "the new mount API",
    "open_tree": "the new mount API",
    "mount_setattr": "the new mount API",
    "keyctl": "the kernel keyring, which is not namespaced: the host's keys",
    "add_key": "the kernel keyring, which is not namespaced",
    "request_key": "the kernel keyring, which is not namespaced",
    "io_uring_setup": "io_uring, a large kernel attack surface (Docker refuses it since 25.0)",
    "io_uring_enter": "io_uring",
    "io_uring_register": "io_uring",
    "name_to_handle_at": "file handles, the old 'shocker' escape's first half",
    "syslog": "the host's kernel log",
    "reboot": "rebooting",
}
# clone() stays allowed, but only without namespace flags (Docker's argument filter):
# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
CLONE_NS_FLAGS = 0x7E020000
ENOSYS = errnos.ENOSYS
EPERM = errnos.EPERM

OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
       "SCMP_CMP_MASKED_EQ")
ACTIONS = ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD",
           "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP", "SCMP_ACT_LOG")
# Docker's architecture names -> libseccomp's; the archMap's subArchitectures are added too.
ARCH_ALIASES = {"amd64": "SCMP_ARCH_X86_64", "x86": "SCMP_ARCH_X86", "x32": "SCMP_ARCH_X32",
                "arm64": "SCMP_ARCH_AARCH64", "arm": "SCMP_ARCH_ARM"}


class Arg(Value):
    index: int
    op: str  # one of OPS
    value: int
    value_two: int = 0


class Rule(Value):
    names: tuple[str, ...]
    action: str  # one of ACTIONS
    errno: int = 0  # for SCMP_ACT_ERRNO
    args: tuple[Arg, ...] = ()


class Plan(Value):
    source: str  # the profile's path (or "unconfined")
    default_action: str
    default_errno: int
    arches: tuple[str, ...]  # libseccomp names: native first
    rules: tuple[Rule, ...]
    tightened: tuple[str, ...] = ()  # names TIGHTEN took away from the profile's allow rules


UNCONFINED = Plan("unconfined", "SCMP_ACT_ALLOW", 0, (), ())


def _errno(value: Any, where: str) -> int:
    if value in (None, ""):
        return EPERM
    if isinstance(value, int):
        return value
    code = getattr(errnos, str(value), None)
    if code is None:
        raise InvalidSpec(f'{where}: unknown errno "{value}": use a number or a name like EPERM')
    return code


def _applies(entry: dict, caps: frozenset[str], arch: str, kernel: tuple[int, int]) -> bool:
    """Docker's includes/excludes: a rule holds when every include matches and no exclude does."""
    inc, exc = entry.get("includes") or {}, entry.get("excludes") or {}
    if inc.get("caps") and not all(c.lower().removeprefix("cap_") in caps for c in inc["caps"]):
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if inc.get("minKernel") and kernel < tuple(int(x) for x in str(inc["minKernel"]).split(".")[:2]):
        return False
    if exc.get("caps") and any(c.lower().removeprefix("cap_") in caps for c in exc["caps"]):
        return False
    if exc.get("arches") and arch in exc["arches"]:
        return False
    return True


def plan(profile: dict, source: str, caps: tuple[str, ...], arch: str = "amd64",
         kernel: tuple[int, int] = (6, 1), tighten: bool = True) -> Plan:
    """The rules of the filter a container with `caps` gets from `profile` on `arch`."""
    where = f"seccomp profile {source}"
    if not isinstance(profile, dict) or "defaultAction" not in profile:
        raise InvalidSpec(f"{where}: not a seccomp profile (it has no defaultAction)")
    default = profile["defaultAction"]
    if default not in ACTIONS:
        raise InvalidSpec(f'{where}: unsupported defaultAction "{default}": use one of {", ".join(ACTIONS)}')
    default_errno = _errno(profile.get("defaultErrnoRet"), where) if default == "SCMP_ACT_ERRNO" else 0
    native = ARCH_ALIASES.get(arch, arch)
    arches = [native]
    for entry in profile.get("archMap") or ():
        if entry.get("architecture") == native:
            arches += [a for a in entry.get("subArchitectures") or () if a not in arches]
    # runtime-spec's linux.seccomp.architectures (Docker's archMap, flattened): the ABIs whose
    # system calls the filter judges by its rules; any other ABI gets the kernel's KILL.
    listed = profile.get("architectures") or ()
    if not isinstance(listed, (list, tuple)) or not all(isinstance(a, str) for a in listed):
        raise InvalidSpec(f"{where}: architectures must be a list of names like SCMP_ARCH_X86")
    arches += [a for a in listed if a not in arches]
    capset = frozenset(caps)
    rules: list[Rule] = []
    for entry in profile.get("syscalls") or ():
        names = tuple(entry.get("names") or ((entry["name"],) if entry.get("name") else ()))
        action = entry.get("action")
        if action not in ACTIONS:
            raise InvalidSpec(f'{where}: unsupported action "{action}" for {", ".join(names[:3])}: use one of '
                              f'{", ".join(ACTIONS)}')
        if not names or not _applies(entry, capset, arch, kernel):
            continue
        args = []
        for a in entry.get("args") or ():
            if a.get("op") not in OPS:
                raise InvalidSpec(f'{where}: unsupported argument op "{a.get("op")}" for {names[0]}')
            args.append(Arg(int(a["index"]), a["op"], int(a.get("value", 0)), int(a.get("valueTwo", 0))))
        err = _errno(entry.get("errnoRet", entry.get("errno")), where) if action == "SCMP_ACT_ERRNO" else 0
        rules.append(Rule(names, action, err, tuple(args)))
    tightened: tuple[str, ...] = ()
    if tighten and "sys_admin" not in capset:
        rules, tightened = _tighten(rules)
    return Plan(source, default, default_errno, tuple(arches), tuple(rules), tightened)


def _tighten(rules: list[Rule]) -> tuple[list[Rule], tuple[str, ...]]:
    """Take TIGHTEN's syscalls and unconditional clone/clone3 out of the allow rules and
    refuse them explicitly; allow clone without namespace flags."""
    out, taken = [], set()
    for r in rules:
        if r.action == "SCMP_ACT_ALLOW":
            drop = {n for n in r.names if n in TIGHTEN or (n in ("clone", "clone3") and not r.args)}
            taken |= drop
            names = tuple(n for n in r.names if n not in drop)
            if names:
                out.append(r._replace(names=names))
        else:
            out.append(r)
    out = [r._replace(names=tuple(n for n in r.names if n not in taken)) for r in out]
    out = [r for r in out if r.names]
    refused = tuple(sorted(taken - {"clone", "clone3"}))
    if refused:
        out.append(Rule(refused, "SCMP_ACT_ERRNO", EPERM))
    if "clone" in taken:
        out.append(Rule(("clone",), "SCMP_ACT_ALLOW", 0, (Arg(0, "SCMP_CMP_MASKED_EQ", CLONE_NS_FLAGS, 0),)))
    if "clone3" in taken:
        # clone3 passes its flags in memory, which seccomp cannot read: ENOSYS makes libc fall back to clone.
        out.append(Rule(("clone3",), "SCMP_ACT_ERRNO", ENOSYS))
    return out, tuple(sorted(taken))
