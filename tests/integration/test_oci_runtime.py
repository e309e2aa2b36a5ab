"""minibox-oci, driven as an engine drives runc: a bundle's config.json, then create, start, state, kill, delete."""

import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import busybox_rootfs, sh, wait_for

CAPS = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]


def oci(*args, root: Path, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
    """The real `minibox-oci` command line, as conmon or containerd-shim call it. Its output
    goes to files, as engines arrange it: the container's process inherits create's stdout
    and stderr, so a pipe would stay open as long as the container runs."""
    cmd = [sys.executable, "-c", "import sys; sys.argv[0] = 'minibox-oci'; from minibox.oci.main import run_main; "
           "run_main()", "--root", str(root), *args]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        code = subprocess.run(cmd, stdout=out, stderr=err, timeout=timeout, stdin=subprocess.DEVNULL).returncode
        out.seek(0)
        err.seek(0)
        res = subprocess.CompletedProcess(cmd, code, out.read(), err.read())
    if check and res.returncode != 0:
        raise AssertionError(f"minibox-oci {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def config(args, **extra) -> dict:
    doc = {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": args,
                    "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "cwd": "/",
                    "capabilities": {k: CAPS for k in ("bounding", "effective", "permitted")},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}], "noNewPrivileges": True},
        "root": {"path": "rootfs"},
        "hostname": "ocibox",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                    "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                   {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                    "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
                   {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                    "options": ["nosuid", "noexec", "nodev", "ro"]},
                   {"destination": "/out", "type": "bind", "source": "out", "options": ["rbind", "rw"]}],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
                  "resources": {"devices": [{"allow": False, "access": "rwm"}], "pids": {"limit": 50}},
                  "maskedPaths": ["/proc/kcore", "/proc/timer_list"], "readonlyPaths": ["/proc/sys"]},
    }
    for key, value in extra.items():
        parent = doc
        *path, last = key.split("__")
        for p in path:
            parent = parent[p]
        parent[last] = value
    return doc


class Bundle:
    """A bundle directory (config.json, rootfs/, out/ bound at /out) and the runtime's --root."""

    def __init__(self, path: Path, root: Path):
        self.path, self.root, self.parent = path, root, path.parent

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return str(self.path)

    def write(self, doc: dict) -> None:
        (self.path / "config.json").write_text(json.dumps(doc))


@pytest.fixture
def bundle():
    # Under /var/tmp, not pytest's 0700 tmp: a user namespace's root (an unprivileged uid on
    # the host) must be able to reach its bundle, as with runc.
    top = Path(tempfile.mkdtemp(prefix="minibox-oci-test-", dir="/var/tmp"))
    top.chmod(0o755)
    b = Bundle(top / "bundle", top / "state")
    try:
        shutil.copytree(busybox_rootfs(), b / "rootfs", symlinks=True)
        (b / "out").mkdir()
        yield b
        for cid in (os.listdir(b.root) if b.root.exists() else ()):
            oci("delete", "--force", cid, root=b.root)
    finally:
        shutil.rmtree(top)


def state(b, cid):
    return json.loads(oci("state", cid, root=b.root, check=True).stdout)


def test_create_waits_start_runs_delete_removes(bundle):
    bundle.write(config(["sh", "-c", "echo ran > /out/ran; hostname > /out/hostname; "
                               "grep -E '^(Cap(Bnd|Eff)|NoNewPrivs|Seccomp):' /proc/self/status > /out/status; "
                               "ulimit -n > /out/nofile; cat /proc/timer_list > /out/masked 2>&1; "
                               "echo $$ > /out/pid; exec sleep 1000"]))
    pidfile = bundle / "pid"
    oci("create", "--bundle", str(bundle), "--pid-file", str(pidfile), "c1", root=bundle.root, check=True)
    st = state(bundle, "c1")
    assert st["status"] == "created" and st["pid"] == int(pidfile.read_text())
    assert st["bundle"] == str(bundle) and st["ociVersion"] == "1.0.2"
    assert not (bundle / "out/ran").exists()  # the process waits until start
    oci("start", "c1", root=bundle.root, check=True)
    assert wait_for(lambda: (bundle / "out/pid").exists())
    assert state(bundle, "c1")["status"] == "running"
    out = bundle / "out"
    assert (out / "hostname").read_text() == "ocibox\n"
    assert (out / "pid").read_text() == "1\n"  # PID 1 of its own namespace
    status = dict(line.split(":\t") for line in (out / "status").read_text().splitlines())
    assert status["CapBnd"].strip() == f"{(1 << 0) | (1 << 5) | (1 << 10) | (1 << 29):016x}"
    assert status["NoNewPrivs"].strip() == "1"
    assert (out / "nofile").read_text() == "1024\n"
    assert (out / "masked").read_text() == ""  # masked: /dev/null bound over it
    # the pids limit went into the container's own cgroup
    cg = next(Path(p) for p in Path(f"/proc/{st['pid']}/cgroup").read_text().splitlines() if ":pids:" in p)
    assert (Path("/sys/fs/cgroup/pids") / str(cg).split(":", 2)[2].lstrip("/") / "pids.max").read_text() == "50\n"
    res = oci("delete", "c1", root=bundle.root)
    assert res.returncode == 1 and "not stopped" in res.stderr and "--force" in res.stderr
    oci("kill", "c1", "KILL", root=bundle.root, check=True)
    assert wait_for(lambda: state(bundle, "c1")["status"] == "stopped")
    oci("delete", "c1", root=bundle.root, check=True)
    res = oci("state", "c1", root=bundle.root)
    assert res.returncode == 1 and res.stderr.strip() == "minibox-oci: container c1 does not exist"


def test_lifecycle_errors_are_one_line_and_change_nothing(bundle):
    bundle.write(config(["sleep", "1000"]))
    oci("create", "--bundle", str(bundle), "c2", root=bundle.root, check=True)
    again = oci("create", "--bundle", str(bundle), "c2", root=bundle.root)
    assert again.returncode == 1 and "c2 already exists" in again.stderr
    oci("start", "c2", root=bundle.root, check=True)
    twice = oci("start", "c2", root=bundle.root)
    assert twice.returncode == 1 and "it is running, and only a created container starts" in twice.stderr
    assert state(bundle, "c2")["status"] == "running"
    oci("delete", "--force", "c2", root=bundle.root, check=True)
    for args in (("start", "nope"), ("kill", "nope"), ("delete", "nope")):
        res = oci(*args, root=bundle.root)
        assert res.returncode == 1 and res.stderr == "minibox-oci: container nope does not exist\n"
    assert oci("delete", "--force", "nope", root=bundle.root).returncode == 0  # as runc: nothing to do
    assert oci("kill", "x/../y", root=bundle.root).stderr.startswith('minibox-oci: invalid container id "x/../y"')


@pytest.mark.parametrize("change, words", [
    ({"ociVersion": "2.0.0"}, 'unsupported ociVersion "2.0.0"'),
    ({"linux__namespaces": [{"type": "mount"}, {"type": "uts"}, {"type": "network", "path": "/etc/hostname"}]},
     "/etc/hostname is not a namespace"),
    ({"linux__namespaces": [{"type": "mount"}, {"type": "uts"}, {"type": "network", "path": "/proc/self/ns/uts"}]},
     "is not a network namespace"),
    ({"process__capabilities": {"bounding": ["nope"]}}, '"nope", which is not a capability'),
    ({"mounts": [{"destination": "relative", "type": "tmpfs"}]}, "mounts[0]"),
])
def test_bad_config_is_refused_and_leaves_nothing(bundle, change, words):
    bundle.write(config(["true"], **change))
    res = oci("create", "--bundle", str(bundle), "bad", root=bundle.root)
    assert res.returncode == 1 and words in res.stderr and res.stderr.count("\n") == 1
    assert not (bundle.root / "bad").exists()


def test_malformed_config_and_json_log_lines(bundle):
    (bundle / "config.json").write_text("{not json")
    log = bundle / "log.json"
    res = oci("--log", str(log), "--log-format", "json", "create", "--bundle", str(bundle), "m", root=bundle.root)
    assert res.returncode == 1 and "config.json is not valid JSON" in res.stderr
    line = json.loads(log.read_text())
    assert line["level"] == "error" and "config.json is not valid JSON" in line["msg"] and line["time"]
    res = oci("--systemd-cgroup", "list", root=bundle.root)
    assert res.returncode == 1 and "--systemd-cgroup is not supported" in res.stderr


def test_joins_a_network_namespace_by_path_as_engines_pass_it(bundle):
    sh("ip netns add ocijoin")
    try:
        sh("ip -n ocijoin link add ocij0 type veth peer name ocij1")
        bundle.write(config(["sh", "-c", "ip link > /out/links"],
                            linux__namespaces=[{"type": t} for t in ("pid", "ipc", "uts", "mount")]
                            + [{"type": "network", "path": "/run/netns/ocijoin"}]))
        oci("create", "--bundle", str(bundle), "j", root=bundle.root, check=True)
        oci("start", "j", root=bundle.root, check=True)
        assert wait_for(lambda: state(bundle, "j")["status"] == "stopped")
        assert "ocij0" in (bundle / "out/links").read_text()
        oci("delete", "j", root=bundle.root, check=True)
    finally:
        sh("ip netns del ocijoin")


def user_namespaces_refused() -> bool:
    """The kernel refuses a user namespace to a process in a chroot (fresh-check runs the
    tests in one): there, this test cannot run, and says so."""
    return subprocess.run(["unshare", "--user", "true"], capture_output=True).returncode != 0


@pytest.mark.skipif(user_namespaces_refused(), reason="this kernel refuses user namespaces here (a chroot)")
def test_user_namespace_maps_root_to_an_unprivileged_host_uid(bundle):
    bundle.write(config(["sh", "-c", "id -u > /out/uid; cat /proc/self/uid_map > /out/map; exec sleep 1000"],
                        linux__namespaces=[{"type": t} for t in ("user", "pid", "ipc", "uts", "mount", "network")],
                        linux__uidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}],
                        linux__gidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}]))
    # As with runc, the root filesystem belongs to the mapped root, who makes /out in it.
    sh(f"chown -R 100000:100000 {bundle}/rootfs {bundle}/out")
    oci("create", "--bundle", str(bundle), "u", root=bundle.root, check=True)
    oci("start", "u", root=bundle.root, check=True)
    assert wait_for(lambda: (bundle / "out/map").exists() and (bundle / "out/map").read_text())
    assert (bundle / "out/uid").read_text() == "0\n"
    pid = state(bundle, "u")["pid"]
    uids = Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[:2]
    assert uids == ["100000", "100000"]  # root inside, nobody special outside
    oci("delete", "--force", "u", root=bundle.root, check=True)


def test_hooks_run_in_order_with_the_state_on_stdin(bundle):
    log = bundle / "hooks.log"
    hook = bundle / "hook.sh"
    hook.write_text(f"#!/bin/sh\necho \"$1 $(cat | tr -d ' ' | grep -o '\"status\":\"[a-z]*\"')\" >> {log}\n")
    hook.chmod(0o755)
    hooks = {k: [{"path": str(hook), "args": ["hook.sh", k]}]
             for k in ("prestart", "createRuntime", "poststart", "poststop")}
    # the process outlives start, so poststart sees it running (a `true` may already be gone)
    bundle.write(config(["sleep", "1000"], hooks=hooks))
    oci("create", "--bundle", str(bundle), "h", root=bundle.root, check=True)
    oci("start", "h", root=bundle.root, check=True)
    oci("kill", "h", "KILL", root=bundle.root, check=True)
    assert wait_for(lambda: state(bundle, "h")["status"] == "stopped")
    oci("delete", "h", root=bundle.root, check=True)
    assert log.read_text().splitlines() == ['prestart "status":"creating"', 'createRuntime "status":"creating"',
                                            'poststart "status":"running"', 'poststop "status":"stopped"']


def test_a_failing_create_hook_fails_create_and_leaves_nothing(bundle):
    bundle.write(config(["true"], hooks={"createRuntime": [{"path": "/bin/false"}]}))
    res = oci("create", "--bundle", str(bundle), "hf", root=bundle.root)
    assert res.returncode == 1 and "hooks.createRuntime[0] (/bin/false) failed with exit status 1" in res.stderr
    assert not (bundle.root / "hf").exists()


def test_pause_resume_and_ps(bundle):
    bundle.write(config(["sh", "-c", "sleep 1000 & exec sleep 1001"]))
    oci("create", "--bundle", str(bundle), "p", root=bundle.root, check=True)
    oci("start", "p", root=bundle.root, check=True)
    assert wait_for(lambda: len(json.loads(oci("ps", "--format", "json", "p", root=bundle.root).stdout)) == 2)
    oci("pause", "p", root=bundle.root, check=True)
    assert state(bundle, "p")["status"] == "paused"
    res = oci("pause", "p", root=bundle.root)
    assert res.returncode == 1 and "container not running (it is paused)" in res.stderr
    oci("resume", "p", root=bundle.root, check=True)
    assert state(bundle, "p")["status"] == "running"
    listed = json.loads(oci("list", "--format", "json", root=bundle.root, check=True).stdout)
    assert [c["id"] for c in listed] == ["p"]
    oci("kill", "--all", "p", "KILL", root=bundle.root, check=True)  # PID 1 ignores an unhandled TERM
    assert wait_for(lambda: state(bundle, "p")["status"] == "stopped")
    oci("delete", "p", root=bundle.root, check=True)


def test_terminal_goes_to_the_console_socket(bundle, tmp_path):
    sock_path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(1)
    server.settimeout(30)  # a runtime that never sends the terminal fails the test, never hangs it
    bundle.write(config(["sh", "-c", "tty; stty size"], process__terminal=True,
                        process__consoleSize={"height": 33, "width": 101}))
    oci("create", "--bundle", str(bundle), "--console-socket", sock_path, "t", root=bundle.root, check=True)
    conn, _ = server.accept()
    conn.settimeout(30)
    _, anc, _, _ = conn.recvmsg(1024, socket.CMSG_SPACE(4))
    master = struct.unpack("i", anc[0][2][:4])[0]
    oci("start", "t", root=bundle.root, check=True)
    out = b""
    while True:
        try:
            chunk = os.read(master, 1024)
        except OSError:
            break  # EIO: the slave side closed
        if not chunk:
            break
        out += chunk
    os.close(master)
    conn.close()
    server.close()
    assert out.decode().split() == ["/dev/pts/0", "33", "101"]
    assert wait_for(lambda: state(bundle, "t")["status"] == "stopped")
    oci("delete", "t", root=bundle.root, check=True)


def test_explain_prints_each_field_as_its_kernel_step_and_changes_nothing(bundle):
    bundle.write(config(["true"]))
    res = oci("create", "--explain", "--bundle", str(bundle), "e", root=bundle.root, check=True)
    text = res.stdout
    for line in ("# linux.namespaces: the new ones pid, net, ipc, uts, mount",
                 f"mount -t proc proc {bundle}/rootfs/proc",
                 "# linux.maskedPaths: /proc/kcore", "# process.rlimits[0]: RLIMIT_NOFILE",
                 "# hostname: the UTS namespace's own", "hostname ocibox"):
        assert line in text, line
    assert not (bundle.root / "e").exists()


def test_kill_refuses_a_stopped_container_and_a_bad_signal(bundle):
    bundle.write(config(["true"]))
    oci("create", "--bundle", str(bundle), "k", root=bundle.root, check=True)
    res = oci("kill", "k", "SIGNOPE", root=bundle.root)
    assert res.returncode == 1 and 'invalid signal "SIGNOPE"' in res.stderr
    oci("start", "k", root=bundle.root, check=True)
    assert wait_for(lambda: state(bundle, "k")["status"] == "stopped")
    res = oci("kill", "k", root=bundle.root)
    assert res.returncode == 1 and "container not running" in res.stderr
    oci("delete", "k", root=bundle.root, check=True)


# Each verb containerd-shim-runc-v2 calls, in each state, against runc 1.1.5's contract
# (its kill.go, delete.go, update.go and libcontainer's Signal/Pause/Resume/Set/Processes):
# (verb, args, {state: (exit status, words in stderr)}). "container not running" and "does
# not exist" are what the shim's checkKillError maps to not-found; containerd deletes every
# task with `kill --all ID 9` after it exits, and retries until it succeeds.
CONTRACT = [
    ("kill --all 9", ("kill", "--all", "{id}", "9"),
     {"created": (0, ""), "running": (0, ""), "paused": (0, ""), "stopped": (0, ""), "missing": (1, "does not exist")}),
    ("kill 0", ("kill", "{id}", "0"),
     {"created": (0, ""), "running": (0, ""), "paused": (0, ""), "stopped": (1, "container not running"),
      "missing": (1, "does not exist")}),
    ("state", ("state", "{id}",),
     {"created": (0, ""), "running": (0, ""), "paused": (0, ""), "stopped": (0, ""), "missing": (1, "does not exist")}),
    ("ps", ("ps", "--format", "json", "{id}"),
     {"created": (0, ""), "running": (0, ""), "paused": (0, ""), "stopped": (0, ""), "missing": (1, "does not exist")}),
    ("update", ("update", "--pids-limit", "40", "{id}"),
     {"created": (0, ""), "running": (0, ""), "paused": (0, ""), "stopped": (1, "container not running"),
      "missing": (1, "does not exist")}),
    ("pause", ("pause", "{id}"),
     {"created": (0, ""), "running": (0, ""), "paused": (1, "container not running"),
      "stopped": (1, "container not running"), "missing": (1, "does not exist")}),
    ("resume", ("resume", "{id}"),
     {"created": (1, "container not paused"), "running": (1, "container not paused"), "paused": (0, ""),
      "stopped": (1, "container not paused"), "missing": (1, "does not exist")}),
    ("delete", ("delete", "{id}"),
     {"created": (0, ""), "running": (1, "not stopped"), "paused": (1, "not stopped"), "stopped": (0, ""),
      "missing": (1, "does not exist")}),
    ("delete --force", ("delete", "--force", "{id}"),
     {"created": (0, ""), "running": (0, ""), "paused": (0, ""), "stopped": (0, ""), "missing": (0, "")}),
]


def _in_state(b, cid: str, status: str) -> None:
    if status == "missing":
        return
    b.write(config(["sh", "-c", "sleep 1000 & exec sleep 1001"] if status != "stopped" else ["true"]))
    oci("create", "--bundle", str(b), cid, root=b.root, check=True)
    if status == "created":
        return
    oci("start", cid, root=b.root, check=True)
    if status == "stopped":
        assert wait_for(lambda: state(b, cid)["status"] == "stopped")
        return
    assert wait_for(lambda: len(json.loads(oci("ps", "--format", "json", cid, root=b.root).stdout)) == 2)
    if status == "paused":
        oci("pause", cid, root=b.root, check=True)
    assert state(b, cid)["status"] == status


@pytest.mark.parametrize("verb, args, want", CONTRACT, ids=[c[0] for c in CONTRACT])
def test_every_verb_a_shim_calls_answers_in_every_state_as_runc_does(bundle, verb, args, want):
    for status, (code, words) in want.items():
        cid = f"v-{status}"
        _in_state(bundle, cid, status)
        res = oci(*(a.format(id=cid) for a in args), root=bundle.root)
        assert (res.returncode, words in res.stderr) == (code, True), (verb, status, res.stderr)
        if verb == "kill --all 9" and status in ("running", "paused"):
            assert wait_for(lambda: state(bundle, cid)["status"] == "stopped")  # every process got it, thawed
            assert json.loads(oci("ps", "--format", "json", cid, root=bundle.root).stdout) == []
        if verb == "state" and status != "missing":
            assert json.loads(res.stdout)["status"] == status
            assert json.loads(res.stdout)["pid"] == (0 if status == "stopped" else state(bundle, cid)["pid"])
        if verb.startswith("delete") and code == 0:
            assert oci("state", cid, root=bundle.root).returncode == 1  # gone, its processes too
        oci("delete", "--force", cid, root=bundle.root)


def test_a_privileged_config_listing_dev_ptmx_starts(bundle):
    """containerd lists every host device for a privileged pod, /dev/ptmx among them: it was
    `/dev/ptmx: File exists` at create."""
    devices = [{"path": p, "type": "c", "major": ma, "minor": mi, "fileMode": 0o666, "uid": 0, "gid": 0}
               for p, ma, mi in (("/dev/ptmx", 5, 2), ("/dev/null", 1, 3), ("/dev/kmsg", 1, 11))]
    bundle.write(config(["sh", "-c", "readlink /dev/ptmx > /out/ptmx; ls -l /dev/kmsg > /out/kmsg"],
                        linux__devices=devices, linux__resources={"devices": [{"allow": True, "access": "rwm"}]}))
    oci("run", "--bundle", str(bundle), "priv", root=bundle.root, check=True)
    assert (bundle / "out/ptmx").read_text() == "pts/ptmx\n"
    assert (bundle / "out/kmsg").read_text().startswith("c")


def test_what_fails_fails_at_create_not_at_start(bundle):
    """runc's parent sets oom_score_adj and rlimits, and its init looks the command up, all
    before create returns: a pod must not show READY with a pause that dies at start."""
    bundle.write(config(["nosuchcommand"]))
    res = oci("create", "--bundle", str(bundle), "late", root=bundle.root)
    assert res.returncode == 1 and "nosuchcommand" in res.stderr and "not found" in res.stderr, res.stderr
    assert not (bundle.root / "late").exists()
    bundle.write(config(["true"], process__rlimits=[{"type": "RLIMIT_NOFILE", "hard": 1 << 30, "soft": 1 << 30}]))
    res = oci("create", "--bundle", str(bundle), "late", root=bundle.root)
    assert res.returncode == 1 and "RLIMIT_NOFILE" in res.stderr, res.stderr
    assert not (bundle.root / "late").exists()


def test_an_unknown_capability_is_ignored_with_runcs_warning(bundle):
    bundle.write(config(["sh", "-c", "grep CapBnd /proc/self/status > /out/caps"],
                        process__capabilities={k: CAPS + ["CAP_FROM_THE_FUTURE"]
                                               for k in ("bounding", "effective", "permitted")}))
    res = oci("run", "--bundle", str(bundle), "future", root=bundle.root)
    assert res.returncode == 0 and "ignoring unknown or unavailable capabilities: CAP_FROM_THE_FUTURE" in res.stderr
    assert (bundle / "out/caps").read_text().split()[1] == f"{(1 << 0) | (1 << 5) | (1 << 10) | (1 << 29):016x}"


def test_run_in_the_foreground_returns_the_process_status_and_deletes(bundle):
    bundle.write(config(["sh", "-c", "echo ran > /out/ran; exit 3"]))
    res = oci("run", "--bundle", str(bundle), "fg", root=bundle.root)
    assert res.returncode == 3, res.stderr
    assert (bundle / "out/ran").read_text() == "ran\n"
    assert oci("state", "fg", root=bundle.root).returncode == 1  # deleted, as runc run leaves it


def test_update_changes_memory_and_pids_in_its_cgroup(bundle):
    bundle.write(config(["sleep", "1000"]))
    oci("create", "--bundle", str(bundle), "up", root=bundle.root, check=True)
    pid = state(bundle, "up")["pid"]

    def limit(controller: str, name: str) -> str:
        line = next(x for x in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if f":{controller}:" in x)
        return (Path(f"/sys/fs/cgroup/{controller}") / line.split(":", 2)[2].lstrip("/") / name).read_text().strip()

    assert limit("pids", "pids.max") == "50"
    oci("update", "--pids-limit", "20", "--memory", "64m", "up", root=bundle.root, check=True)
    assert limit("pids", "pids.max") == "20" and limit("memory", "memory.limit_in_bytes") == str(64 << 20)
    (bundle.parent / "res.json").write_text(json.dumps({"pids": {"limit": 30}}))
    oci("update", "-r", str(bundle.parent / "res.json"), "up", root=bundle.root, check=True)
    assert limit("pids", "pids.max") == "30"
    for args, words in ((("update", "up"), "nothing to update"),
                        (("update", "--memory", "lots", "up"), 'invalid memory size "lots"'),
                        (("update", "--pids-limit", "5", "ghost"), "container ghost does not exist")):
        res = oci(*args, root=bundle.root)
        assert res.returncode == 1 and words in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert limit("pids", "pids.max") == "30"  # the refusals changed nothing


def test_delete_leaves_an_engine_s_parent_group_in_place(bundle):
    """cgroupsPath under an engine's own parent (kubepods, say): delete removes the
    container's group and never the parent, even once it is empty."""
    from minibox.oci.state import V1_CONTROLLERS

    parent = f"minibox-test-engine-{os.getpid()}"
    # every hierarchy the runtime makes the group in (it makes missing parents, as runc does)
    roots = [r for r in (f"/sys/fs/cgroup/{c}" for c in V1_CONTROLLERS) if os.path.isdir(r)] or ["/sys/fs/cgroup"]
    for r in roots:
        os.makedirs(f"{r}/{parent}", exist_ok=True)
    try:
        bundle.write(config(["true"], linux__cgroupsPath=f"/{parent}/c9"))
        oci("run", "--bundle", str(bundle), "c9", root=bundle.root, check=True)
        assert not any(os.path.exists(f"{r}/{parent}/c9") for r in roots)  # its own group went
        assert all(os.path.isdir(f"{r}/{parent}") for r in roots)  # the engine's stayed
    finally:
        for r in {os.path.realpath(r) for r in roots}:  # cpu and cpuacct may be one hierarchy
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(f"{r}/{parent}/c9")
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(f"{r}/{parent}")
    assert not [r for r in roots if os.path.exists(f"{r}/{parent}")]  # and the test leaves nothing
