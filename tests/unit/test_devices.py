"""The device allowlist: v1 lines, and the v2 eBPF program run through a small interpreter.

The interpreter executes exactly the opcodes plan.devices emits, the way the kernel would,
so these tests check what the program *does* for a given device and access, not only its
bytes. (The integration tests attach the same program to a real cgroup v2.)
"""

import struct

import pytest

from minibox.plan import devices
from minibox.plan.devices import ANY, DEFAULT_RULES, DeviceRule


def run(program: bytes, kind: str, major: int, minor: int, access: str) -> int:
    regs = [0] * 11
    ctx = ((sum(devices.ACCESS_BIT[a] for a in access) << 16) | devices.DEV_TYPE[kind], major, minor)
    pc, steps = 0, 0
    n = len(program) // 8
    while True:
        assert 0 <= pc < n, "jumped out of the program"
        steps += 1
        assert steps < 1000
        code, regbyte, off, imm = struct.unpack("<BBhi", program[pc * 8:pc * 8 + 8])
        dst, src = regbyte & 0xF, regbyte >> 4
        if code == devices.LDX_W:
            assert src == 1 and off in (0, 4, 8)
            regs[dst] = ctx[off // 4]
        elif code == devices.AND_K:
            regs[dst] &= imm & 0xFFFFFFFFFFFFFFFF
        elif code == devices.RSH_K:
            regs[dst] >>= imm
        elif code == devices.MOV_X:
            regs[dst] = regs[src]
        elif code == devices.MOV_K:
            regs[dst] = imm
        elif code == devices.JNE_K:
            if regs[dst] != imm:
                pc += off
        elif code == devices.EXIT:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
        pc += 1


PROGRAM = devices.bpf_program()


@pytest.mark.parametrize("kind,major,minor,access,allowed", [
    ("c", 1, 3, "rw", 1),  # /dev/null
    ("c", 1, 9, "r", 1),  # /dev/urandom
    ("c", 5, 2, "rw", 1),  # /dev/ptmx
    ("c", 136, 7, "rw", 1),  # /dev/pts/7
    ("c", 1, 11, "w", 0),  # /dev/kmsg: the host's kernel log
    ("c", 1, 11, "m", 1),  # ...which may be created, as with Docker, but not opened
    ("b", 7, 0, "r", 0),  # a loop device
    ("b", 8, 0, "rw", 0),  # the host's disk
    ("b", 8, 0, "m", 1),
    ("c", 4, 64, "rw", 0),  # the serial console
    ("c", 1, 1, "r", 0),  # /dev/mem
    ("c", 5, 1, "rw", 0),  # /dev/console
    ("c", 1, 3, "rwm", 1),
])
def test_program_allows_exactly_dockers_list(kind, major, minor, access, allowed):
    assert run(PROGRAM, kind, major, minor, access) == allowed


def test_access_must_be_a_subset_of_the_rule():
    prog = devices.bpf_program((DeviceRule("c", 10, 200, "r"),))
    assert run(prog, "c", 10, 200, "r") == 1
    assert run(prog, "c", 10, 200, "rw") == 0
    assert run(prog, "c", 10, 200, "m") == 0
    assert run(prog, "b", 10, 200, "r") == 0


def test_wildcards_and_both_kinds():
    prog = devices.bpf_program((DeviceRule("a", ANY, ANY, "m"),))
    assert run(prog, "b", 259, 3, "m") == 1 and run(prog, "c", 1, 1, "m") == 1
    assert run(prog, "c", 1, 1, "r") == 0


def test_no_rules_denies_everything():
    assert run(devices.bpf_program(()), "c", 1, 3, "r") == 0


def test_v1_writes_deny_all_then_allow_the_list():
    writes = devices.v1_writes()
    assert writes[0] == ("devices.deny", "a")
    assert [v for f, v in writes[1:]] == ["c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm",
                                          "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:2 rwm", "c 136:* rwm"]
    assert len(DEFAULT_RULES) == 10


def test_a_rule_that_decides_everything_ends_the_program():
    """An OCI config's leading deny-all (as runc's and `run`'s specs have) is checked last and
    decides every access: nothing may follow it, or the kernel's verifier refuses the
    program as holding unreachable instructions (EINVAL, "processed 0 insns")."""
    rules = (DeviceRule("a", ANY, ANY, "rwm", allow=False),) + DEFAULT_RULES
    prog = devices.bpf_program(rules)
    assert prog.endswith(devices.insn(devices.MOV_K, dst=0, imm=0) + devices.insn(devices.EXIT))
    assert len(prog) == len(devices.bpf_program(DEFAULT_RULES))  # the deny-all is the default's own end
    for kind, major, minor, access, allowed in [("c", 1, 3, "rw", 1), ("c", 1, 11, "w", 0), ("b", 8, 0, "r", 0)]:
        assert run(prog, kind, major, minor, access) == allowed
