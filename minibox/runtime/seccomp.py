"""Compiling a seccomp plan into a BPF filter with libseccomp, cached so that a run pays only a file read.

libseccomp is the library runc, crun and Podman use; its Python binding is the one its
authors maintain (Debian's python3-seccomp, linked into the venv by scripts/setup). It is
loaded only when the cache misses: compiling Docker's ~400 rules costs ~15 ms, reading the
cached program ~0.1 ms. The cache key is the profile's path, size and mtime, the
capabilities, the architecture and the kernel version, so an edited profile or an upgraded
kernel compiles afresh; the key is stored in the file and compared on every read.

The filter is loaded by the container's PID 1 (and by exec) right before execve, with
seccomp(2) through minibox.linux: no libseccomp in the container.
"""

from __future__ import annotations

import json
import os

from minibox import config, files
from minibox.errors import InvalidSpec, MiniboxError, WriteFailed
from minibox.plan.steps import LoadSeccomp

# plan.seccomp is imported only when the cache misses: every run pays for what it imports.

WHY = ("seccomp: a filter on every system call; what the profile does not allow fails (ENOSYS), and namespaces, "
       "mounts, the keyring and io_uring are refused (EPERM)")


def _kernel() -> tuple[int, int]:
    parts = os.uname().release.split(".")
    return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)


def step_for(source: str, caps: tuple[str, ...], cache_it: bool = True) -> LoadSeccomp | None:
    """The LoadSeccomp step for a container: `source` is "" (the default profile),
    "unconfined" (None: no filter) or a profile's path. The compiled filter is cached
    unless `cache_it` is false (a dry run writes nothing)."""
    if source == "unconfined":
        return None
    path = source or config.DEFAULT_SECCOMP_PROFILE
    try:
        st = os.stat(path)
    except OSError as e:
        hint = ("install it with scripts/setup (apt-get install golang-github-containers-common), or run with "
                "--security-opt seccomp=unconfined") if not source else "give a readable Docker-format JSON file"
        raise InvalidSpec(f"seccomp profile {path}: {e.strerror}: {hint}") from None
    tighten = not source
    uname = os.uname()  # not the platform module: it costs 2.5 ms to import, on every run
    key = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{','.join(sorted(caps))}|{uname.machine}|" \
          f"{uname.release}|{int(tighten)}"
    cache = config.paths().root / "cache" / f"seccomp-{_fnv1a(key):016x}.bpf"
    cached = _read_cache(cache, key)
    if cached is None:
        plan = _plan(path, caps, tighten)
        program = compile_bpf(plan)
        meta = {"key": key, "rules": sum(len(r.names) for r in plan.rules), "tightened": list(plan.tightened)}
        if cache_it:
            _write_cache(cache, meta, program)
        cached = meta, program
    meta, program = cached
    label = path + (" tightened to Docker's default" if meta["tightened"] else "")
    return LoadSeccomp(label, meta["rules"], program, why=WHY)


def _fnv1a(text: str) -> int:
    """A 64-bit FNV-1a hash, for a cache file name (the key itself is checked on read)."""
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _plan(path: str, caps: tuple[str, ...], tighten: bool):
    from minibox.plan import seccomp as policy

    try:
        with open(path) as f:
            profile = json.load(f)
    except OSError as e:
        raise InvalidSpec(f"seccomp profile {path}: {e.strerror}") from None
    except ValueError as e:
        raise InvalidSpec(f"seccomp profile {path} is not valid JSON: {e}") from None
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    return policy.plan(profile, path, caps, arch, _kernel(), tighten=tighten)


def compile_bpf(plan) -> bytes:
    """The plan as classic BPF (struct sock_filter[]), compiled by libseccomp."""
    try:
        import seccomp as lib
    except ImportError:
        raise MiniboxError("libseccomp's Python binding is missing: run scripts/setup (apt-get install "
                           "python3-seccomp; setup links it into the venv)") from None

    def action(name: str, err: int):
        if name == "SCMP_ACT_ERRNO":
            return lib.ERRNO(err)
        return {"SCMP_ACT_ALLOW": lib.ALLOW, "SCMP_ACT_KILL": lib.KILL, "SCMP_ACT_KILL_THREAD": lib.KILL,
                "SCMP_ACT_KILL_PROCESS": lib.KILL_PROCESS, "SCMP_ACT_TRAP": lib.TRAP, "SCMP_ACT_LOG": lib.LOG}[name]

    ops = {"SCMP_CMP_NE": lib.NE, "SCMP_CMP_LT": lib.LT, "SCMP_CMP_LE": lib.LE, "SCMP_CMP_EQ": lib.EQ,
           "SCMP_CMP_GE": lib.GE, "SCMP_CMP_GT": lib.GT, "SCMP_CMP_MASKED_EQ": lib.MASKED_EQ}
    f = lib.SyscallFilter(defaction=action(plan.default_action, plan.default_errno))
    for arch in plan.arches[1:]:
        member = getattr(lib.Arch, arch.removeprefix("SCMP_ARCH_"), None)
        if member is not None and not f.exist_arch(member):
            f.add_arch(member)
    unconditional: set[str] = set()
    for rule in plan.rules:
        for name in rule.names:
            if not rule.args and name in unconditional:
                continue  # the first unconditional rule for a syscall wins, as in runc
            args = [lib.Arg(a.index, ops[a.op], a.value, a.value_two) for a in rule.args]
            try:
                f.add_rule(action(rule.action, rule.errno), name, *args)
            except (RuntimeError, ValueError, OSError):
                continue  # a syscall this architecture or libseccomp does not know: as runc, skip it
            if not rule.args:
                unconditional.add(name)
    fd = os.memfd_create("minibox-seccomp", os.MFD_CLOEXEC)
    with os.fdopen(fd, "w+b") as out:
        f.export_bpf(out)
        out.seek(0)
        return out.read()


def _read_cache(path, key: str):
    try:
        with open(path, "rb") as f:
            head, _, program = f.read().partition(b"\n")
        meta = json.loads(head)
    except (OSError, ValueError):
        return None
    if meta.get("key") != key or len(program) % 8:
        return None
    return meta, program


def _write_cache(path, meta: dict, program: bytes) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        files.replace_file(path, json.dumps(meta).encode() + b"\n" + program)
    except (OSError, WriteFailed):
        pass  # no cache (a full disk, say): the next run compiles again
