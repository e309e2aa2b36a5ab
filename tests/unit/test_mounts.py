"""`run`'s root: its runtime spec (Docker's defaults), planned by the one planner: order, flags, masks, pivot_root."""

from minibox.runtime.caps import DEFAULT_CAPS
from minibox.model import ContainerRecord, ContainerSpec, MountSpec
from minibox.plan import run as runplan
from minibox.plan.mounts import MASKED_PATHS, READONLY_PATHS, RootfsLayout
from minibox.plan.steps import (
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    CopyUp,
    MakeNode,
    MaskPath,
    Mount,
    PivotRoot,
    ReadonlyPath,
    SetCapabilities,
    SetUser,
)

SPEC = ContainerSpec(image="busybox", network="none")
REC = ContainerRecord(id="1" * 64, name="c", created=0.0, spec=SPEC, image_layers=("/img/rootfs",),
                      hostname="111111111111", env=("PATH=/bin",), caps=DEFAULT_CAPS, argv=("sh",),
                      user={"uid": 0, "gid": 0, "groups": []},
                      mounts=(MountSpec("volume", "data", "/data"), MountSpec("bind", "/srv", "/srv", readonly=True),
                              MountSpec("tmpfs", "", "/run", options="size=1m,exec")))


def plan(spec=SPEC, rec=REC, **facts_too):
    facts = runplan.RunFacts(record=rec._replace(spec=spec), container_dir="/c/1", host_resolv="", seccomp=None,
                             cgroup_dirs=(), cgroup_v2=False, volume_root="/v", **facts_too)
    return runplan.plan_run(spec, facts)


NULL = {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666, "uid": 0, "gid": 0,
        "perms": "rw"}


def test_process_flags_become_spec_fields_once():
    """--ulimit, --sysctl, --shm-size, --init, --device, --security-opt no-new-privileges: each
    a field of the runtime spec, which the one planner turns into its steps."""
    spec = SPEC._replace(ulimits=("nofile=1024:2048",), sysctls=("kernel.shmmax=4096",), shm_size=128 << 20,
                         init=True, devices=("/dev/fuse:/dev/fuse:rw",), no_new_privs=True)
    p = plan(spec, devices=(NULL,), init="/usr/bin/tini-static")
    doc = p.spec
    assert doc["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048}]
    assert doc["process"]["noNewPrivileges"] is True
    assert doc["process"]["args"] == ["/sbin/docker-init", "--", "sh"]
    assert {"destination": "/sbin/docker-init", "type": "bind", "source": "/usr/bin/tini-static",
            "options": ["bind", "ro"]}.items() <= next(m for m in doc["mounts"]
                                                       if m["destination"] == "/sbin/docker-init").items()
    assert "size=131072k" in next(m for m in doc["mounts"] if m["destination"] == "/dev/shm")["options"]
    assert doc["linux"]["sysctl"] == {"kernel.shmmax": "4096"}
    assert doc["linux"]["devices"] == [{k: v for k, v in NULL.items() if k != "perms"}]
    cmds = [s.command() for s in p.init]
    assert any("mknod" in c and "/dev/fuse c 10 229" in c for c in cmds)
    assert any("kernel/shmmax" in c or "kernel.shmmax" in c for c in cmds)


def test_privileged_unmasks_and_opens_the_devices():
    p = plan(SPEC._replace(privileged=True), devices=(NULL,))
    doc = p.spec
    assert doc["linux"]["maskedPaths"] == [] and doc["linux"]["readonlyPaths"] == []
    assert "ro" not in next(m for m in doc["mounts"] if m["destination"] == "/sys")["options"]
    assert not any(isinstance(s, (MaskPath, ReadonlyPath)) for s in p.init)


def test_order_private_overlay_then_pivot():
    steps = list(plan().init)
    assert isinstance(steps[0], Mount) and steps[0].flags == MS_REC | MS_PRIVATE
    assert steps[1].fstype == "overlay"
    assert steps[1].data == "lowerdir=/img/rootfs,upperdir=/c/1/upper,workdir=/c/1/work"
    pivot = next(i for i, s in enumerate(steps) if isinstance(s, PivotRoot))
    assert steps[pivot].new_root == "/c/1/merged"
    targets = [s.target for s in steps if isinstance(s, Mount)]
    assert targets.index("/c/1/merged/proc") < pivot
    masked = [s.path for s in steps if isinstance(s, MaskPath)]
    assert masked == ["/c/1/merged" + p for p in MASKED_PATHS]
    assert [s.path for s in steps if isinstance(s, ReadonlyPath)] == ["/c/1/merged" + p for p in READONLY_PATHS]


def test_devices_and_readonly_sys():
    steps = plan().init
    nodes = {s.path.rsplit("/", 1)[1]: (s.major, s.minor) for s in steps if isinstance(s, MakeNode)}
    assert nodes == {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9),
                     "tty": (5, 0)}
    sys_mount = next(s for s in steps if isinstance(s, Mount) and s.target == "/c/1/merged/sys")
    assert sys_mount.flags & MS_RDONLY


def test_volumes_binds_and_tmpfs_as_the_spec_mounts_them():
    steps = list(plan().init)
    copy = next(i for i, s in enumerate(steps) if isinstance(s, CopyUp))
    assert steps[copy].dest == "/v/data/_data" and steps[copy + 1].target == "/c/1/merged/data"  # before its bind
    srv = [s for s in steps if isinstance(s, Mount) and s.target == "/c/1/merged/srv"]
    assert len(srv) == 2 and srv[1].flags & MS_RDONLY  # :ro is a remount of the bind
    run = next(s for s in steps if isinstance(s, Mount) and s.target == "/c/1/merged/run")
    assert run.fstype == "tmpfs" and run.data == "size=1m" and not run.flags & MS_NOEXEC  # exec: Docker's noexec cleared
    assert run.flags & MS_NOSUID and run.flags & MS_NODEV


def test_read_only_root_and_the_process():
    p = plan(SPEC._replace(read_only=True))
    doc = p.spec
    assert doc["root"] == {"path": "/c/1/merged", "readonly": True}
    assert doc["process"]["capabilities"]["bounding"] == ["CAP_" + c.upper() for c in DEFAULT_CAPS]
    assert doc["process"]["noNewPrivileges"] is False  # Docker's default: only --security-opt no-new-privileges
    after = list(p.init)[[type(s) for s in p.init].index(PivotRoot):]
    assert any(isinstance(s, Mount) and s.target == "/" and s.flags & MS_RDONLY for s in after)
    kinds = [type(s) for s in p.init]
    assert kinds.index(SetUser) < kinds.index(SetCapabilities)


def test_commands_render():
    cmds = [s.command() for s in plan().init]
    assert "mount --make-rprivate /" in cmds
    assert ("mount -t overlay -o nodev,lowerdir=/img/rootfs,upperdir=/c/1/upper,workdir=/c/1/work overlay "
            "/c/1/merged") in cmds
    assert "mknod -m 666 /c/1/merged/dev/null c 1 3" in cmds
    assert "cd /c/1/merged && pivot_root . . && umount -l . && cd /" in cmds
