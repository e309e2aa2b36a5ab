"""Seccomp planning: Docker's profile format, capability conditions, and minibox's tightening."""

import json
from pathlib import Path

import pytest

from minibox.errors import InvalidSpec
from minibox.plan import seccomp
from minibox.plan import spec as specs
from minibox.runtime.caps import DEFAULT_CAPS

PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 38,
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
    "syscalls": [
        {"names": ["read", "write", "clone", "clone3", "unshare", "keyctl", "mount"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["bpf"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["bpf"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_CHROOT"]}},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
        {"names": ["s390_only"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["s390x"]}},
        {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
    ],
}


def allowed(plan: seccomp.Plan) -> set[str]:
    return {n for r in plan.rules if r.action == "SCMP_ACT_ALLOW" and not r.args for n in r.names}


def test_conditions_by_capability_architecture_and_kernel():
    plan = seccomp.plan(PROFILE, "p.json", DEFAULT_CAPS, "amd64", (6, 1), tighten=False)
    a = allowed(plan)
    assert {"read", "write", "chroot", "arch_prctl", "ptrace", "unshare"} <= a
    assert "bpf" not in a and "s390_only" not in a
    assert any(r.names == ("bpf",) and r.errno == 1 for r in plan.rules)
    assert plan.arches == ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")
    assert (plan.default_action, plan.default_errno) == ("SCMP_ACT_ERRNO", 38)
    old_kernel = seccomp.plan(PROFILE, "p.json", DEFAULT_CAPS, "amd64", (4, 4), tighten=False)
    assert "ptrace" not in allowed(old_kernel)


def test_tightening_to_dockers_default():
    plan = seccomp.plan(PROFILE, "p.json", DEFAULT_CAPS, "amd64")
    a = allowed(plan)
    assert {"unshare", "keyctl", "mount", "clone", "clone3"}.isdisjoint(a)
    refused = next(r for r in plan.rules if r.action == "SCMP_ACT_ERRNO" and "unshare" in r.names)
    assert refused.errno == 1 and {"keyctl", "mount"} <= set(refused.names)
    clone = next(r for r in plan.rules if r.names == ("clone",))
    assert clone.args == (seccomp.Arg(0, "SCMP_CMP_MASKED_EQ", seccomp.CLONE_NS_FLAGS, 0),)
    clone3 = next(r for r in plan.rules if r.names == ("clone3",))
    assert (clone3.action, clone3.errno) == ("SCMP_ACT_ERRNO", 38)
    assert "unshare" in plan.tightened and "read" in a
    # a container given CAP_SYS_ADMIN keeps the profile as it is, as in Docker
    assert "unshare" in allowed(seccomp.plan(PROFILE, "p.json", DEFAULT_CAPS + ("sys_admin",), "amd64"))


def test_the_distributions_profile_plans(tmp_path):
    path = Path(seccomp.DEFAULT_PROFILE)
    if not path.exists():
        pytest.fail(f"{path} is missing: scripts/setup installs golang-github-containers-common")
    plan = seccomp.plan(json.loads(path.read_text()), str(path), DEFAULT_CAPS, "amd64", (6, 1))
    a = allowed(plan)
    assert {"read", "execve", "openat", "socket"} & a
    assert not {"unshare", "setns", "mount", "keyctl", "io_uring_setup", "clone"} & a


@pytest.mark.parametrize("profile, message", [
    ([], "not a seccomp profile"),
    ({"defaultAction": "SCMP_ACT_NOPE"}, 'unsupported defaultAction "SCMP_ACT_NOPE"'),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "BOOM"}]},
     'unsupported action "BOOM"'),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW",
                                                        "args": [{"index": 0, "op": "SCMP_CMP_ALMOST"}]}]},
     'unsupported argument op "SCMP_CMP_ALMOST"'),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": "EWHAT"}, 'unknown errno "EWHAT"'),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": "SCMP_ARCH_X86"}, "architectures must be a list"),
])
def test_bad_profiles_name_what_is_wrong(profile, message):
    with pytest.raises(InvalidSpec, match=message.replace("(", r"\(")):
        seccomp.plan(profile, "p.json", DEFAULT_CAPS)


def test_security_opts():
    assert specs.parse_security_opt([]) == ("", False)  # no_new_privs off unless asked, as Docker's
    assert specs.parse_security_opt(["seccomp=unconfined"]) == ("unconfined", False)
    assert specs.parse_security_opt(["no-new-privileges", "seccomp=/p.json"]) == ("/p.json", True)
    assert specs.parse_security_opt(["no-new-privileges:true"]) == ("", True)  # Docker's older spelling
    assert specs.parse_security_opt(["no-new-privileges=true", "no-new-privileges=false"]) == ("", False)
    with pytest.raises(InvalidSpec, match="unknown --security-opt"):
        specs.parse_security_opt(["label=disable"])
    with pytest.raises(InvalidSpec, match="AppArmor is not used"):
        specs.parse_security_opt(["apparmor=docker-default"])


def test_oci_architectures_join_the_filter():
    """runtime-spec's linux.seccomp.architectures, as Docker writes them into config.json:
    each listed ABI is judged by the rules; an unlisted one is killed by the filter's arch check."""
    oci = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
           "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]}
    assert seccomp.plan(oci, "config.json", (), tighten=False).arches == ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86",
                                                                           "SCMP_ARCH_X32")
    native_only = dict(oci, architectures=[])
    assert seccomp.plan(native_only, "config.json", (), tighten=False).arches == ("SCMP_ARCH_X86_64",)
    from minibox.runtime.seccomp import compile_bpf

    i386 = (0x40000003).to_bytes(4, "little")  # AUDIT_ARCH_I386, as the filter's arch check compares it
    assert i386 in compile_bpf(seccomp.plan(oci, "config.json", (), tighten=False))
    assert i386 not in compile_bpf(seccomp.plan(native_only, "config.json", (), tighten=False))
