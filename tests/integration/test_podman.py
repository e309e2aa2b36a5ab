"""Podman 4.3 (Debian's) driving minibox-oci as its OCI runtime: run, -d with -p, exec, logs, stop, rm.

Podman runs inside this throwaway host with storage of its own (under /var/tmp, removed
afterwards) and its runroot on the sandbox's private /run; its CNI bridge and port rules
live in the sandbox's network namespace. The image is the busybox root, imported.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import busybox_rootfs, sh, wait_for

RUNTIME = shutil.which("minibox-oci") or str(Path(__file__).resolve().parents[2] / ".venv/bin/minibox-oci")


CNI_PLUGIN = os.path.join(os.path.dirname(RUNTIME), "minibox-cni")
CONFLIST = {"cniVersion": "1.0.0", "name": "mbcni",
            "plugins": [{"type": "minibox-cni", "subnet": "10.223.9.0/24", "capabilities": {"portMappings": True}}]}


@pytest.fixture
def podman():
    top = Path(tempfile.mkdtemp(prefix="minibox-podman-test-", dir="/var/tmp"))
    base = ["podman", "--root", str(top / "storage"), "--runroot", "/run/minibox-podman-test",
            "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", RUNTIME]
    # Podman's CNI backend, with minibox-cni among its plugins and one network whose type is it
    (top / "plugins").mkdir()
    (top / "plugins/minibox-cni").symlink_to(CNI_PLUGIN)
    (top / "net.d").mkdir()
    conflist = json.loads(json.dumps(CONFLIST))
    conflist["plugins"][0]["stateRoot"] = os.environ["MINIBOX_ROOT"]  # conmon's cleanup has no MINIBOX_ROOT
    (top / "net.d/mbcni.conflist").write_text(json.dumps(conflist))
    (top / "containers.conf").write_text(f'[network]\nnetwork_backend = "cni"\ncni_plugin_dirs = ["{top}/plugins", '
                                         f'"/usr/lib/cni"]\nnetwork_config_dir = "{top}/net.d"\n')
    env = {**os.environ, "CONTAINERS_CONF": str(top / "containers.conf")}

    def run(*args, check=True, timeout=60):
        res = subprocess.run([*base, *args], capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL, env=env)
        if check and res.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
        return res

    cni_dir = Path(os.environ["MINIBOX_ROOT"]) / "cni"
    # Podman (cgroupfs manager) puts conmon in libpod_parent/conmon on the host's cgroupfs,
    # which no sandbox hides: what it makes here goes afterwards.
    podman_groups = [g for g in (Path("/sys/fs/cgroup") / c / "libpod_parent" for c in os.listdir("/sys/fs/cgroup"))
                     if not g.exists()]
    try:
        sh(f"tar -C {busybox_rootfs()} -cf {top}/busybox.tar .")
        run("import", str(top / "busybox.tar"), "localhost/busybox:latest")
        yield run
    finally:
        run("rm", "-af", "-t", "1", check=False)
        # a --rm container's network goes in conmon's cleanup, after `run` has returned
        wait_for(lambda: not list(cni_dir.glob("*.json")), timeout=20)
        run("system", "reset", "-f", check=False)
        with open("/proc/self/mountinfo") as f:  # whatever podman left mounted under its storage
            for mp in sorted((line.split()[4] for line in f if str(top) in line.split()[4]), key=len, reverse=True):
                subprocess.run(["umount", "-l", mp], check=False)
        shutil.rmtree(top, ignore_errors=True)
        shutil.rmtree("/run/minibox-podman-test", ignore_errors=True)
        for group in podman_groups:
            for d in (group / "conmon", group):
                try:
                    d.rmdir()
                except OSError:
                    pass  # not made by this test, or not empty
        # The CNI bridge plugin leaves its bridge when the last container goes, as it does on any host.
        subprocess.run(["ip", "link", "del", "cni-podman0"], capture_output=True, check=False)
        subprocess.run([sys.executable, "-m", "minibox", "network", "rm", "mbcni"], capture_output=True)


def test_podman_run_uses_minibox_oci_and_passes_the_exit_code(podman):
    res = podman("run", "--rm", "--network", "none", "localhost/busybox", "sh", "-c",
                 "echo hello from $(hostname); exit 3", check=False)
    assert res.returncode == 3 and res.stdout.startswith("hello from ")
    assert "minibox-oci" in podman("info", "--format", "{{.Host.OCIRuntime.Path}}").stdout


def test_podman_detached_with_a_published_port_exec_logs_stop_rm(podman):
    podman("run", "-d", "--name", "web", "-p", "8087:80", "localhost/busybox",
           "httpd", "-f", "-v", "-p", "80", "-h", "/etc")
    try:
        info = json.loads(podman("inspect", "web").stdout)[0]
        assert info["OCIRuntime"].endswith("minibox-oci") and info["State"]["Running"]
        pid = info["State"]["Pid"]
        assert wait_for(lambda: sh("curl -s -m 2 http://127.0.0.1:8087/hostname", check=False).returncode == 0)
        assert sh("curl -s -m 2 http://127.0.0.1:8087/hostname").stdout.strip() == info["Id"][:12]
        ps = podman("exec", "web", "ps").stdout.split("\n")
        assert ps[1].split()[:4] == ["1", "root", "httpd", "-f"]  # PID 1 in its own namespace
        assert f"Pid:\t{pid}" in Path(f"/proc/{pid}/status").read_text()  # and another PID on the host
        logs = podman("logs", "web")
        assert "response:200" in logs.stdout + logs.stderr  # httpd -v, through conmon's log
        podman("stop", "-t", "1", "web")
        assert json.loads(podman("inspect", "web").stdout)[0]["State"]["Status"] == "exited"
    finally:
        podman("rm", "-f", "web", check=False)
    assert podman("ps", "-aq").stdout.strip() == ""
    assert not os.path.exists(f"/proc/{pid}")


def test_podman_with_minibox_cni_publishes_on_all_four_paths_and_cleans_up(podman, outside):
    """CNI ADD is the lecture's veth, bridge, address and route; portMappings is its DNAT."""
    podman("run", "-d", "--name", "cweb", "--network", "mbcni", "-p", "8094:80", "localhost/busybox",
           "httpd", "-f", "-p", "80", "-h", "/etc")
    try:
        cid = json.loads(podman("inspect", "cweb").stdout)[0]["Id"]
        ip = json.loads(podman("inspect", "cweb").stdout)[0]["NetworkSettings"]["Networks"]["mbcni"]["IPAddress"]
        assert ip.startswith("10.223.9.")
        assert wait_for(lambda: sh(f"curl -s -m 2 http://{ip}/hostname", check=False).returncode == 0)
        assert sh("curl -s -m 2 http://127.0.0.1:8094/hostname").stdout.strip() == cid[:12]
        assert outside.run(f"curl -s -m 2 http://{outside.host_addr}:8094/hostname").stdout.strip() == cid[:12]
        # (busybox's wget segfaults under Podman here, with runc as well: nc speaks the HTTP)
        other = podman("run", "--rm", "--network", "mbcni", "localhost/busybox", "sh", "-c",
                       f"printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc {outside.host_addr} 8094")
        assert other.stdout.strip().endswith(cid[:12])
        assert "via minibox-cni" in subprocess.run([sys.executable, "-m", "minibox", "network", "rm", "mbcni"],
                                                   capture_output=True, text=True).stderr
    finally:
        podman("rm", "-f", "-t", "1", "cweb", check=False)
    root = Path(os.environ["MINIBOX_ROOT"])
    assert not list((root / "cni").glob("*.json"))  # DEL removed the attachment
    assert "mbc" not in sh("ip -o link").stdout
    assert sh("curl -s -m 2 http://127.0.0.1:8094/", check=False).returncode != 0
