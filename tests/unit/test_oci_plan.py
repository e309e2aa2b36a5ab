"""plan.oci: a bundle's config.json as steps, checked without running anything."""

import copy

import pytest

from minibox.errors import InvalidSpec
from minibox.oci import ops
from minibox.plan import oci, ocifs, steps
from minibox.plan.devices import DeviceRule, v1_writes

BASE = {
    "ociVersion": "1.0.2",
    "process": {"args": ["sh"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0},
                "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
                "noNewPrivileges": True},
    "root": {"path": "rootfs"},
    "hostname": "h",
    "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
               {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}],
    "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}],
              "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]},
}
FACTS = oci.Facts(id="c1", bundle="/b", state_dir="/run/x/c1", cgroup_dirs=("/sys/fs/cgroup/memory/m/c1",),
                  cgroup_v2=False, seccomp=None)


def doc(**changes):
    d = copy.deepcopy(BASE)
    for key, value in changes.items():
        parts = key.split("__")
        target = d
        for p in parts[:-1]:
            target = target.setdefault(p, {})
        target[parts[-1]] = value
    return d


def kinds(p):
    return [type(s).__name__ for s in p.steps()]


def test_order_is_namespaces_cgroups_root_pivot_wait_then_process():
    p = oci.plan(doc(), FACTS)
    k = kinds(p)
    assert k[0] == "Unshare" and p.unshare.namespaces == ("pid", "mount", "uts")
    assert k.index("PivotRoot") < k.index("WaitStart") < k.index("SetCapabilities") < k.index("Exec")
    assert k[-1] == "Exec"
    assert p.rootfs == "/b/rootfs"
    proc = next(s for s in p.init if isinstance(s, steps.Mount) and s.fstype == "proc")
    assert proc.target == "/b/rootfs/proc" and proc.why.startswith("mounts[0]")


def test_every_step_names_the_field_it_came_from():
    text = steps.render(oci.plan(doc(), FACTS).steps())
    for field in ("linux.namespaces", "mounts[0]", "mounts[1]", "linux.maskedPaths: /proc/kcore",
                  "linux.readonlyPaths: /proc/sys", "hostname", "process.capabilities", "root.path"):
        assert field in text, field


def test_mount_options_split_flags_propagation_and_data():
    o = ocifs.mount_options(["nosuid", "strictatime", "mode=755", "size=65536k", "rprivate", "ro"])
    assert o.flags & steps.MS_NOSUID and o.flags & steps.MS_RDONLY
    assert o.propagation == steps.MS_PRIVATE | steps.MS_REC
    assert o.data == "mode=755,size=65536k"
    assert ocifs.mount_options(["ro", "rw"]).flags & steps.MS_RDONLY == 0  # the last word wins


@pytest.mark.parametrize("bad, words", [
    ({"ociVersion": "2.0.0"}, ["2.0.0", "1.0.x"]),
    ({"root": {}}, ["root.path"]),
    ({"process": {"args": []}}, ["process.args"]),
    ({"process__cwd": "relative"}, ["process.cwd", "absolute"]),
    ({"linux__namespaces": [{"type": "pid"}, {"type": "pid"}]}, ["pid", "twice"]),
    ({"linux__namespaces": [{"type": "bogus"}]}, ["bogus"]),
    ({"linux__namespaces": [{"type": "mount"}]}, ["hostname", "uts"]),
    ({"process__capabilities": {"bounding": ["chown"]}}, ["chown", "CAP_CHOWN"]),
    ({"process__capabilities": {"bounding": [7]}}, ["7", "not a capability"]),
    ({"process__rlimits": [{"type": "RLIMIT_TEST", "soft": 1, "hard": 1}]}, ["RLIMIT_TEST"]),
    ({"linux__rootfsPropagation": "sideways"}, ["sideways"]),
    ({"hooks": {"prestart": [{"path": "relative"}]}}, ["hooks.prestart[0].path"]),
])
def test_bad_config_is_one_line_naming_the_field(bad, words):
    with pytest.raises(InvalidSpec) as e:
        oci.plan(doc(**bad) if "ociVersion" not in bad else {**doc(), **bad}, FACTS)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_an_unknown_capability_is_left_out_and_named_as_runc_1_1_does():
    """runc 1.1 warns "ignoring unknown or unavailable capabilities" and runs (runtime-tools'
    process_capabilities_fail): a capability newer than the runtime is not a reason to fail."""
    p = oci.plan(doc(process__capabilities={"bounding": ["CAP_CHOWN", "CAP_TEST"], "effective": ["CAP_TEST"]}), FACTS)
    (caps,) = [s for s in p.init if isinstance(s, steps.SetCapabilities)]
    assert caps.bounding == ("chown",) and caps.effective == () and caps.ignored == ("CAP_TEST",)


def test_oom_score_adj_and_rlimits_are_set_before_create_returns():
    """runc's parent sets them during create: a kernel that refuses one fails create, not start."""
    p = oci.plan(doc(process__oomScoreAdj=-500, process__rlimits=[{"type": "RLIMIT_NOFILE", "soft": 9, "hard": 9}]),
                 FACTS)
    kinds = [type(s).__name__ for s in p.init]
    assert kinds.index("OomScoreAdj") < kinds.index("WaitStart") and kinds.index("SetRlimit") < kinds.index("WaitStart")


def test_a_privileged_configs_dev_ptmx_becomes_the_pts_symlink_and_named_devices_are_made_once():
    """containerd lists every host device for a privileged container, /dev/ptmx among them;
    runc makes /dev/ptmx the pts/ptmx symlink whatever the config says, and makes no
    default symlink over a path the config names."""
    devices = [{"path": "/dev/ptmx", "type": "c", "major": 5, "minor": 2},
               {"path": "/dev/fd", "type": "c", "major": 1, "minor": 3},
               {"path": "/dev/console", "type": "c", "major": 5, "minor": 1}]
    p = oci.plan(doc(linux__devices=devices, process__terminal=True), FACTS)
    made = [s.path.removeprefix("/b/rootfs") for s in p.init if isinstance(s, (steps.MakeNode, steps.Symlink))]
    assert made.count("/dev/ptmx") == 1 and made.count("/dev/fd") == 1 and made.count("/dev/console") == 1
    (ptmx,) = [s for s in p.init if isinstance(s, steps.Symlink) and s.path.endswith("/dev/ptmx")]
    assert ptmx.target == "pts/ptmx"


def test_without_a_mount_namespace_the_host_mounts_are_kept_and_the_root_chrooted_into_as_runc_does():
    p = oci.plan(doc(linux__namespaces=[{"type": "pid"}, {"type": "uts"}]), FACTS)
    assert not [s for s in p.init if isinstance(s, (steps.Mount, steps.MakeNode))]
    (root,) = [s for s in p.init if isinstance(s, steps.PivotRoot)]
    assert root.chroot and root.new_root == "/b/rootfs" and root.command() == "cd /b/rootfs && chroot ."


def test_joined_namespaces_come_first_the_user_one_before_the_others():
    p = oci.plan(doc(linux__namespaces=[{"type": "network", "path": "/run/netns/x"}, {"type": "mount"},
                                        {"type": "user", "path": "/proc/1/ns/user"}, {"type": "uts"}]), FACTS)
    assert [j.kind for j in p.join] == ["user", "network"]
    assert "net" not in p.unshare.namespaces


def test_in_a_user_namespace_devices_are_bound_from_the_host_not_made():
    d = doc(linux__namespaces=[{"type": "user"}, {"type": "mount"}, {"type": "uts"}],
            linux__uidMappings=[{"containerID": 0, "hostID": 1000, "size": 10}],
            linux__gidMappings=[{"containerID": 0, "hostID": 1000, "size": 10}])
    p = oci.plan(d, FACTS)
    assert not [s for s in p.init if isinstance(s, steps.MakeNode)]
    null = next(s for s in p.init if isinstance(s, steps.Mount) and s.target == "/b/rootfs/dev/null")
    assert null.source == "/dev/null" and null.flags == steps.MS_BIND
    assert p.idmap.uid_map == ((0, 1000, 10),)
    assert p.unshare.namespaces[0] == "user"


def test_shared_root_propagation_is_set_again_after_pivot():
    p = oci.plan(doc(linux__rootfsPropagation="shared"), FACTS)
    pivot = next(i for i, s in enumerate(p.init) if isinstance(s, steps.PivotRoot))
    after = p.init[pivot + 1]
    assert isinstance(after, steps.Mount) and after.target == "/" and after.flags == steps.MS_SHARED
    first = p.init[0]
    assert first.target == "/" and first.flags == steps.MS_SHARED


def test_hooks_keep_their_kind_and_order():
    h = {k: [{"path": "/bin/true", "args": ["true", k]}, {"path": "/bin/echo"}] for k in oci.HOOK_KINDS}
    p = oci.plan(doc(hooks=h), FACTS)
    assert [x.args for x in p.hooks["poststop"]] == [("true", "poststop"), ()]
    inside = [s.kind for s in p.init if isinstance(s, steps.RunHook)]
    assert inside == ["createContainer", "createContainer", "startContainer", "startContainer"]


def test_devices_from_config_are_made_and_allowed_in_the_cgroup():
    d = doc(linux__devices=[{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600}],
            linux__resources={"devices": [{"allow": False, "access": "rwm"},
                                          {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"}]})
    p = oci.plan(d, FACTS)
    fuse = next(s for s in p.init if isinstance(s, steps.MakeNode) and s.path.endswith("/dev/fuse"))
    assert (fuse.major, fuse.minor, fuse.mode) == (10, 229, 0o600)


def test_v1_device_rules_deny_then_allow_in_order():
    writes = v1_writes([DeviceRule("a", -1, -1, "rwm", allow=False), DeviceRule("c", 10, 229, "rw")])
    # the reset first (deny everything), then the rules as given
    assert list(writes) == [("devices.deny", "a"), ("devices.deny", "a *:* rwm"), ("devices.allow", "c 10:229 rw")]


@pytest.mark.parametrize("given, number", [("9", 9), ("KILL", 9), ("sigterm", 15), ("SIGUSR1", 10), ("0", 0)])
def test_signals_in_runc_forms(given, number):
    assert ops.parse_signal(given) == number


@pytest.mark.parametrize("given", ["-1", "99", "SIGNOPE", ""])
def test_bad_signals_are_refused(given):
    with pytest.raises(Exception) as e:
        ops.parse_signal(given)
    assert "invalid signal" in str(e.value)


def test_update_writes_only_what_it_names_into_each_hierarchy():
    from minibox.plan import ociresources

    res = {"memory": {"limit": 67108864}, "pids": {"limit": 20}}
    v1 = ociresources.plan_update(res, ("/sys/fs/cgroup/memory/minibox/oci-a", "/sys/fs/cgroup/pids/minibox/oci-a",
                                        "/sys/fs/cgroup/cpu/minibox/oci-a"), v2=False)
    assert [(s.path.split("/")[4], s.limits) for s in v1] == [("memory", (("memory.limit_in_bytes", "67108864"),)),
                                                                ("pids", (("pids.max", "20"),))]
    v2 = ociresources.plan_update(res, ("/sys/fs/cgroup/unified/minibox/oci-a",), v2=True)
    assert [s.limits for s in v2] == [(("memory.max", "67108864"), ("pids.max", "20"))]
    assert ociresources.plan_update({"pids": {"limit": -1}}, ("/sys/fs/cgroup/pids/x",), v2=False)[0].limits == \
        (("pids.max", "max"),)


def test_a_cgroup_mount_on_v2_is_cgroup2_under_a_cgroup_namespace_and_the_group_bound_without():
    """runc's rule: with a cgroup namespace a fresh cgroup2 mount (its root is the
    container's group); without one, the container's own group bound there."""
    mount = {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "nosuid"]}
    v2 = FACTS._replace(cgroup_dirs=("/sys/fs/cgroup/m/c1",), cgroup_v2=True)
    own = oci.plan(doc(mounts=[mount], linux__namespaces=[{"type": "pid"}, {"type": "mount"}, {"type": "uts"},
                                                          {"type": "cgroup"}]), v2)
    [m] = [s for s in own.init if isinstance(s, steps.Mount) and s.target == "/b/rootfs/sys/fs/cgroup"]
    assert (m.fstype, bool(m.flags & ocifs.MS_RDONLY)) == ("cgroup2", True) and "cgroup" in own.unshare.namespaces
    shared = oci.plan(doc(mounts=[mount]), v2)
    bound = [s for s in shared.init if isinstance(s, steps.Mount) and s.target == "/b/rootfs/sys/fs/cgroup"]
    assert [s.source for s in bound] == ["/sys/fs/cgroup/m/c1"] * 2 and bound[1].flags & ocifs.MS_RDONLY


def test_limits_need_their_controllers():
    from minibox.engine.facts import limits_asked
    from minibox.runtime import cgroups

    asked = limits_asked({"memory": 1 << 26, "memory_swap": -1, "pids_limit": 33, "cpus": 0.0})
    assert asked == {"memory": "-m and --memory-swap", "pids": "--pids-limit"}
    with pytest.raises(InvalidSpec, match="need cgroups"):
        cgroups.check_limits(cgroups.Layout("none", ""), asked)
    cgroups.check_limits(cgroups.Layout("none", ""), {})
