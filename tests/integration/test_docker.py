"""Docker 20.10 (Debian's docker.io) with `--add-runtime minibox=minibox-oci`: Docker's own network, minibox's isolation.

dockerd runs inside this throwaway host with its own data and exec roots and socket (and
the containerd it manages), and is stopped afterwards; its docker0 bridge and rules live in
the sandbox's network namespace. The image is the busybox root, imported.
"""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import busybox_rootfs, mb, sh, wait_for

RUNTIME = shutil.which("minibox-oci") or str(Path(__file__).resolve().parents[2] / ".venv/bin/minibox-oci")
SOCK = "unix:///run/minibox-docker-test.sock"
DOCKER = "/usr/bin/docker"  # the docker.io package's client, the daemon's own version


@pytest.fixture
def docker():
    top = Path(tempfile.mkdtemp(prefix="minibox-docker-test-", dir="/var/tmp"))
    log = open(top / "dockerd.log", "w")
    daemon = subprocess.Popen(["dockerd", "--data-root", str(top / "data"), "--exec-root", "/run/minibox-docker-test",
                               "--pidfile", "/run/minibox-docker-test.pid", "-H", SOCK,
                               "--add-runtime", f"minibox={RUNTIME}"], stdout=log, stderr=log)

    def run(*args, check=True, timeout=60):
        res = subprocess.run([DOCKER, "-H", SOCK, *args], capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
        if check and res.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
        return res

    try:
        assert wait_for(lambda: run("version", check=False).returncode == 0, timeout=60, every=0.2)
        sh(f"tar -C {busybox_rootfs()} -cf {top}/busybox.tar .")
        run("import", str(top / "busybox.tar"), "busybox:latest")
        yield run
    finally:
        ids = run("ps", "-aq", check=False).stdout.split()
        if ids:
            run("rm", "-f", *ids, check=False)
        daemon.terminate()
        daemon.wait(timeout=60)
        log.close()
        with open("/proc/self/mountinfo") as f:
            for mp in sorted((line.split()[4] for line in f if str(top) in line or "minibox-docker-test" in line),
                             key=len, reverse=True):
                subprocess.run(["umount", "-l", mp], check=False)
        shutil.rmtree(top, ignore_errors=True)
        shutil.rmtree("/run/minibox-docker-test", ignore_errors=True)
        subprocess.run(["ip", "link", "del", "docker0"], capture_output=True)  # dockerd leaves its bridge


def test_docker_run_with_the_minibox_runtime_on_all_four_paths(docker, outside):
    res = docker("run", "--runtime", "minibox", "--rm", "busybox", "sh", "-c",
                 "grep Seccomp: /proc/self/status; exit 4", check=False)
    assert res.returncode == 4 and res.stdout.split() == ["Seccomp:", "2"]  # Docker's profile, loaded by us
    docker("run", "--runtime", "minibox", "-d", "--name", "web", "-p", "8095:80", "busybox",
           "httpd", "-f", "-v", "-p", "80", "-h", "/etc")
    try:
        info = json.loads(docker("inspect", "web").stdout)[0]
        assert info["HostConfig"]["Runtime"] == "minibox"
        short, ip, pid = info["Id"][:12], info["NetworkSettings"]["IPAddress"], info["State"]["Pid"]
        assert wait_for(lambda: sh("curl -s -m 2 http://127.0.0.1:8095/hostname", check=False).returncode == 0)
        assert sh("curl -s -m 2 http://127.0.0.1:8095/hostname").stdout.strip() == short
        assert sh(f"curl -s -m 2 http://{ip}/hostname").stdout.strip() == short
        assert outside.run(f"curl -s -m 2 http://{outside.host_addr}:8095/hostname").stdout.strip() == short
        other = docker("run", "--runtime", "minibox", "--rm", "busybox", "sh", "-c",
                       f"printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc {outside.host_addr} 8095")
        assert other.stdout.strip().endswith(short)
        ps = docker("exec", "web", "ps").stdout.splitlines()
        assert ps[1].split()[:3] == ["1", "root", "httpd"]  # PID 1 inside
        assert Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"httpd")  # pid on the host
        logs = docker("logs", "web")
        assert "response:200" in logs.stdout + logs.stderr
        docker("stop", "-t", "1", "web")
        assert json.loads(docker("inspect", "web").stdout)[0]["State"]["Status"] == "exited"
    finally:
        docker("rm", "-f", "web", check=False)
    assert not os.path.exists(f"/proc/{pid}")


def test_docker_loads_what_minibox_saved(docker, tmp_path):
    """`minibox save` (#23) as `docker load` reads it: a committed image whose top layer
    deleted a file (a whiteout) and added one runs under Docker's own runc as it did here."""
    mb("run", "--name", "tosave", "--network", "none", "busybox", "sh", "-c",
       "rm /bin/vi && mkdir /srv && echo saved here > /srv/note", check=True)
    try:
        mb("commit", "tosave", "saved/busybox:1", check=True)
        mb("save", "-o", str(tmp_path / "saved.tar"), "saved/busybox:1", check=True)
        assert "Loaded image: saved/busybox:1" in docker("load", "-i", str(tmp_path / "saved.tar")).stdout
        out = docker("run", "--rm", "--network", "none", "saved/busybox:1", "sh", "-c",
                     "cat /srv/note; test -e /bin/vi || echo vi is gone").stdout
        assert out == "saved here\nvi is gone\n"
    finally:
        mb("rm", "-f", "tosave")
        mb("image", "rm", "saved/busybox:1")



def test_docker_runs_what_minibox_built(docker, tmp_path, no_unnamed_images):
    """`minibox build` then `minibox save | docker load` (#25): the built image, its COPY and
    RUN layers and its CMD, runs under Docker's own runc."""
    (tmp_path / "note").write_text("copied in\n")
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY note /srv/note\nRUN echo ran here >> /srv/note\n"
                                         'CMD ["cat", "/srv/note"]\n')
    mb("build", "-t", "built/busybox:1", "--network", "none", str(tmp_path), check=True, timeout=120)
    try:
        mb("save", "-o", str(tmp_path / "built.tar"), "built/busybox:1", check=True)
        assert "Loaded image: built/busybox:1" in docker("load", "-i", str(tmp_path / "built.tar")).stdout
        assert docker("run", "--rm", "--network", "none", "built/busybox:1").stdout == "copied in\nran here\n"
    finally:
        mb("image", "rm", "built/busybox:1")
