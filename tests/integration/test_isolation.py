"""Isolation, tested by attacking it: each test performs an attack from inside a container
(tests/helpers/attack.c, in the `attack` image) and asserts the safe outcome, next to a
positive control showing the same helper or command works where it should.

The 127.0.0.0/8 guard is in test_network.py, so that it runs on both firewall backends.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PROJECT, ROOT, busybox_rootfs, mb, sh

README = PROJECT / "README.md"


def run_rm(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return mb("run", "--rm", "--network", "none", *args, env=env)


# --- 1. host devices ----------------------------------------------------------------------------


@pytest.fixture
def loop_device(tmp_path):
    """A loop device on the host whose contents a container must not read."""
    backing = tmp_path / "disk.img"
    backing.write_bytes(b"SECRET-ON-THE-LOOP-DEVICE" + b"\0" * (1024 * 1024))
    dev = sh(f"losetup -f --show {backing}").stdout.strip()
    yield dev
    sh(f"losetup -d {dev}", check=False)


@pytest.mark.parametrize("cgroup", ["auto", "v2"])
def test_host_devices_cannot_be_opened(attack_image, loop_device, cgroup):
    """mknod works (Docker allows it) but opening what was made is refused by the device
    cgroup: v1's devices controller on this host, or (MINIBOX_CGROUP=v2) the eBPF program
    on the v2 hierarchy this hybrid host also mounts."""
    env = {"MINIBOX_CGROUP": cgroup}
    rdev = os.stat(loop_device).st_rdev
    script = (f"mknod /dev/kmsg2 c 1 11 && /attack open /dev/kmsg2; "
              f"mknod /dev/loopx b {os.major(rdev)} {os.minor(rdev)} && /attack open /dev/loopx; "
              "echo MARKER-minibox-devtest > /dev/kmsg2; "
              "/attack open /dev/null; /attack open /dev/urandom")
    out = run_rm(attack_image, "sh", "-c", script, env=env).stdout.splitlines()
    assert out == ["refused open EPERM", "refused open EPERM", "ok read 0 bytes", "ok read 64 bytes"]
    assert "MARKER-minibox-devtest" not in sh("dmesg", check=False).stdout
    # where the rules live
    cid = mb("run", "-d", "--network", "none", "--name", "dev", attack_image, "sleep", "1000",
             env=env, check=True).stdout.strip()
    parent = os.environ["MINIBOX_CGROUP_PARENT"]
    if cgroup == "v2":
        assert Path(f"/sys/fs/cgroup/unified/{parent}/{cid}").is_dir()
        assert not Path(f"/sys/fs/cgroup/devices/{parent}/{cid}").exists()
        assert "v2: an eBPF program on" in mb("explain", "dev", env=env, check=True).stdout
    else:
        listed = Path(f"/sys/fs/cgroup/devices/{parent}/{cid}/devices.list").read_text().split("\n")
        assert listed[:3] == ["c *:* m", "b *:* m", "c 1:3 rwm"]
        assert "v1 devices controller" in mb("explain", "dev", check=True).stdout
    # exec'd processes are in the same device cgroup
    assert mb("exec", "dev", "sh", "-c", "mknod /dev/k3 c 1 11 && /attack open /dev/k3",
              env=env).stdout == "refused open EPERM\n"
    mb("rm", "-f", "dev", env=env, check=True)


def test_a_device_node_shipped_in_the_image_is_inert(attack_image):
    """The image carries /kmsgnode (c 1:11): the rootfs is mounted nodev, and the device
    cgroup would refuse it anyway."""
    out = run_rm(attack_image, "sh", "-c", "ls -l /kmsgnode; /attack open /kmsgnode; mount | grep ' on / '").stdout
    lines = out.splitlines()
    assert lines[0].startswith("crw")  # the node is there...
    assert lines[1] == "refused open EACCES"  # ...and opens nothing
    assert "nodev" in lines[2]


def test_without_a_device_cgroup_mknod_is_dropped(attack_image):
    """MINIBOX_CGROUP=none stands for a host where neither the v1 devices controller nor
    cgroup v2 can be used: CAP_MKNOD goes, the rootfs is nodev, and minibox says so once."""
    env = {"MINIBOX_CGROUP": "none"}
    (ROOT / "cache" / "warned-no-device-cgroup").unlink(missing_ok=True)  # (another test may have had it said)
    first = run_rm(attack_image, "sh", "-c", "mknod /dev/k c 1 11; grep CapBnd /proc/self/status", env=env)
    assert "Operation not permitted" in first.stderr and first.stdout.strip().endswith("a00425fb")  # 0xa80425fb without bit 27
    assert "no device cgroup here" in first.stderr
    again = run_rm(attack_image, "true", env=env)
    assert again.returncode == 0 and "no device cgroup" not in again.stderr  # said once
    refused = run_rm("-m", "64m", "busybox", "true", env=env)
    assert refused.returncode == 125 and "need cgroups" in refused.stderr


# --- 2. mount targets resolved inside the rootfs -----------------------------------------------------


def make_image(name: str, tmp_path: Path, setup) -> str:
    rootfs = tmp_path / name
    sh(f"cp -a {busybox_rootfs()} {rootfs}")
    setup(rootfs)
    mb("image", "import", str(rootfs), name, check=True)
    return name


def test_an_image_whose_proc_is_a_symlink_does_not_start(tmp_path):
    """/proc -> dev/plink -> ../realproc once got proc mounted unmasked at /realproc."""
    def hostile(rootfs: Path):
        sh(f"rmdir {rootfs}/proc && mkdir {rootfs}/realproc && ln -s dev/plink {rootfs}/proc && "
           f"ln -s ../realproc {rootfs}/dev/plink")

    img = make_image("symproc", tmp_path, hostile)
    res = run_rm(img, "cat", "/realproc/sys/kernel/core_pattern")
    assert res.returncode == 125 and res.stderr.count("\n") == 1, res.stderr
    assert "/proc in the image goes through a symlink" in res.stderr
    assert mb("ps", "-aq").stdout == ""
    mb("image", "rm", img, check=True)


def test_symlinked_sys_and_dev_are_refused_too(tmp_path):
    def hostile(rootfs: Path):
        sh(f"rmdir {rootfs}/sys && mkdir {rootfs}/realsys && ln -s /realsys {rootfs}/sys")

    img = make_image("symsys", tmp_path, hostile)
    res = run_rm(img, "true")
    assert res.returncode == 125 and "/sys in the image goes through a symlink" in res.stderr
    mb("image", "rm", img, check=True)


def test_etc_symlinked_to_a_host_directory_stays_inside(tmp_path):
    """An image whose /etc is a symlink to an absolute host path: minibox's hostname, hosts
    and resolv.conf land in the container's own copy of that path, never on the host."""
    host_dir = tmp_path / "host-etc"
    host_dir.mkdir()

    def hostile(rootfs: Path):
        sh(f"rm -rf {rootfs}/etc && ln -s {host_dir} {rootfs}/etc")

    img = make_image("symetc", tmp_path, hostile)
    out = run_rm("--hostname", "inside", img, "sh", "-c", f"cat /etc/hostname; ls {host_dir}").stdout.split()
    assert out[0] == "inside" and {"hostname", "hosts", "resolv.conf"} <= set(out[1:])
    assert list(host_dir.iterdir()) == []  # the host's directory is untouched
    mb("image", "rm", img, check=True)


def test_masks_apply_where_proc_really_is():
    out = run_rm("busybox", "sh", "-c", "wc -c < /proc/keys; echo x > /proc/sys/kernel/core_pattern").stderr
    assert "Read-only file system" in out


# --- 4. '/' not a mount point: no chroot out -------------------------------------------------------


def test_chroot_escape_stays_in_the_container(attack_image):
    """chroot into a subdirectory, `cd ..` past it: what a process with CAP_SYS_CHROOT tries.
    The host's files (the project directory here) must stay out of sight."""
    marker = PROJECT / "pyproject.toml"
    assert run_rm(attack_image, "/attack", "chroot-escape", str(marker)).stdout == "refused escape ENOENT\n"
    # positive control: the helper does see a file that is there
    assert run_rm(attack_image, "/attack", "chroot-escape", "/linuxrc").stdout.startswith("ok escaped")


def test_chroot_escape_from_a_container_started_in_a_chroot(attack_image, chroot_host, tmp_path):
    """minibox itself in a chroot ('/' not a mount point): runc's --no-pivot fallback let
    the container out; now PID 1 pivots from the namespace's real root."""
    # A mount made now, after the chroot was built from binds, is seen outside the chroot only.
    outside = tmp_path / "outside"
    outside.mkdir()
    sh(f"mount -t tmpfs none {outside}")
    try:
        (outside / "marker").write_text("host\n")
        mbc = f"chroot {chroot_host} {sys.executable} -m minibox"
        out = sh(f"{mbc} run --rm --network none {attack_image} /attack chroot-escape {outside}/marker",
                 check=False).stdout
        assert out == "refused escape ENOENT\n"
    finally:
        sh(f"umount {outside}", check=False)


# --- 5. the terminal -------------------------------------------------------------------------------------


def in_a_terminal(shell_script: str, timeout: float = 30) -> str:
    """Run `shell_script` in bash on a fresh pty; everything the terminal showed."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("bash", ["bash", "--norc", "--noprofile", "-c", shell_script])
    out = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if select.select([fd], [], [], 0.2)[0]:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
    os.waitpid(pid, 0)
    os.close(fd)
    return out.decode(errors="replace")


def test_no_keystrokes_typed_into_the_callers_terminal(attack_image):
    """TIOCSTI on every fd it has: without -t, exec and run give the container pipes and a
    session of its own, so nothing can be typed into the shell that called minibox."""
    mb("run", "-d", "--network", "none", "--name", "tio", attack_image, "sleep", "1000", check=True)
    m = f"{sys.executable} -m minibox"
    inject = "'echo INJECTED-BY-CONTAINER\n'"
    script = (f"for fd in 0 1 2; do {m} exec tio /attack tiocsti $fd {inject}; "
              f"{m} exec -i tio /attack tiocsti $fd {inject}; done; "
              f"{m} run --rm --network none {attack_image} /attack tiocsti 1 {inject}; "
              f"{m} run --rm -i --network none {attack_image} /attack tiocsti 0 {inject}; "
              "read -t 2 line; echo \"READ:[$line]\"")
    seen = in_a_terminal(script)
    assert "READ:[]" in seen, seen
    assert "ok tiocsti" not in seen and seen.count("refused tiocsti") == 8
    # positive control: with -t the command has a terminal of its own, and may type into it
    own = in_a_terminal(f"{m} exec -t tio sh -c '/attack tiocsti 0 \"x\\n\"; read -t 1 line; echo GOT:$line'")
    assert "ok tiocsti" in own and "GOT:x" in own


# --- 6. the state directory ----------------------------------------------------------------------------
    mb("rm", "-f", "tio", check=True)


def test_state_root_is_private_and_planted_setuid_binaries_unreachable(attack_image):
    (ROOT / "containers").mkdir(exist_ok=True)
    os.chmod(ROOT, 0o755)  # as an older minibox, or a careless hand, left them
    os.chmod(ROOT / "containers", 0o755)
    mb("ps", check=True)
    assert (os.stat(ROOT).st_mode & 0o777, os.stat(ROOT / "containers").st_mode & 0o777) == (0o700, 0o700)
    cid = mb("run", "-d", "--network", "none", "--name", "suid", attack_image, "sleep", "1000",
             check=True).stdout.strip()
    mb("exec", "suid", "sh", "-c", "cp /attack /tmp/rootshell && chmod 4755 /tmp/rootshell", check=True)
    planted = ROOT / "containers" / cid / "upper/tmp/rootshell"
    assert os.stat(planted).st_mode & 0o4000  # it is there, setuid root...
    code = (f"import os; os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)\n"
            f"try:\n    os.stat({str(planted)!r}); print('reachable')\nexcept PermissionError: print('denied')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.stdout.strip() == "denied"  # ...but no other user can reach it


# --- 7. image references --------------------------------------------------------------------------------
    mb("rm", "-f", "suid", check=True)


def test_image_references_cannot_name_host_directories(tmp_path):
    victim = tmp_path / "victim"
    (victim / "rootfs/bin").mkdir(parents=True)
    (victim / "image.json").write_text('{"created": 0, "size": 0}')
    rel = os.path.relpath(victim, ROOT / "images")
    for args in (("image", "rm", rel), ("run", "--rm", rel, "true"), ("image", "import", str(victim), "../x"),
                 ("run", "--rm", "../../x", "true")):
        res = mb(*args)
        assert res.returncode == 125 and "invalid image reference" in res.stderr, (args, res.stderr)
        assert res.stderr.count("\n") == 1
    assert (victim / "rootfs/bin").is_dir()


# --- 8. seccomp --------------------------------------------------------------------------------------------


def test_default_seccomp_profile_refuses_namespaces_keyring_io_uring(attack_image):
    refused = run_rm(attack_image, "/attack", "syscalls").stdout.splitlines()
    assert all(line.startswith("refused") for line in refused) and len(refused) == 6, refused
    mb("run", "-d", "--network", "none", "--name", "sc", attack_image, "sleep", "1000", check=True)
    try:
        assert mb("exec", "sc", "/attack", "syscalls").stdout.splitlines() == refused
        for where in (("run", "--rm", "--network", "none", "busybox"), ("exec", "sc")):
            status = mb(*where, "grep", "^Seccomp:", "/proc/self/status", check=True).stdout
            assert status == "Seccomp:\t2\n"
    finally:
        mb("rm", "-f", "sc", check=True)
    # positive control: without the filter the same calls go through (so the filter refused them)
    free = run_rm("--security-opt", "seccomp=unconfined", attack_image, "/attack", "syscalls").stdout
    assert "ok unshare-user" in free and "ok keyctl" in free and "ok io_uring_setup" in free
    assert run_rm("--security-opt", "seccomp=unconfined", "busybox", "grep", "^Seccomp:",
                  "/proc/self/status").stdout == "Seccomp:\t0\n"


def test_a_profile_of_ones_own_in_dockers_format(tmp_path):
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}))
    res = run_rm("--security-opt", f"seccomp={profile}", "busybox", "sh", "-c", "mkdir /x; echo done")
    assert "Permission denied" in res.stderr and res.stdout == "done\n"


@pytest.mark.parametrize("opt, message", [
    ("seccomp=/nonexistent.json", "seccomp profile /nonexistent.json: No such file or directory"),
    ("seccomp={bad_json}", "is not valid JSON"),
    ("seccomp={bad_action}", 'unsupported action "SCMP_ACT_EXPLODE"'),
    ("apparmor=unconfined", "AppArmor is not used by minibox"),
    ("no-new-privileges=maybe", 'unknown --security-opt "no-new-privileges=maybe"'),
])
def test_bad_security_opts_change_nothing(tmp_path, opt, message):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    bad_action = tmp_path / "action.json"
    bad_action.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW",
                                      "syscalls": [{"names": ["read"], "action": "SCMP_ACT_EXPLODE"}]}))
    res = mb("run", "--rm", "--security-opt", opt.format(bad_json=bad_json, bad_action=bad_action),
             "busybox", "true")
    assert res.returncode == 125 and message in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert mb("ps", "-aq").stdout == "" and not any((ROOT / "containers").iterdir())


# --- 9. published ports are held by a listener -------------------------------------------------------------


def test_a_published_port_is_held_by_a_listening_socket():
    mb("run", "-d", "--name", "held", "-p", "8080:80", "busybox", "httpd", "-f", "-p", "80", check=True)
    listeners = sh("ss -ltnp 'sport = :8080'").stdout
    assert "minibox-shim" in listeners  # `ss` names the real holder
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    with pytest.raises(OSError) as err:
        s.bind(("0.0.0.0", 8080))
        s.listen()
    assert err.value.errno == 98  # EADDRINUSE: no second server can quietly take the port
    s.close()
    mb("rm", "-f", "held", check=True)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 8080))  # positive control: free again once the container is gone
    s.listen()
    s.close()


# --- 10. smaller ones -------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--pids-limit", "-3"], "invalid --pids-limit -3"),
    (["-m", "1k"], 'memory limit "1k" is too small: the minimum is 6m'),
])
def test_limits_out_of_range(args, message):
    res = mb("run", "--rm", "--network", "none", *args, "busybox", "true")
    assert res.returncode == 125 and message in res.stderr and res.stderr.count("\n") == 1
    assert mb("ps", "-aq").stdout == ""


def test_unlimited_pids_is_accepted():
    assert run_rm("--pids-limit", "-1", "busybox", "true").returncode == 0


def test_image_import_of_a_broken_tar_says_why_and_keeps_nothing(tmp_path):
    broken = tmp_path / "broken.tar"
    sh(f"tar -C {busybox_rootfs()} -cf {broken} . && truncate -s 1000000 {broken}")
    before = sorted(p.name for p in (ROOT / "images/layers").iterdir())
    res = mb("image", "import", str(broken), "broken")
    assert res.returncode == 125 and res.stderr.count("\n") == 1
    assert re.search(r"broken\.tar.*unexpected end of data", res.stderr), res.stderr
    assert "broken" not in mb("images").stdout
    assert sorted(p.name for p in (ROOT / "images/layers").iterdir()) == before
    assert not any((ROOT / "images/tmp").iterdir())


# --- explain and the README -----------------------------------------------------------------------------------


def test_explain_shows_each_defence_and_what_it_stops():
    mb("run", "-d", "--name", "ex", "busybox", "sleep", "1000", check=True)
    out = mb("explain", "ex", check=True).stdout
    section = out.split("What keeps ex in", 1)[1]
    for name in ("capabilities", "no_new_privs", "seccomp", "masked paths", "read-only paths", "devices",
                 "127.0.0.0/8 guard"):
        assert re.search(rf"^{re.escape(name)}\s", section, re.M), name
    assert "14: audit_write, chown" in section and "mode filter, 1 filter(s)" in section
    assert section.count("stops: ") == 7 and "in place" in section
    mb("rm", "-f", "ex", check=True)


def readme_blocks(section: str = "## What keeps a container in") -> list[tuple[str, list[str]]]:
    """The `$ command` lines of a README section's console blocks, each with what it prints."""
    text = README.read_text().split(section, 1)[1].split("\n## ", 1)[0]
    steps: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
    return steps


def test_readme_defences_refuse_as_written():
    from test_walkthrough import matches

    steps = readme_blocks()
    assert len(steps) >= 6
    try:
        for cmd, expected in steps:
            res = subprocess.run(["sh", "-c", cmd + " 2>&1"], capture_output=True, text=True, timeout=60)
            assert matches(expected, res.stdout), f"`{cmd}` printed:\n{res.stdout}\nexpected:\n" + "\n".join(expected)
    finally:
        mb("rm", "-f", "web")


def test_readme_image_defences_run_as_written():
    from test_walkthrough import matches

    steps = readme_blocks("## What keeps an image in")
    assert len(steps) >= 3
    try:
        for cmd, expected in steps:
            res = subprocess.run(["sh", "-c", cmd + " 2>&1"], capture_output=True, text=True, timeout=60)
            assert matches(expected, res.stdout), f"`{cmd}` printed:\n{res.stdout}\nexpected:\n" + "\n".join(expected)
    finally:
        mb("rm", "-f", "box")
