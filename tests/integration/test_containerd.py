"""containerd 1.6 (Debian's) driving minibox-oci through containerd-shim-runc-v2: `ctr run --runc-binary`.

containerd runs inside this throwaway host with its own root, state and socket, and is
stopped afterwards; its image is the busybox root as an OCI archive, imported.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import busybox_rootfs, wait_for

sys.path.insert(0, os.path.dirname(__file__))
import oci as ocilayout  # noqa: E402

RUNTIME = shutil.which("minibox-oci") or str(Path(__file__).resolve().parents[2] / ".venv/bin/minibox-oci")
SOCK = "/run/minibox-ctr-test/containerd.sock"


@pytest.fixture
def ctr():
    top = Path(tempfile.mkdtemp(prefix="minibox-ctr-test-", dir="/var/tmp"))
    (top / "config.toml").write_text(f'version = 2\nroot = "{top}/root"\nstate = "/run/minibox-ctr-test/state"\n'
                                     f'[grpc]\n  address = "{SOCK}"\n')
    log = open(top / "containerd.log", "w")
    daemon = subprocess.Popen(["containerd", "--config", str(top / "config.toml")], stdout=log, stderr=log)

    def run(*args, check=True, timeout=60):
        res = subprocess.run(["ctr", "-a", SOCK, *args], capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
        if check and res.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
        return res

    try:
        assert wait_for(lambda: run("version", check=False).returncode == 0, timeout=30)
        lay = top / "layout"
        lay.mkdir()
        desc = ocilayout.image_manifest(lay, [ocilayout.tar_dir(busybox_rootfs())], {"Cmd": ["sh"]})
        ocilayout.write_layout(lay, [desc], "localhost/busybox:latest")
        subprocess.run(["tar", "-C", str(lay), "-cf", str(top / "busybox.tar"), "."], check=True)
        run("images", "import", str(top / "busybox.tar"))
        yield run
    finally:
        for task in run("task", "ls", "-q", check=False).stdout.split():
            run("task", "kill", "-s", "KILL", task, check=False)
            run("task", "rm", "-f", task, check=False)
        for c in run("containers", "ls", "-q", check=False).stdout.split():
            run("containers", "rm", c, check=False)
        daemon.terminate()
        daemon.wait()
        log.close()
        with open("/proc/self/mountinfo") as f:
            for mp in sorted((line.split()[4] for line in f if str(top) in line), key=len, reverse=True):
                subprocess.run(["umount", "-l", mp], check=False)
        shutil.rmtree(top, ignore_errors=True)
        shutil.rmtree("/run/minibox-ctr-test", ignore_errors=True)


def test_ctr_run_exec_kill_rm_through_the_runc_v2_shim(ctr):
    out = ctr("run", "--rm", "--runc-binary", RUNTIME, "localhost/busybox:latest", "c1", "sh", "-c",
              "echo hello from containerd; grep NoNewPrivs /proc/self/status").stdout.split("\n")
    assert out[0] == "hello from containerd" and out[1].split() == ["NoNewPrivs:", "1"]
    ctr("run", "-d", "--runc-binary", RUNTIME, "localhost/busybox:latest", "c2", "sleep", "1000")
    try:
        ps = ctr("task", "exec", "--exec-id", "e1", "c2", "ps").stdout.splitlines()
        assert ps[1].split()[:3] == ["1", "root", "sleep"] and ps[2].split()[2] == "ps"
        line = next(t for t in ctr("task", "ls").stdout.splitlines() if t.startswith("c2"))
        pid = int(line.split()[1])
        assert Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep")  # another PID on the host
        ctr("task", "kill", "-s", "KILL", "c2")
        assert wait_for(lambda: "STOPPED" in ctr("task", "ls").stdout, timeout=10)
        ctr("task", "rm", "c2")
    finally:
        ctr("containers", "rm", "c2", check=False)
    assert not [p for p in Path("/sys/fs/cgroup").glob("*/default/c2") if p.is_dir()]  # delete removed its cgroup
