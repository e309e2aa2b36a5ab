"""The device allowlist: which device nodes a container may open, as cgroup v1 lines and as a cgroup v2 eBPF program.

A container keeps CAP_MKNOD (Docker's default), so it can *create* a node for any device,
the host's disks and /dev/kmsg included. What stops it is the device cgroup: the kernel
asks it on every open of a device node (and on mknod) whether this cgroup may. Docker's
answer, used here: mknod of anything, and read/write/mknod of only

    /dev/null zero full random urandom tty, /dev/pts/*, /dev/ptmx

On cgroup v1 that is the `devices` controller: write "a" to devices.deny (nothing), then
each rule to devices.allow. cgroup v2 has no such files: the same rules become a small
eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE attached to the container's group, as
runc and crun do. Pure: rules in, text and instruction bytes out.
"""

from __future__ import annotations

import struct

from minibox.value import Value

ANY = -1


class DeviceRule(Value):
    kind: str  # "c" (char), "b" (block), "a" (both)
    major: int  # ANY for "*"
    minor: int
    access: str  # some of "rwm": read, write, mknod
    name: str = ""  # what it is, for people
    allow: bool = True  # False: a deny rule (OCI's linux.resources.devices may hold them)

    def line(self) -> str:
        """As cgroup v1's devices.allow takes it: `c 1:3 rwm`, `c *:* m`."""
        star = lambda n: "*" if n == ANY else str(n)  # noqa: E731
        return f"{self.kind} {star(self.major)}:{star(self.minor)} {self.access}"


DEFAULT_RULES = (
    DeviceRule("c", ANY, ANY, "m", "mknod of any char device (opening it is what is checked)"),
    DeviceRule("b", ANY, ANY, "m", "mknod of any block device"),
    DeviceRule("c", 1, 3, "rwm", "/dev/null"),
    DeviceRule("c", 1, 5, "rwm", "/dev/zero"),
    DeviceRule("c", 1, 7, "rwm", "/dev/full"),
    DeviceRule("c", 1, 8, "rwm", "/dev/random"),
    DeviceRule("c", 1, 9, "rwm", "/dev/urandom"),
    DeviceRule("c", 5, 0, "rwm", "/dev/tty"),
    DeviceRule("c", 5, 2, "rwm", "/dev/ptmx"),
    DeviceRule("c", 136, ANY, "rwm", "/dev/pts/*"),
)


def v1_writes(rules: tuple[DeviceRule, ...] = DEFAULT_RULES) -> tuple[tuple[str, str], ...]:
    """(file, value) writes, in order, that give a v1 devices cgroup exactly `rules` (each
    applied on top of the ones before, as the kernel does)."""
    return (("devices.deny", "a"),) + tuple(("devices.allow" if r.allow else "devices.deny", r.line())
                                             for r in rules)


# --- cgroup v2: the rules as an eBPF program ----------------------------------------------
#
# The kernel calls the program with a `struct bpf_cgroup_dev_ctx { u32 access_type; u32
# major; u32 minor; }`, access_type being (access << 16) | type, where type is 1 (block)
# or 2 (char) and access a mask of 1 (mknod), 2 (read), 4 (write). It returns 1 to allow.

DEV_TYPE = {"b": 1, "c": 2}
ACCESS_BIT = {"m": 1, "r": 2, "w": 4}

# eBPF opcodes used below (linux/bpf.h)
LDX_W = 0x61  # dst = *(u32 *)(src + off)
AND_K = 0x57  # dst &= imm         (64-bit ALU)
RSH_K = 0x77  # dst >>= imm
MOV_X = 0xBF  # dst = src
MOV_K = 0xB7  # dst = imm
JNE_K = 0x55  # if dst != imm: pc += off
JEQ_K = 0x15  # if dst == imm: pc += off
EXIT = 0x95  # return r0


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One 8-byte eBPF instruction: opcode, dst/src registers, offset, immediate."""
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _rule_block(rule: DeviceRule) -> list[bytes]:
    """Instructions that return 1 (allow) or 0 (a deny rule) when the access matches `rule`,
    else fall through to the next rule. Registers: r2 type, r3 access, r4 major, r5 minor;
    r1 scratch. An allow rule matches an access it covers whole; a deny rule, one it touches."""
    # (opcode, dst, src, imm); every conditional jump skips to the end of this block
    ops: list[tuple[int, int, int, int]] = []
    if rule.kind != "a":
        ops.append((JNE_K, 2, 0, DEV_TYPE[rule.kind]))
    wanted = sum(ACCESS_BIT[a] for a in rule.access)
    if rule.allow and wanted != 7:  # what is asked must be a subset of what is allowed: (access & ~wanted) == 0
        ops += [(MOV_X, 1, 3, 0), (AND_K, 1, 0, 7 & ~wanted), (JNE_K, 1, 0, 0)]
    elif not rule.allow and wanted != 7:  # what is asked must share something with what is denied
        ops += [(MOV_X, 1, 3, 0), (AND_K, 1, 0, wanted), (JEQ_K, 1, 0, 0)]
    if rule.major != ANY:
        ops.append((JNE_K, 4, 0, rule.major))
    if rule.minor != ANY:
        ops.append((JNE_K, 5, 0, rule.minor))
    ops += [(MOV_K, 0, 0, 1 if rule.allow else 0), (EXIT, 0, 0, 0)]
    return [insn(code, dst, src, len(ops) - i - 1 if code in (JNE_K, JEQ_K) else 0, imm)
            for i, (code, dst, src, imm) in enumerate(ops)]


def bpf_program(rules: tuple[DeviceRule, ...] = DEFAULT_RULES) -> bytes:
    """The rules as a BPF_PROG_TYPE_CGROUP_DEVICE program: the last rule that matches
    decides (checked last to first, as v1 applies them in order); none matching denies."""
    prog = [
        insn(LDX_W, dst=2, src=1, off=0),  # r2 = ctx->access_type
        insn(AND_K, dst=2, imm=0xFFFF),  # r2 = type
        insn(LDX_W, dst=3, src=1, off=0),
        insn(RSH_K, dst=3, imm=16),  # r3 = access
        insn(LDX_W, dst=4, src=1, off=4),  # r4 = major
        insn(LDX_W, dst=5, src=1, off=8),  # r5 = minor
    ]
    for rule in reversed(rules):
        prog += _rule_block(rule)
        if rule.kind == "a" and rule.major == ANY and rule.minor == ANY and set(rule.access) >= set("rwm"):
            return b"".join(prog)  # it decides every access: anything after it the verifier refuses as unreachable
    prog += [insn(MOV_K, dst=0, imm=0), insn(EXIT)]
    return b"".join(prog)
