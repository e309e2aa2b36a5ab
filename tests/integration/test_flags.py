"""Run's process and kernel flags, each a field of the runtime spec, checked from inside real containers.

What Docker 20.10 does, which each test holds minibox to: --cap-drop goes first, then
--cap-add (ALL for every one); --privileged gives every capability and host device, no
seccomp and no masks; --ulimit sets the process's rlimits; --sysctl takes only what the
container's namespaces hold; --shm-size sizes /dev/shm; --init makes docker-init (tini)
PID 1; --device passes one host device in; --stop-signal and --stop-timeout are what
`stop` uses.
"""

from __future__ import annotations

import contextlib
import os
import re
import time

from conftest import inspect, mb, wait_for


def cgroup_file(dirs: list[str], name: str) -> str:
    """A file of the container's cgroup, from whichever of its groups has it ("" if none)."""
    for d in dirs:
        try:
            with open(f"{d}/{name}") as f:
                return f.read().strip()
        except OSError:
            continue
    return ""


def status(*args: str) -> dict:
    out = mb("run", "--rm", "--network", "none", *args, "busybox", "cat", "/proc/self/status", check=True).stdout
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


def test_capabilities_are_dropped_then_added():
    assert status("--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE")["CapEff"] == "0000000000000400"
    assert status("--cap-drop", "chown")["CapEff"] == "00000000a80425fa"  # Docker's 14 less CAP_CHOWN (bit 0)
    res = mb("run", "--rm", "--network", "none", "--cap-add", "CAP_NET_ADMIN", "busybox", "sh", "-c",
             "ip link add v0 type veth peer name v1 && echo made")
    assert res.stdout == "made\n", res.stderr
    res = mb("run", "--rm", "--cap-add", "CAP_FLY", "busybox", "true")
    assert (res.returncode, res.stderr.count("\n")) == (125, 1) and '--cap-add "CAP_FLY": unknown' in res.stderr


def test_privileged_gives_the_host_away_as_dockers_does():
    fields = status("--privileged")
    assert fields["Seccomp"] == "0"  # no filter
    assert int(fields["CapEff"], 16) > 0xa80425fb  # more than Docker's 14
    out = mb("run", "--rm", "--network", "none", "--privileged", "busybox", "sh", "-c",
             "ip link add v0 type veth peer name v1 && echo netadmin; grep ' /sys ' /proc/mounts; ls /dev/loop-control "
             "/dev/kmsg; cat /proc/sys/kernel/core_pattern > /dev/null && echo $(grep -c ' /proc/sys ' /proc/mounts)",
             check=True).stdout
    assert "netadmin" in out and "sysfs rw," in out  # /sys writable
    assert "/dev/kmsg" in out  # the host's devices
    assert out.rstrip().endswith("0")  # /proc/sys not remounted read-only
    mb("run", "-d", "--name", "priv", "--privileged", "busybox", "sleep", "1000", check=True)
    try:
        assert inspect("priv")["HostConfig"]["Privileged"] is True
    finally:
        mb("rm", "-f", "priv")


def test_ulimits_sysctls_and_shm_size():
    out = mb("run", "--rm", "--ulimit", "nofile=1024:2048", "--sysctl", "kernel.shmmax=4096",
             "--sysctl", "net.ipv4.ip_unprivileged_port_start=80", "--shm-size", "16m", "busybox", "sh", "-c",
             "ulimit -n; ulimit -Hn; cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_unprivileged_port_start; "
             "df -k /dev/shm | tail -1", check=True).stdout.split("\n")
    assert out[:4] == ["1024", "2048", "4096", "80"]
    assert out[4].split()[1] == "16384"  # /dev/shm of 16 MB
    for args, message in ((("--sysctl", "vm.swappiness=1"), "--sysctl vm.swappiness is not allowed"),
                          (("--network", "host", "--sysctl", "net.ipv4.ip_forward=1"), "shares a network namespace"),
                          (("--ulimit", "nofile=2:1"), 'invalid --ulimit "nofile=2:1"'),
                          (("--shm-size", "lots"), 'invalid --shm-size "lots"'),
                          (("--device", "/dev/nonesuch"), "--device /dev/nonesuch: No such file or directory"),
                          (("--device", "/etc/passwd"), "--device /etc/passwd: not a device node"),
                          (("--stop-signal", "SIGNOPE"), 'invalid --stop-signal "SIGNOPE"')):
        res = mb("run", "--rm", *args, "busybox", "true")
        assert (res.returncode, res.stderr.count("\n")) == (125, 1) and message in res.stderr, (args, res.stderr)


def test_init_is_pid_1_and_the_command_its_child():
    out = mb("run", "--rm", "--init", "busybox", "sh", "-c", "cat /proc/1/comm; echo $$", check=True).stdout.split()
    assert out[0] == "docker-init" and out[1] != "1"


def test_a_device_is_passed_in_under_its_name():
    out = mb("run", "--rm", "--device", "/dev/null:/dev/mynull:rw", "busybox", "sh", "-c",
             "echo hi > /dev/mynull && ls -l /dev/mynull", check=True).stdout
    assert out.startswith("crw") and " 1,   3 " in out


def test_stop_uses_the_stop_signal_and_timeout():
    mb("run", "-d", "--name", "sig", "--stop-signal", "USR1", "--stop-timeout", "3", "busybox", "sh", "-c",
       "trap 'echo got usr1; exit 3' USR1; while true; do sleep 0.1; done", check=True)
    try:
        cfg = inspect("sig")["Config"]
        assert cfg["StopSignal"] == "SIGUSR1" and cfg["StopTimeout"] == 3
        mb("stop", "sig", check=True)
        assert inspect("sig")["State"]["ExitCode"] == 3  # its trap ran: USR1, not TERM or KILL
        assert wait_for(lambda: "got usr1" in mb("logs", "sig").stdout)
    finally:
        mb("rm", "-f", "sig")


def test_resource_flags_write_the_cgroup_files():
    """--cpus is a CFS quota per 100 ms period, --cpu-shares the weight, --memory-swap and
    --memory-reservation the memory group's other limits, --oom-kill-disable its OOM
    control: each read back from the container's own cgroup, as the kernel has it."""
    mb("run", "-d", "--name", "res", "--cpus", "0.5", "--cpu-shares", "512", "-m", "64m", "--memory-swap", "128m",
       "--memory-reservation", "32m", "--oom-kill-disable", "busybox", "sleep", "1000", check=True)
    try:
        doc = inspect("res")
        host = doc["HostConfig"]
        assert (host["NanoCpus"], host["CpuShares"], host["MemorySwap"], host["MemoryReservation"],
                host["OomKillDisable"]) == (500_000_000, 512, 128 << 20, 32 << 20, True)
        def read(name: str) -> str:
            return cgroup_file(doc["Minibox"]["Cgroups"], name)

        if read("cpu.max"):  # cgroup v2
            assert read("cpu.max") == "50000 100000"
        else:
            assert (read("cpu.cfs_quota_us"), read("cpu.cfs_period_us"), read("cpu.shares")) == \
                ("50000", "100000", "512")
            assert read("memory.soft_limit_in_bytes") == str(32 << 20)
            assert "oom_kill_disable 1" in read("memory.oom_control")
    finally:
        mb("rm", "-f", "res")
    for args, message in ((("--cpus", "999"), 'invalid --cpus "999"'),
                          (("--memory-swap", "1g"), "--memory-swap needs -m"),
                          (("-m", "64m", "--memory-swap", "32m"), "is less than -m 64m"),
                          (("--cpu-shares", "-5"), "invalid --cpu-shares -5")):
        res = mb("run", "--rm", *args, "busybox", "true")
        assert (res.returncode, res.stderr.count("\n")) == (125, 1) and message in res.stderr, (args, res.stderr)


def test_update_changes_a_running_containers_limits_at_once():
    mb("run", "-d", "--name", "upd", "-m", "64m", "busybox", "sleep", "1000", check=True)
    try:
        assert mb("update", "--cpus", "0.25", "-m", "96m", "--pids-limit", "20", "--restart", "on-failure:3", "upd",
                  check=True).stdout == "upd\n"
        doc = inspect("upd")
        host = doc["HostConfig"]
        assert (host["NanoCpus"], host["Memory"], host["PidsLimit"]) == (250_000_000, 96 << 20, 20)
        assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}

        def read(name: str) -> str:
            return cgroup_file(doc["Minibox"]["Cgroups"], name)

        assert read("memory.limit_in_bytes") in (str(96 << 20), "") and read("memory.max") in (str(96 << 20), "")
        assert read("pids.max") == "20"
        assert read("cpu.cfs_quota_us") in ("25000", "") and read("cpu.max") in ("25000 100000", "")
        nothing = mb("update", "upd")
        assert nothing.returncode == 125 and "nothing to update" in nothing.stderr
        bad = mb("update", "--memory-swap", "1m", "upd")
        assert bad.returncode == 125 and "is less than -m" in bad.stderr
    finally:
        mb("rm", "-f", "upd")


def _allowed(ctr: str) -> str:
    out = mb("exec", ctr, "grep", "Cpus_allowed_list", "/proc/self/status", check=True).stdout
    return out.split(":", 1)[1].strip()


def test_a_container_reads_its_own_limits_in_sys_fs_cgroup():
    """As Docker: /sys/fs/cgroup inside shows the container's own groups, read-only, so a
    program finds its -m and --pids-limit there. On cgroup v1 each hierarchy's group is
    bound there; on v2 (MINIBOX_CGROUP=v2 takes this hybrid host's unified hierarchy) the
    container gets a cgroup namespace, Docker's default on v2, and its group is the root of
    a cgroup2 mount, for PID 1 and for `exec` alike."""
    from minibox.runtime import cgroups

    if cgroups.layout().version == "v1":
        out = mb("run", "--rm", "--network", "none", "-m", "64m", "--pids-limit", "33", "busybox", "sh", "-c",
                 "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; "
                 "touch /sys/fs/cgroup/memory/x 2>&1; true", check=True).stdout.splitlines()
        assert out[:2] == [str(64 << 20), "33"] and "Read-only file system" in out[2]
    v2 = {"MINIBOX_CGROUP": "v2"}
    roots = [p for p in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified") if cgroups.is_cgroup2(p)]
    if not roots:
        return  # no cgroup v2 hierarchy on this host at all
    has_pids = "pids" in cgroups.controllers(cgroups.Layout("v2", roots[0]))
    mb("run", "-d", "--network", "none", "--name", "cg2", *(("--pids-limit", "33") if has_pids else ()), "busybox",
       "sleep", "1000", env=v2, check=True)
    try:
        inside = mb("exec", "cg2", "sh", "-c", "grep ^0:: /proc/self/cgroup; grep ' /sys/fs/cgroup ' /proc/mounts; "
                    "cat /sys/fs/cgroup/cgroup.procs; touch /sys/fs/cgroup/x 2>&1; cat /sys/fs/cgroup/pids.max",
                    env=v2).stdout.splitlines()
        assert inside[0] == "0::/"  # the container's group is its whole cgroup tree
        assert inside[1].split()[2] == "cgroup2" and "ro" in inside[1].split()[3].split(",")
        assert "1" in inside[2:] and any("Read-only file system" in line for line in inside)
        assert not has_pids or inside[-1] == "33"
        mb("ps", check=True)  # ps's memo now holds where its freezer is: v2's, whose frozen tasks show S, not D
        mb("pause", "cg2", check=True)
        assert "(Paused)" in mb("ps", "--filter", "name=cg2", check=True).stdout
        mb("unpause", "cg2", check=True)
        assert "(Paused)" not in mb("ps", "--filter", "name=cg2", check=True).stdout
        explained = mb("run", "--rm", "--explain", "--network", "none", "busybox", "true", env=v2)
        assert "--cgroup" in (explained.stdout + explained.stderr).split("\nunshare ", 1)[1].split("\n", 1)[0]
    finally:
        mb("rm", "-f", "cg2", env=v2)
    if not has_pids:  # as on this hybrid host, whose v1 holds the pids controller: a limit nothing enforces
        res = mb("run", "--rm", "--network", "none", "--pids-limit", "33", "busybox", "true", env=v2)
        assert (res.returncode, res.stderr.count("\n")) == (125, 1) and "--pids-limit" in res.stderr and \
            "no pids controller" in res.stderr, res.stderr


def test_cpuset_pins_a_container_and_update_moves_it():
    """--cpuset-cpus/--cpuset-mems as Docker's: the kernel's own view (Cpus_allowed_list)
    inside says where it may run; `update --cpuset-cpus` moves it at once, a container run
    without the flag included (minibox makes its cpuset group then); CPUs the host lacks,
    and bad lists, are refused in one line. --blkio-weight: checked, and where the kernel
    has no I/O weight (no BFQ, as here) discarded with Docker's warning."""
    import os

    last = str((os.cpu_count() or 1) - 1)
    mb("run", "-d", "--name", "pin", "--cpuset-cpus", "0", "--cpuset-mems", "0", "busybox", "sleep", "1000",
       check=True)
    mb("run", "-d", "--name", "free", "busybox", "sleep", "1000", check=True)
    try:
        assert _allowed("pin") == "0"
        host = inspect("pin")["HostConfig"]
        assert (host["CpusetCpus"], host["CpusetMems"]) == ("0", "0")
        mb("update", "--cpuset-cpus", last, "pin", check=True)
        assert _allowed("pin") == last and inspect("pin")["HostConfig"]["CpusetCpus"] == last
        mb("update", "--cpuset-cpus", "0", "free", check=True)
        assert _allowed("free") == "0"
    finally:
        mb("rm", "-f", "pin", "free")
    for args, message in ((("--cpuset-cpus", "99"), "requested CPUs are not available here"),
                          (("--cpuset-cpus", "1-x"), 'invalid --cpuset-cpus "1-x"'),
                          (("--cpuset-mems", "7"), "requested memory nodes are not available here"),
                          (("--blkio-weight", "5"), "invalid --blkio-weight 5: the range is 10 to 1000")):
        res = mb("run", "--rm", *args, "busybox", "true")
        assert (res.returncode, res.stderr.count("\n")) == (125, 1) and message in res.stderr, (args, res.stderr)
    weighted = mb("run", "--rm", "--network", "none", "--blkio-weight", "300", "busybox", "true")
    assert weighted.returncode == 0
    from minibox.runtime import cgroups

    if not cgroups.has_io_weight():
        assert "--blkio-weight discarded" in weighted.stderr


def test_exec_detached_and_privileged():
    """exec -d returns at once, the command running on in the container, its output
    discarded; exec --privileged gives that one command every capability, as Docker's."""
    mb("run", "-d", "--name", "ex", "busybox", "sleep", "1000", check=True)
    try:
        res = mb("exec", "-d", "ex", "sh", "-c", "echo said; sleep 1; touch /done")
        assert (res.returncode, res.stdout) == (0, "")  # back before the command is done
        assert mb("exec", "ex", "test", "-e", "/done").returncode == 1
        assert wait_for(lambda: mb("exec", "ex", "test", "-e", "/done").returncode == 0, timeout=10)
        caps = {n: int(mb("exec", *flags, "ex", "grep", "CapEff", "/proc/self/status", check=True)
                       .stdout.split()[1], 16) for n, flags in (("plain", ()), ("privileged", ("--privileged",)))}
        assert caps["plain"] & ~caps["privileged"] == 0 and caps["privileged"] > caps["plain"]
        assert caps["privileged"] & (1 << 21)  # CAP_SYS_ADMIN, which Docker's defaults leave out
        missing = mb("exec", "-d", "ex", "nosuch")
        assert missing.returncode == 127 and missing.stderr.count("\n") == 1
        both = mb("exec", "-d", "-t", "ex", "true")
        assert both.returncode == 125 and "exec -d" in both.stderr
    finally:
        mb("rm", "-f", "ex")


def _monitors(cid: str) -> list[int]:
    """The container's health monitors: processes running minibox.engine.health for it, but
    not the forks a check makes of the monitor (exec's E1, and the check before its execve),
    which carry the monitor's command line for a moment."""
    from pathlib import Path

    found = {}
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and b"minibox.engine.health" in (p / "cmdline").read_bytes() and \
                    cid.encode() in (p / "cmdline").read_bytes():
                found[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return [pid for pid, parent in found.items() if parent not in found]


def _check_output_buffers(cid: str) -> list[int]:
    """The sizes of the monitor's buffer for a running check's output (a memfd, at its 1, 2 and own fd)."""
    sizes = []
    for monitor in _monitors(cid):
        fds = f"/proc/{monitor}/fd"
        for fd in os.listdir(fds):
            with contextlib.suppress(OSError):
                if os.readlink(f"{fds}/{fd}").startswith("/memfd:health-output"):
                    sizes.append(os.stat(f"{fds}/{fd}").st_size)
    return sorted(set(sizes))


def test_a_health_check_is_one_process_start():
    """Issue 23's measure, counted with strace on the monitor: each check forks once (the
    check itself, straight into the container's PID namespace) and runs its one program
    after exec's sealed trampoline."""
    import subprocess
    import tempfile

    cid = mb("run", "-d", "--network", "none", "--name", "hc1", "--health-cmd", "true", "--health-interval", "200ms",
             "busybox", "sleep", "1000", check=True).stdout.strip()
    try:
        assert wait_for(lambda: inspect("hc1")["State"]["Health"]["Status"] == "healthy", timeout=20)
        [monitor] = _monitors(cid)
        with tempfile.TemporaryDirectory() as d:  # -ff: one file per process, each call whole on its line
            subprocess.run(["timeout", "-s", "INT", "1.5", "strace", "-ff", "-qq", "-e",
                            "trace=execve,execveat,clone,clone3,fork,vfork", "-o", f"{d}/t", "-p", str(monitor)],
                           capture_output=True)
            calls = {int(n.rsplit(".", 1)[1]): open(f"{d}/{n}").read().splitlines() for n in os.listdir(d)}
        children = {pid: [int(line.rsplit("= ", 1)[1]) for line in lines
                          if re.match(r"(clone3?|v?fork)\(", line) and re.search(r"= \d+$", line)]
                    for pid, lines in calls.items()}

        def tree(pid: int) -> list[int]:
            return [pid] + [x for c in children.get(pid, []) for x in tree(c)]

        # a check the trace saw whole: a fork of the monitor whose processes ran the program
        ran = {p for p, lines in calls.items() if any(x.startswith("execve(") and x.endswith("= 0") for x in lines)}
        started = [len(tree(c)) for c in children.get(monitor, []) if ran & set(tree(c))]
        assert len(started) >= 2 and set(started) == {1}, calls
    finally:
        mb("rm", "-f", "hc1")


def test_health_checks_as_dockers():
    """starting until the first success, healthy, unhealthy after --health-retries failures
    in a row, a check past its timeout fails; ps says so, inspect keeps the last 5 results;
    the monitor is a process of its own that ends with the container."""
    cid = mb("run", "-d", "--name", "hc", "--health-cmd", "echo checked; test -f /tmp/ok", "--health-interval", "200ms",
             "--health-retries", "2", "busybox", "sh", "-c", "sleep 0.7; touch /tmp/ok; exec sleep 1000",
             check=True).stdout.strip()
    try:
        assert "(health: starting)" in mb("ps", "--filter", "name=hc", check=True).stdout
        assert wait_for(lambda: "(healthy)" in mb("ps", "--filter", "name=hc").stdout, timeout=20)
        mb("exec", "hc", "rm", "/tmp/ok", check=True)
        assert wait_for(lambda: inspect("hc")["State"]["Health"]["Status"] == "unhealthy", timeout=20)
        health = inspect("hc")["State"]["Health"]
        assert health["FailingStreak"] >= 2 and 1 <= len(health["Log"]) <= 5 and health["Log"][-1]["ExitCode"] == 1
        assert health["Log"][-1]["Output"] == "checked\n"  # what the check printed, and only that
        assert inspect("hc")["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "echo checked; test -f /tmp/ok"]
        assert "(unhealthy)" in mb("ps", "--filter", "name=hc", check=True).stdout
        assert len(_monitors(cid)) == 1
    finally:
        mb("rm", "-f", "hc")
    assert wait_for(lambda: not _monitors(cid))  # it went with the container
    mb("run", "-d", "--name", "slow", "--health-cmd", "sleep 5", "--health-interval", "100ms", "--health-timeout",
       "300ms", "--health-retries", "1", "busybox", "sleep", "1000", check=True)
    try:
        assert wait_for(lambda: inspect("slow")["State"]["Health"]["Status"] == "unhealthy", timeout=20)
        assert "exceeded timeout" in inspect("slow")["State"]["Health"]["Log"][-1]["Output"]
    finally:
        mb("rm", "-f", "slow")
    # Docker keeps 4096 bytes of a check's output; the rest is read and dropped, never held:
    # while the check sleeps after printing 1 MB, the monitor's buffer holds 4096 bytes.
    cid = mb("run", "-d", "--name", "chatty", "--health-cmd", "yes x | head -c 1000000; sleep 2",
             "--health-interval", "200ms", "busybox", "sleep", "1000", check=True).stdout.strip()
    try:
        assert wait_for(lambda: _check_output_buffers(cid), timeout=20)
        time.sleep(1)
        assert _check_output_buffers(cid) == [4096]
        assert wait_for(lambda: inspect("chatty")["State"]["Health"]["Status"] == "healthy", timeout=20)
        assert inspect("chatty")["State"]["Health"]["Log"][-1]["Output"] == "x\n" * 2048
    finally:
        mb("rm", "-f", "chatty")
    for args, message in ((("--health-interval", "soon"), 'invalid --health-interval "soon"'),
                          (("--health-retries", "-1"), "invalid --health-retries -1"),
                          (("--no-healthcheck", "--health-cmd", "true"), "conflicting options: --no-healthcheck")):
        res = mb("run", "--rm", *args, "busybox", "true")
        assert (res.returncode, res.stderr.count("\n")) == (125, 1) and message in res.stderr, (args, res.stderr)
