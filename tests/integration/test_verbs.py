"""Docker's create, start, restart, --restart, wait and rename, on minibox's state machine."""

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time

from conftest import inspect, mb, sh, wait_for


def state(name: str) -> str:
    return mb("inspect", "-f", "{{.State.Status}}", name).stdout.strip()


def test_wait_prints_each_exit_code_once_the_container_stops():
    mb("run", "-d", "--network", "none", "--name", "w1", "busybox", "sh", "-c", "sleep 0.3; exit 7", check=True)
    mb("run", "-d", "--network", "none", "--name", "w2", "busybox", "true", check=True)
    try:
        res = mb("wait", "w1", "w2", check=True)
        assert res.stdout == "7\n0\n"
        assert mb("ps", "-a", "--filter", "name=w1", "--format", "{{.State}}").stdout == "exited\n"
        missing = mb("wait", "nope")
        assert missing.returncode != 0 and "nope" in missing.stderr and missing.stderr.count("\n") == 1
    finally:
        mb("rm", "-f", "w1", "w2")


def test_rename_keeps_the_container_and_frees_the_old_name():
    mb("run", "-d", "--network", "none", "--name", "old", "busybox", "sleep", "1000", check=True)
    mb("run", "-d", "--network", "none", "--name", "other", "busybox", "sleep", "1000", check=True)
    try:
        cid = mb("inspect", "-f", "{{.Id}}", "old", check=True).stdout.strip()
        mb("rename", "old", "new", check=True)
        assert mb("inspect", "-f", "{{.Id}} {{.Name}}", "new", check=True).stdout.split()[0] == cid
        assert mb("exec", "new", "true").returncode == 0  # still running, same processes
        taken = mb("rename", "new", "other")
        assert taken.returncode == 1 and 'container name "other" is already in use' in taken.stderr
        bad = mb("rename", "new", "bad/name")
        assert bad.returncode == 125 and 'invalid container name "bad/name"' in bad.stderr
        mb("run", "-d", "--network", "none", "--name", "old", "busybox", "true", check=True)  # free again
    finally:
        mb("rm", "-f", "new", "other", "old")


def test_create_makes_everything_but_runs_nothing_until_start():
    cid = mb("create", "--name", "later", "-p", "8097:80", "busybox", "sh", "-c",
             "echo started; exec httpd -f -p 80", check=True).stdout.strip()
    try:
        assert len(cid) == 64 and state("later") == "created"
        assert "Created" in mb("ps", "-a", "--filter", "name=later", check=True).stdout
        pid = inspect("later")["State"]["Pid"]
        assert pid == 0  # nothing of its own runs yet, as Docker shows it...
        assert mb("logs", "later", check=True).stdout == ""  # ...and its command has not run
        assert mb("exec", "later", "true").returncode == 1  # not running
        assert mb("start", "later", check=True).stdout == "later\n"
        assert state("later") == "running"
        assert wait_for(lambda: mb("logs", "later").stdout == "started\n")
        assert wait_for(lambda: sh("curl -s -m 2 -o /dev/null -w '%{http_code}' 127.0.0.1:8097",
                                   check=False).stdout in ("200", "404"))
        assert mb("exec", "later", "cat", "/proc/1/cmdline", check=True).stdout.startswith("httpd")
        assert mb("start", "later", check=True).returncode == 0  # already running: nothing to do
    finally:
        mb("rm", "-f", "later")


def test_create_of_a_missing_command_succeeds_and_start_records_127():
    """Docker's `create` runs no runtime, so a command that is not in the image does not fail
    it (runc's `create` would, and minibox-oci's does); the start that runs it ends in 127,
    with exec's words in the log. minibox's created PID 1 has built its root by then, and
    waits at WaitStart, as an OCI runtime's does."""
    mb("create", "--name", "nocmd", "busybox", "nosuchcmd", check=True)
    try:
        assert state("nocmd") == "created"
        mb("start", "nocmd")
        assert wait_for(lambda: state("nocmd") == "exited")
        assert inspect("nocmd")["State"]["ExitCode"] == 127
        assert 'exec "nosuchcmd": executable file not found in $PATH' in mb("logs", "nocmd").stderr
    finally:
        mb("rm", "-f", "nocmd")


def test_restart_in_the_foreground_returns_the_first_exit_and_goes_on_detached():
    """Docker takes `run --restart on-failure:2` without -d: the run returns the first exit's
    status, and the policy restarts the container in the background."""
    res = mb("run", "--name", "fg", "--restart", "on-failure:2", "busybox", "sh", "-c",
             "echo ran >> /count; exit 3")
    try:
        assert res.returncode == 3
        assert wait_for(lambda: mb("inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "fg").stdout.split()
                        == ["2", "exited"], timeout=20)
        assert mb("inspect", "-f", "{{.State.ExitCode}}", "fg").stdout.strip() == "3"
    finally:
        mb("rm", "-f", "fg")


def test_create_refuses_what_it_cannot_honour_and_makes_nothing():
    for args, code, message in (
            (("attach", "ghost"), 1, 'no such container: "ghost"'),
            (("create", "--restart", "sometimes", "busybox"), 125, 'invalid --restart "sometimes"'),
            (("run", "--rm", "-d", "--restart", "always", "busybox"), 125, "conflicting options: --restart always"),
            (("start", "ghost"), 1, 'no such container: "ghost"'),
            (("restart", "ghost"), 1, 'no such container: "ghost"')):
        res = mb(*args)
        assert (res.returncode, res.stderr.count("\n")) == (code, 1) and message in res.stderr, (args, res.stderr)
    assert mb("ps", "-aq").stdout == ""


def test_start_runs_an_exited_container_again_with_its_files_and_ports():
    mb("run", "-d", "--name", "again", "-p", "8098:80", "busybox", "sh", "-c",
       "echo run >> /count; cat /count | wc -l; exec httpd -f -p 80", check=True)
    try:
        first = inspect("again")
        assert wait_for(lambda: mb("logs", "again").stdout == "1\n")
        mb("stop", "-t", "1", "again", check=True)
        assert state("again") == "exited" and "8098" not in mb("port", "again").stdout
        mb("start", "again", check=True)
        assert state("again") == "running" and inspect("again")["Id"] == first["Id"]
        assert inspect("again")["State"]["Pid"] != first["State"]["Pid"]
        assert wait_for(lambda: mb("logs", "again").stdout == "1\n2\n")  # its writable layer and log kept
        assert mb("port", "again", check=True).stdout == "80/tcp -> 0.0.0.0:8098\n"
        assert wait_for(lambda: sh("curl -s -m 2 -o /dev/null -w '%{http_code}' 127.0.0.1:8098",
                                   check=False).stdout in ("200", "404"))
        mb("restart", "-t", "1", "again", check=True)
        assert wait_for(lambda: mb("logs", "again").stdout == "1\n2\n3\n")
        assert state("again") == "running" and inspect("again")["RestartCount"] == 0  # the user's, not a policy's
    finally:
        mb("rm", "-f", "again")


def test_start_attached_prints_its_output_and_exits_with_its_status():
    mb("run", "-d", "--network", "none", "--name", "once", "busybox", "sh", "-c", "echo hello; exit 3", check=True)
    try:
        assert mb("wait", "once", check=True).stdout == "3\n"
        res = mb("start", "-a", "once")
        assert (res.returncode, res.stdout) == (3, "hello\n")
    finally:
        mb("rm", "-f", "once")


def test_on_failure_restarts_a_failing_command_at_most_n_times():
    mb("run", "-d", "--network", "none", "--name", "flaky", "--restart", "on-failure:2", "busybox",
       "sh", "-c", "echo try; exit 4", check=True)
    try:
        # 100 ms, then 200 ms of backoff: two restarts, then it stays exited
        assert wait_for(lambda: inspect("flaky")["RestartCount"] == 2 and state("flaky") == "exited", timeout=20)
        assert mb("logs", "flaky").stdout == "try\ntry\ntry\n"
        doc = inspect("flaky")
        assert doc["State"]["ExitCode"] == 4
        assert doc["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    finally:
        mb("rm", "-f", "flaky")


def test_always_restarts_until_the_user_stops_it():
    mb("run", "-d", "--network", "none", "--name", "phoenix", "--restart", "always", "busybox",
       "sh", "-c", "sleep 0.3", check=True)
    try:
        assert wait_for(lambda: inspect("phoenix")["RestartCount"] >= 2, timeout=20)
        mb("stop", "-t", "1", "phoenix", check=True)
        assert wait_for(lambda: state("phoenix") == "exited", timeout=10)
        count = inspect("phoenix")["RestartCount"]
        # The backoff has grown past a second by now; wait past it: nothing starts it again.
        assert not wait_for(lambda: state("phoenix") != "exited", timeout=3)
        assert inspect("phoenix")["RestartCount"] == count
        mb("start", "phoenix", check=True)  # the user's start: the policy is back in force
        assert wait_for(lambda: inspect("phoenix")["RestartCount"] >= 1 and state("phoenix") == "running", timeout=20)
    finally:
        mb("rm", "-f", "phoenix")


class Terminal:
    """A minibox command on a pseudo-terminal of its own, as a user at a keyboard runs it."""

    def __init__(self, argv, rows: int = 24, cols: int = 80):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execv(sys.executable, [sys.executable, "-m", "minibox", *argv])
        self.resize(rows, cols)
        self.seen = b""

    def resize(self, rows: int, cols: int) -> None:
        """As a terminal window does: the kernel sends the command SIGWINCH."""
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def read_until(self, token: bytes, timeout: float = 10) -> bool:
        end = time.monotonic() + timeout
        while token not in self.seen and time.monotonic() < end:
            if select.select([self.fd], [], [], 0.1)[0]:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:
                    break
                if not data:
                    break
                self.seen += data
        found = token in self.seen
        self.seen = self.seen[self.seen.find(token) + len(token):] if found else b""
        return found

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, timeout: float = 15) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.read_until(b"\0never", timeout=0.2)  # keep the pty drained
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, 9)
        raise AssertionError(f"still running after {timeout} s; last output {self.seen[-200:]!r}")


def test_ctrl_p_ctrl_q_detaches_run_it_and_attach_comes_back():
    t = Terminal(["run", "-it", "--network", "none", "--name", "det", "busybox", "sh"])
    try:
        assert t.read_until(b"# ")
        t.send(b"echo kept > /tmp/mark\r")
        assert t.read_until(b"# ")
        t.send(b"\x10\x11")  # Ctrl-P Ctrl-Q
        assert t.wait() == 0  # run let go of the terminal...
        assert state("det") == "running"  # ...and the container runs on
        assert mb("exec", "det", "cat", "/tmp/mark", check=True).stdout == "kept\n"
        a = Terminal(["attach", "det"])
        a.send(b"echo $((40+2))\r")
        assert a.read_until(b"42\r\n")  # the same shell answers
        a.send(b"\x10\x11")
        assert a.wait() == 0 and state("det") == "running"
        b = Terminal(["attach", "det"])
        b.send(b"exit 6\r")
        assert b.wait() == 6  # attach ends with the container, with its status
        assert wait_for(lambda: state("det") == "exited")
        res = mb("attach", "det")
        assert res.returncode == 1 and "is not running" in res.stderr and res.stderr.count("\n") == 1
    finally:
        mb("rm", "-f", "det")


def test_create_it_then_start_ai_gets_the_first_prompt():
    mb("create", "-it", "--network", "none", "--name", "boxed", "busybox", "sh", check=True)
    try:
        t = Terminal(["start", "-ai", "boxed"])
        assert t.read_until(b"# ")  # attached before the start: nothing of it is missed
        t.send(b"hostname; exit 7\r")
        assert t.read_until(inspect("boxed")["Id"][:12].encode())
        assert t.wait() == 7 and state("boxed") == "exited"
    finally:
        mb("rm", "-f", "boxed")


def test_create_explain_shows_the_steps_and_leaves_it_waiting():
    res = mb("create", "--explain", "--network", "none", "--name", "shown", "busybox", "true", check=True)
    try:
        assert len(res.stdout.strip()) == 64  # the id, as create prints it; the lesson goes to stderr
        assert "minibox create --network none --name shown busybox true" in res.stderr
        assert "unshare --pid --mount" in res.stderr and "pivot_root" in res.stderr
        assert state("shown") == "created"
    finally:
        mb("rm", "-f", "shown")


def test_a_reload_signal_leaves_the_policy_in_force_a_kill_does_not():
    mb("run", "-d", "--network", "none", "--name", "reload", "--restart", "always", "busybox", "sh", "-c",
       "trap 'exit 3' HUP; while :; do sleep 0.1; done", check=True)
    try:
        mb("kill", "-s", "HUP", "reload", check=True)  # it chose to exit on HUP: the policy starts it again
        assert wait_for(lambda: inspect("reload")["RestartCount"] == 1 and state("reload") == "running", timeout=15)
        mb("kill", "reload", check=True)  # SIGKILL: the user ended it
        assert wait_for(lambda: state("reload") == "exited")
        assert not wait_for(lambda: state("reload") != "exited", timeout=2)
    finally:
        mb("rm", "-f", "reload")


def test_attach_without_a_tty_keeps_stdout_and_stderr_apart():
    mb("run", "-d", "-i", "--network", "none", "--name", "piped", "busybox", "sh", check=True)
    try:
        res = mb("attach", "piped", input="echo out; echo err >&2; exit 3\n")
        assert (res.returncode, res.stdout, res.stderr) == (3, "out\n", "err\n")
    finally:
        mb("rm", "-f", "piped")


def test_attach_carries_the_window_size_and_its_changes():
    mb("run", "-dit", "--network", "none", "--name", "sized", "busybox", "sh", check=True)
    try:
        a = Terminal(["attach", "sized"], rows=33, cols=111)

        def size_is(text: bytes) -> bool:
            a.send(b"stty size\r")
            return a.read_until(text, timeout=1)

        assert wait_for(lambda: size_is(b"33 111"), timeout=10)
        a.resize(40, 90)
        assert wait_for(lambda: size_is(b"40 90"), timeout=10)
        a.send(b"\x10\x11")
        assert a.wait() == 0 and state("sized") == "running"
    finally:
        mb("rm", "-f", "sized")


def test_pause_freezes_until_unpause_and_survives_the_cli():
    """Docker's pause: the cgroup's freezer holds every process (the kernel's word, so a
    killed CLI changes nothing); ps says (Paused), exec is refused, unpause thaws, and stop
    and rm -f work on a paused container."""
    mb("run", "-d", "--name", "frozen", "busybox", "sh", "-c", "while true; do date +%s%N > /tick; sleep 0.05; done",
       check=True)
    try:
        assert mb("pause", "frozen", check=True).stdout == "frozen\n"
        assert "(Paused)" in mb("ps", "--filter", "name=frozen", check=True).stdout
        st = inspect("frozen")["State"]
        assert st["Status"] == "paused" and st["Paused"] is True and st["Running"] is True
        pid = st["Pid"]
        tick = open(f"/proc/{pid}/root/tick").read()
        time.sleep(0.3)
        assert open(f"/proc/{pid}/root/tick").read() == tick  # nothing ran while frozen
        again = mb("pause", "frozen")
        assert again.returncode == 1 and "container frozen is already paused" in again.stderr
        ex = mb("exec", "frozen", "true")
        assert ex.returncode == 1 and "is paused" in ex.stderr
        mb("unpause", "frozen", check=True)
        assert wait_for(lambda: open(f"/proc/{pid}/root/tick").read() != tick)
        assert mb("unpause", "frozen").returncode == 1  # not paused
        mb("pause", "frozen", check=True)
        mb("stop", "-t", "1", "frozen", check=True)  # a paused container stops: thawed for the signal
        assert state("frozen") == "exited"
        mb("start", "frozen", check=True)
        mb("pause", "frozen", check=True)
    finally:
        assert mb("rm", "-f", "frozen").returncode == 0  # and rm -f removes a paused one
    assert mb("ps", "-aq").stdout == ""


def test_version_and_info_describe_minibox_and_the_host():
    assert mb("--version", check=True).stdout.startswith("minibox version ")
    out = mb("version", check=True).stdout
    assert out.startswith("minibox version ") and f"Kernel:          {os.uname().release}" in out
    mb("run", "-d", "--name", "counted", "busybox", "sleep", "1000", check=True)
    try:
        info = dict(line.strip().split(": ", 1) for line in mb("info", check=True).stdout.splitlines()
                    if ": " in line)
        assert info["Containers"] == "1" and info["Running"] == "1" and info["Paused"] == "0"
        assert info["Firewall Backend"] in ("nftables", "iptables") and info["Images"] != "0"
    finally:
        mb("rm", "-f", "counted")


def test_inspect_keys_scripts_read_are_dockers():
    """HostConfig.PortBindings as asked (HostIp "" for every address, where
    NetworkSettings.Ports says 0.0.0.0) and NetworkMode "default" without --network: what
    scripts written against Docker's inspect read."""
    mb("run", "-d", "--name", "keys", "-p", "8126:80", "-p", "127.0.0.1:8127:81", "busybox", "sleep", "1000",
       check=True)
    try:
        doc = inspect("keys")
        assert doc["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8126"}],
                                                     "81/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8127"}]}
        assert doc["NetworkSettings"]["Ports"]["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": "8126"}]
        assert doc["HostConfig"]["NetworkMode"] == "default"
        port = mb("inspect", "-f", '{{(index (index .NetworkSettings.Ports "80/tcp") 0).HostPort}}', "keys",
                  check=True).stdout
        assert port == "8126\n"
    finally:
        mb("rm", "-f", "keys")


def test_the_container_group_names_every_verb_and_prunes_the_stopped():
    mb("container", "run", "-d", "--name", "up", "busybox", "sleep", "1000", check=True)
    mb("container", "run", "--name", "done", "busybox", "true", check=True)
    mb("container", "create", "--name", "never", "busybox", "true", check=True)
    try:
        assert sorted(mb("container", "ls", "-a", "--format", "{{.Names}}", check=True).stdout.split()) == \
            ["done", "never", "up"]
        assert mb("container", "exec", "up", "true").returncode == 0
        out = mb("container", "prune", "-f", check=True).stdout
        assert out.startswith("Deleted Containers:\n") and len(out.split()) == 4  # done and never, by id
        assert mb("ps", "-a", "--format", "{{.Names}}", check=True).stdout == "up\n"
    finally:
        mb("rm", "-f", "up", "done", "never")


def test_diff_lists_what_the_container_changed_in_its_image():
    """Docker's diff: A added, C changed (a file, or a directory holding a change), D deleted."""
    mb("run", "--name", "changed", "busybox", "sh", "-c",
       "echo new > /etc/added; echo more >> /etc/group; rm /bin/vi; mkdir -p /data/sub; touch /data/sub/f",
       check=True)
    try:
        out = mb("diff", "changed", check=True).stdout.splitlines()
        for line in ("A /data", "A /data/sub", "A /data/sub/f", "C /etc", "A /etc/added", "C /etc/group", "C /bin",
                     "D /bin/vi"):
            assert line in out, (line, out)
        assert out == sorted(out, key=lambda x: x[2:])
    finally:
        mb("rm", "-f", "changed")


def test_stats_reads_each_running_containers_cgroups():
    mb("run", "-d", "--name", "busy", "-m", "64m", "--pids-limit", "10", "busybox", "sh", "-c",
       "while true; do :; done", check=True)
    mb("run", "-d", "--name", "idle", "busybox", "sleep", "1000", check=True)
    mb("run", "--name", "gone", "busybox", "true", check=True)
    try:
        rows = [json.loads(x) for x in mb("stats", "--no-stream", "--format", "json", check=True).stdout.splitlines()]
        by = {r["Name"]: r for r in rows}
        assert set(by) == {"busy", "idle"}  # running ones only
        assert by["busy"]["MemUsage"].endswith(" / 64MiB") and by["busy"]["PIDs"] == "1"
        assert float(by["busy"]["CPUPerc"].rstrip("%")) > 0  # it spins
        table = mb("stats", "--no-stream", "idle", check=True).stdout.splitlines()
        assert table[0].split()[:4] == ["CONTAINER", "ID", "NAME", "CPU"] and "idle" in table[1]
        res = mb("stats", "--no-stream", "gone")
        assert res.returncode == 1 and "container gone is not running" in res.stderr
    finally:
        mb("rm", "-f", "busy", "idle", "gone")


def test_events_record_what_each_command_and_shim_did():
    """Docker's events, in Docker's words: create, start, kill, die, stop, pause, unpause,
    rename, destroy; written by the command (or the shim's exit command, for a die nobody
    waited for), read back with --since/--until and filters, and followed as they come."""
    since = f"{time.time():.3f}"
    follower = subprocess.Popen([sys.executable, "-m", "minibox", "events", "--filter", "event=die", "--format",
                                 "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}"],
                                stdout=subprocess.PIPE, text=True)
    try:
        cid = mb("run", "-d", "--name", "ev", "busybox", "sleep", "1000", check=True).stdout.strip()
        mb("pause", "ev", check=True)
        mb("unpause", "ev", check=True)
        mb("rename", "ev", "ev2", check=True)
        mb("stop", "-t", "1", "ev2", check=True)
        mb("run", "-d", "--name", "quick", "busybox", "sh", "-c", "exit 3", check=True)
        assert wait_for(lambda: state("quick") == "exited")
        mb("rm", "ev2", "quick", check=True)
        until = f"{time.time():.3f}"
        lines = mb("events", "--since", since, "--until", until, "--filter", f"container={cid[:12]}",
                   check=True).stdout
        actions = [line.split()[2] for line in lines.splitlines()]
        assert actions[:4] == ["create", "start", "pause", "unpause"] and "rename" in actions
        assert actions[-1] == "destroy" and "die" in actions and "stop" in actions and "kill" in actions
        died = [json.loads(x) for x in mb("events", "--since", since, "--until", until, "--filter", "event=die",
                                          "--format", "json", check=True).stdout.splitlines()]
        assert {(d["Actor"]["Attributes"]["name"], d["Actor"]["Attributes"]["exitCode"]) for d in died} >= \
            {("quick", "3")}
        bad = mb("events", "--since", "yesterday")
        assert bad.returncode == 125 and 'invalid --since "yesterday"' in bad.stderr
    finally:
        follower.terminate()
        seen = follower.communicate(timeout=10)[0]
        mb("rm", "-f", "ev", "ev2", "quick")
    assert "die quick 3" in seen  # followed as it happened


def test_ps_last_latest_no_trunc_and_size():
    first = mb("run", "--name", "older", "busybox", "true", check=True)
    assert first.returncode == 0
    cid = mb("run", "-d", "--name", "newer", "busybox", "sh", "-c", "head -c 3000 /dev/zero > /blob; sleep 1000",
             check=True).stdout.strip()
    try:
        assert mb("ps", "-q", "-l", check=True).stdout == cid[:12] + "\n"
        assert mb("ps", "-q", "-n", "2", check=True).stdout.split()[1] == \
            inspect("older")["Id"][:12]  # in any state, newest first
        full = mb("ps", "--no-trunc", "--filter", "name=newer", check=True).stdout
        assert cid in full and '"sh -c \'head -c 3000 /dev/zero > /blob; sleep 1000\'"' in full  # as Docker quotes it
        assert wait_for(lambda: mb("ps", "-s", "--filter", "name=newer").stdout.split()[-1] in ("3kB", "3.01kB"))
        assert mb("ps", "-s", check=True).stdout.splitlines()[0].split()[-1] == "SIZE"
    finally:
        mb("rm", "-f", "older", "newer")


def test_system_df_and_prune():
    mb("run", "-d", "--name", "keepme", "busybox", "sleep", "1000", check=True)
    mb("run", "--name", "wrote", "busybox", "sh", "-c", "head -c 5000 /dev/zero > /x", check=True)
    mb("network", "create", "--subnet", "10.77.30.0/24", "unused", check=True)
    try:
        df = {line.split()[0]: line.split() for line in mb("system", "df", check=True).stdout.splitlines()[1:]}
        assert df["Containers"][1:3] == ["2", "1"] and df["Containers"][-1] == "5kB"  # what the stopped one wrote
        out = mb("system", "prune", "-f", check=True).stdout
        assert "Deleted Containers:" in out and "Deleted Networks:\nunused" in out
        assert mb("ps", "-a", "--format", "{{.Names}}", check=True).stdout == "keepme\n"
    finally:
        mb("rm", "-f", "keepme", "wrote")
        mb("network", "rm", "unused")
