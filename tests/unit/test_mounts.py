"""The rootfs plan: order, flags, and that it ends in pivot_root."""

from minibox.plan.mounts import MASKED_PATHS, READONLY_PATHS, RootfsLayout, plan_rootfs
from minibox.plan.steps import MS_PRIVATE, MS_RDONLY, MS_REC, MakeNode, Mount, PivotRoot

LAYOUT = RootfsLayout.for_container("/img/rootfs", "/c/1")


def test_order_private_overlay_then_pivot():
    steps = plan_rootfs(LAYOUT)
    assert isinstance(steps[0], Mount) and steps[0].flags == MS_REC | MS_PRIVATE
    assert steps[1].fstype == "overlay"
    assert steps[1].data == "lowerdir=/img/rootfs,upperdir=/c/1/upper,workdir=/c/1/work"
    assert isinstance(steps[-1], PivotRoot) and steps[-1].new_root == "/c/1/merged"
    targets = [s.target for s in steps if isinstance(s, Mount)]
    assert targets.index("/c/1/merged/proc") < targets.index("/c/1/merged/proc/kcore")


def test_devices_and_readonly_sys():
    steps = plan_rootfs(LAYOUT)
    nodes = {s.path.rsplit("/", 1)[1]: (s.major, s.minor) for s in steps if isinstance(s, MakeNode)}
    assert nodes == {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9),
                     "tty": (5, 0)}
    sys_mount = next(s for s in steps if isinstance(s, Mount) and s.target == "/c/1/merged/sys")
    assert sys_mount.flags & MS_RDONLY


def test_masks_and_readonly_paths_present():
    targets = {s.target for s in plan_rootfs(LAYOUT) if isinstance(s, Mount)}
    for p in MASKED_PATHS + READONLY_PATHS:
        assert "/c/1/merged" + p in targets


def test_commands_render():
    cmds = [s.command() for s in plan_rootfs(LAYOUT)]
    assert "mount --make-rprivate /" in cmds
    assert ("mount -t overlay -o nodev,lowerdir=/img/rootfs,upperdir=/c/1/upper,workdir=/c/1/work overlay "
            "/c/1/merged") in cmds
    assert "mknod -m 666 /c/1/merged/dev/null c 1 3" in cmds
    assert "mount -o remount,bind,ro,nosuid,nodev,noexec /c/1/merged/proc/sys" in cmds
    assert cmds[-1] == "cd /c/1/merged && pivot_root . . && umount -l . && cd /"
