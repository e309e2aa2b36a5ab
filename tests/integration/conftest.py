"""Fixtures for integration tests: the real minibox CLI, an outside host, and a leak check.

These tests need root and must run inside scripts/sandbox (a throwaway host: new network,
mount and PID namespaces), which scripts/test arranges. Every test ends by checking that
it left nothing behind: containers, links, addresses, rules, conntrack entries, cgroups,
processes, state files.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("MINIBOX_ROOT", "/nonexistent"))
PROJECT = Path(__file__).resolve().parents[2]


def pytest_configure(config):
    if os.environ.get("MINIBOX_SANDBOX") != "1" or os.geteuid() != 0:
        pytest.exit("integration tests need root inside a throwaway host: run them through scripts/test "
                    "(or scripts/sandbox pytest tests/integration)", returncode=2)


def sh(cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"`{cmd}` failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}")
    return res


def mb(*args: str, check: bool = False, input: str | None = None, timeout: float = 60,
       env: dict | None = None) -> subprocess.CompletedProcess:
    """The real `minibox` command, as a user types it."""
    res = subprocess.run([sys.executable, "-m", "minibox", *args], capture_output=True, text=True,
                         input=input, timeout=timeout, env={**os.environ, **(env or {})},
                         stdin=None if input is not None else subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise AssertionError(f"minibox {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def inspect(name: str) -> dict:
    return json.loads(mb("inspect", name, check=True).stdout)[0]


def layer_dirs(image: str) -> list[Path]:
    """An image's layer directories in the store, bottom first (busybox has one: its rootfs)."""
    doc = inspect(image)
    return [ROOT / "images/layers" / d.removeprefix("sha256:") for d in doc["RootFS"]["Layers"]]


def busybox_rootfs() -> Path:
    """The busybox image's only layer: the whole busybox root filesystem, never written."""
    (layer,) = layer_dirs("busybox")
    return layer


# --- leak check -------------------------------------------------------------------------------


def links() -> set[str]:
    out = sh("ip -o link show").stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()}


def ctr_links() -> set[str]:
    """Links a test must not leave: all but the default bridge, which stays by design (as docker0)."""
    return links() - {"minibox0"}


def ctr_rules() -> list[str]:
    """Per-container firewall objects of either backend (network base rules may stay)."""
    found = []
    nft = sh("nft list table inet minibox", check=False).stdout
    found += [line.strip() for line in nft.splitlines() if "minibox ctr" in line]
    for tool in ("iptables-save", "ip6tables-save"):
        found += [line for line in sh(tool, check=False).stdout.splitlines() if "minibox ctr" in line]
    return found


def cgroups() -> list[str]:
    parent = os.environ["MINIBOX_CGROUP_PARENT"]
    out = []
    for d in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified",
              *(f"/sys/fs/cgroup/{c}" for c in ("memory", "pids", "cpu", "devices",
                                                 "cpuacct", "cpuset", "freezer", "blkio"))):
        p = Path(d) / parent
        if p.is_dir():
            out += [str(c) for c in p.iterdir() if c.is_dir()]
    return out


def processes() -> list[str]:
    """Everything in this sandbox but its init, pytest and our own children."""
    me = os.getpid()
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) in (1, me):
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == me and "sleep infinity" in cmd:
            continue  # the outside host's namespace holder (session fixture)
        if ppid == me and "httpd" in cmd:
            continue  # the outside host's server (session fixture)
        out.append(f"{pid} {cmd}")
    return out


def state_files() -> list[str]:
    out = []
    for sub in ("containers", "ipam", "names", "ports", "volumes", "images/tmp"):
        d = ROOT / sub
        if d.is_dir():
            out += [str(p.relative_to(ROOT)) for p in d.rglob("*") if p.is_file() and not p.name.startswith(".")]
    return out


def mounts() -> list[str]:
    """Mount points in this (the sandbox host's) mount namespace under our state or temp dirs:
    a container's mounts live in its own namespace, so none should ever show up here."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p.startswith((str(ROOT), "/tmp/pytest-of-"))]


def conntrack_entries(addr_prefix: str) -> list[str]:
    out = sh("conntrack -L 2>/dev/null", check=False).stdout
    return [line for line in out.splitlines() if addr_prefix in line]


def snapshot() -> dict:
    return {"containers": set(mb("ps", "-aq").stdout.split()), "links": ctr_links(), "rules": ctr_rules(),
            "cgroups": cgroups(), "processes": processes(), "state": state_files(), "mounts": mounts()}


def leftovers(before: dict) -> dict:
    """What exists now and did not in `before`, by kind; empty when nothing was left."""
    after = snapshot()
    leaked = {k: sorted(set(after[k]) - set(before[k])) for k in after}
    return {k: v for k, v in leaked.items() if v}


def wait_for(condition, timeout: float = 10, every: float = 0.05) -> bool:
    """Poll `condition` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(every)


@pytest.fixture(autouse=True)
def no_leaks():
    before = snapshot()
    yield
    # Look first: every test removes what it made. (A shim may still be finishing an exit
    # command for a moment, hence the poll.) Then sweep, so one leak does not fail the
    # tests after it, and report what was found.
    leaked: dict = {}
    wait_for(lambda: not leftovers(before), timeout=5, every=0.1)
    leaked = leftovers(before)
    if leaked:
        for name in mb("ps", "-aq").stdout.split():
            mb("rm", "-f", name)
        mb("gc")
    assert not leaked, f"left behind: {leaked}"


# --- a hostile image and a chrooted host -----------------------------------------------------------


@pytest.fixture(scope="session")
def attack_image(tmp_path_factory) -> str:
    """The image `attack`: busybox plus tests/helpers/attack.c built static as /attack, and a
    device node for /dev/kmsg shipped in the image itself (/kmsgnode)."""
    work = tmp_path_factory.mktemp("attack")
    rootfs = work / "rootfs"
    sh(f"cp -a {busybox_rootfs()} {rootfs}")
    sh(f"gcc -static -O2 -o {rootfs}/attack {PROJECT}/tests/helpers/attack.c")
    os.mknod(rootfs / "kmsgnode", 0o020666, os.makedev(1, 11))
    res = mb("image", "import", str(rootfs), "attack", check=True)
    assert "1 device node(s) in this image will not open" in res.stderr
    sh(f"rm -rf {work}")
    return "attack"


@pytest.fixture(params=["plain", "mounted"])
def chroot_host(request, tmp_path):
    """This host's files seen through a chroot whose '/' is a plain directory, not a mount
    point (pivot_root cannot work there as it is), or a directory bound onto itself (as
    scripts/sandbox makes under fresh-check: pivot_root works but would hang the container's
    root below the host's tree)."""
    root = tmp_path / "chroot"
    root.mkdir()
    mounted = []
    if request.param == "mounted":
        sh(f"mount --bind {root} {root}")
        mounted.append(root)
    for name in sorted(os.listdir("/")):
        src, dst = Path("/") / name, root / name
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        elif src.is_dir() and name not in ("lost+found",):
            dst.mkdir()
            sh(f"mount --rbind {src} {dst}")
            mounted.append(dst)
    yield root
    for dst in reversed(mounted):
        sh(f"umount -R -l {dst}", check=False)


# --- the outside host -------------------------------------------------------------------------


def _netns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return ""


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class Outside:
    """A machine on the host's LAN: its own network namespace, linked to the sandbox host by
    a veth pair, on a TEST-NET range that `ip route get` showed unused."""

    def __init__(self):
        self.subnet = self._free_subnet()
        hosts = list(self.subnet.hosts())
        self.host_addr, self.addr = str(hosts[0]), str(hosts[1])
        self.holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
        self.pid = self.holder.pid
        own = os.readlink("/proc/self/ns/net")
        # ready once unshare has exec'd sleep in a network namespace of its own
        assert wait_for(lambda: _netns(self.pid) not in ("", own) and _comm(self.pid) == "sleep")
        sh(f"ip link add uplink0 type veth peer name eth0 netns /proc/{self.pid}/ns/net")
        sh(f"ip addr add {self.host_addr}/24 dev uplink0 && ip link set uplink0 up")
        self.run(f"ip link set lo up && ip addr add {self.addr}/24 dev eth0 && ip link set eth0 up")
        # ...and on IPv6, a unique local /64 nothing routes to yet (nodad: usable at once)
        self.subnet6 = self._free_subnet6()
        self.host_addr6, self.addr6 = str(self.subnet6[1]), str(self.subnet6[2])
        sh(f"ip -6 addr add {self.host_addr6}/64 dev uplink0 nodad")
        self.run(f"ip -6 addr add {self.addr6}/64 dev eth0 nodad")
        self.server = None

    @staticmethod
    def _free_subnet6() -> ipaddress.IPv6Network:
        for cand in ("fd5e:18:213::/64", "fd5e:18:214::/64", "fd5e:77:1::/64"):
            net = ipaddress.IPv6Network(cand)
            if sh(f"ip -6 route get {net[2]}", check=False).returncode != 0:
                return net
        raise RuntimeError("no free unique local range for the outside host")

    @staticmethod
    def _free_subnet() -> ipaddress.IPv4Network:
        for cand in ("198.18.213.0/24", "198.18.214.0/24", "198.19.77.0/24", "203.0.113.0/24"):
            net = ipaddress.IPv4Network(cand)
            probe = sh(f"ip route get {list(net.hosts())[1]}", check=False)
            if probe.returncode != 0:  # unreachable: nothing here routes to it yet
                return net
        raise RuntimeError("no free TEST-NET range for the outside host")

    def run(self, cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return sh(f"nsenter --net=/proc/{self.pid}/ns/net sh -c {json.dumps(cmd)}", check=check, timeout=timeout)

    def start_http(self, port: int = 8000) -> None:
        """busybox httpd in verbose mode: its stderr names each client's address."""
        d = self.www = Path(os.environ["MINIBOX_ROOT"]) / "outside-www"
        d.mkdir(exist_ok=True)
        (d / "index.html").write_text("outside says hi\n")
        self.log = open(d.parent / "outside-httpd.log", "w+")
        self.server = subprocess.Popen(["nsenter", f"--net=/proc/{self.pid}/ns/net", "busybox", "httpd", "-f",
                                        "-vv", "-p", str(port), "-h", str(d)], stderr=self.log)
        assert wait_for(lambda: self.run(f"curl -s -m 1 -o /dev/null http://127.0.0.1:{port}/",
                                         check=False).returncode == 0)

    def page(self, name: str) -> str:
        """A page of its own, so the server log shows who fetched it (it logs paths, not queries)."""
        (self.www / name).write_text("outside says hi\n")
        return f"http://{self.addr}:8000/{name}"

    def http_clients(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def close(self):
        if self.server:
            self.server.kill()
            self.server.wait()
        self.holder.kill()
        self.holder.wait()
        sh("ip link del uplink0", check=False)


@pytest.fixture(scope="session")
def outside():
    o = Outside()
    o.start_http()
    yield o
    o.close()


@pytest.fixture
def forward_drop():
    """iptables' FORWARD policy DROP in this sandbox host, as Docker leaves a real one."""
    sh("iptables -P FORWARD DROP")
    yield
    sh("iptables -P FORWARD ACCEPT")


@pytest.fixture
def no_unnamed_images():
    """For tests that build: each step's image is kept (the cache), untagged; they go after
    the test, since later tests list the images."""
    yield
    mb("image", "prune", "-f")
