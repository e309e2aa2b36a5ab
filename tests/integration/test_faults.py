"""Faults, injected for real: killed commands, a full disk, damaged state, races. Whatever happens,
every container stays visible to `ps -a`, removable by `rm -f` and `gc`, and nothing is lost
but what the fault touched.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import time

import faults
import pytest
from conftest import PROJECT, ROOT, leftovers, mb, sh, snapshot, wait_for

from minibox.engine import listing


def clean_everything(env: dict | None = None) -> None:
    ids = mb("ps", "-aq", env=env).stdout.split()
    if ids:
        mb("rm", "-f", *ids, env=env)
    mb("gc", env=env)


# --- killed commands ----------------------------------------------------------------------------------


def test_kill_9_at_random_moments_leaves_everything_recoverable():
    """A smaller count of what scripts/stress runs 100 times: run, rm -f and gc, each killed
    with SIGKILL after a random 0-300 ms; then ps, rm -f and gc must leave nothing at all."""
    before = snapshot()
    killed = faults.rounds(int(os.environ.get("MINIBOX_FAULT_ROUNDS", "24")), seed=7, report=None)
    assert killed["run"] >= 3, killed  # the schedule did kill runs mid-way
    listed = mb("ps", "-a", check=True)
    assert "Traceback" not in listed.stderr
    clean_everything()
    assert mb("ps", "-aq").stdout == ""
    assert wait_for(lambda: not leftovers(before), timeout=10), leftovers(before)


def test_a_run_killed_while_starting_is_listed_and_removable():
    """Killed while it starts: ps -a shows it, rm -f finishes it. A run killed before its
    record was written made no container, only what it holds first (its name file, perhaps
    its directory): rm -f of the name finishes that too, and the name is free again."""
    for delay in (0.05, 0.12, 0.2):
        proc = faults.start(["run", "-d", "--name", "halfway", "-p", "8088:80", "busybox", "httpd", "-f"])
        if faults.kill_after(proc, delay) is not None:
            mb("rm", "-f", "halfway")
            continue  # it finished first: try a shorter delay
        if "halfway" not in mb("ps", "-a").stdout:  # then it must have written no record
            owner = (ROOT / "names/halfway").read_text().strip() if (ROOT / "names/halfway").exists() else "-"
            assert not (ROOT / "containers" / owner / "config.json").exists()
        res = mb("rm", "-f", "halfway")
        assert res.returncode in (0, 1) and "Traceback" not in res.stderr
        assert "halfway" not in mb("ps", "-a").stdout
        mb("create", "--name", "halfway", "busybox", check=True)  # the name is free
        mb("rm", "-f", "halfway", check=True)
    mb("gc", check=True)


def test_what_a_run_killed_before_its_record_left_is_removed_by_name():
    """The state a run killed between making its directory and writing its record leaves:
    names/NAME and an empty containers/ID. `rm -f NAME` removed nothing and said `internal
    error: FileNotFoundError` (config.json), and the name stayed taken until gc."""
    cid = "c" * 64
    (ROOT / "names").mkdir(exist_ok=True)
    (ROOT / "names/killed").write_text(cid + "\n")
    (ROOT / "containers" / cid).mkdir(mode=0o700, parents=True)
    res = mb("rm", "-f", "killed")
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert not (ROOT / "containers" / cid).exists() and not (ROOT / "names/killed").exists()
    mb("create", "--name", "killed", "busybox", check=True)
    mb("rm", "-f", "killed", check=True)


def test_a_start_killed_mid_way_never_lets_gc_remove_the_container():
    """A container that existed before a command began is never removed by `gc` because
    that command failed: `start` of an exited container, killed with SIGKILL at random
    moments of its creation (state `creating`, its creator dead), then `gc`. The container,
    its writable layer and its log stay, and it starts again. Before `again` was recorded,
    gc took each such start for a killed `run` and deleted the container."""
    mb("run", "-d", "--name", "keep", "-p", "8124:80", "busybox", "sh", "-c",
       "echo ran >> /runs; exec httpd -f -p 80", check=True)
    try:
        mb("stop", "-t", "1", "keep", check=True)
        killed = 0
        for i in range(12):
            proc = faults.start(["start", "keep"])
            if faults.kill_after(proc, 0.02 + 0.02 * i) is None:
                killed += 1
            mb("gc", check=True)
            assert mb("inspect", "keep").returncode == 0, f"round {i}: gc removed the container"
            mb("stop", "-t", "1", "keep")
        assert killed >= 3  # the schedule did kill starts mid-way
        mb("start", "keep", check=True)
        assert wait_for(lambda: sh("curl -s -m 2 -o /dev/null -w '%{http_code}' 127.0.0.1:8124",
                                   check=False).stdout in ("200", "404"))
        assert "ran" in mb("exec", "keep", "cat", "/runs", check=True).stdout  # its writable layer kept
    finally:
        mb("rm", "-f", "keep")


def test_a_dead_supervisor_is_said_and_gc_restart_takes_over_its_policy():
    """#24 item 9: a shim killed -9 ended an `always` container for good, recorded as
    Exited (255) with RestartCount 0. Now the exit is the one PID 1 really had (SIGKILL,
    its parent-death signal: 137), ps and inspect say its supervisor died, `gc --restart`
    (for a timer or cron) starts it as its policy would have, and `start` re-arms it too."""
    import signal as sig

    mb("run", "-d", "--name", "sup", "--restart", "always", "busybox", "sleep", "1000", check=True)
    try:
        for way in ("gc", "start"):
            doc = mb("inspect", "sup", check=True)
            pid, shim = (json.loads(doc.stdout)[0][k] for k in ("State", "Minibox"))
            os.kill(shim["ShimPid"], sig.SIGKILL)
            assert wait_for(lambda: not os.path.exists(f"/proc/{pid['Pid']}"))
            row = next(x for x in mb("ps", "-a", check=True).stdout.splitlines() if x.endswith(" sup"))
            assert "Exited (137)" in row and "(supervisor died)" in row, row
            assert "supervisor (minibox-shim" in mb("inspect", "-f", "{{.State.Error}}", "sup").stdout
            if way == "gc":
                out = mb("gc", "--restart", "--explain", check=True)
                assert "minibox start" in out.stderr
                assert mb("inspect", "-f", "{{.RestartCount}}", "sup").stdout.strip() == "1"
            else:
                mb("start", "sup", check=True)
            assert mb("inspect", "-f", "{{.State.Status}}", "sup").stdout.strip() == "running"
            assert "supervisor died" not in mb("ps", check=True).stdout
        quiet = mb("gc", "--restart", check=True)  # nothing more to start: a running one is left alone
        assert "removed 0" in quiet.stdout
    finally:
        mb("rm", "-f", "sup")


# --- the disk ------------------------------------------------------------------------------------------


@pytest.fixture
def small_root(tmp_path):
    """A state root on a 24 MB tmpfs holding a copy of the busybox image, and a network of its own."""
    root = tmp_path / "root"
    root.mkdir()
    sh(f"mount -t tmpfs -o size=24m minibox-full {root} && cp -a {ROOT}/images {root}/")
    env = {"MINIBOX_ROOT": str(root), "MINIBOX_DEFAULT_NETWORK": "full"}
    mb("network", "create", "--subnet", "10.250.7.0/24", "full", env=env, check=True)
    yield root, env
    clean_everything(env)
    mb("network", "rm", "full", env=env)
    sh(f"umount {root}")


def test_logs_are_capped_rotated_and_read_across_files(small_root):
    root, env = small_root
    cid = mb("run", "-d", "--network", "none", "--log-opt", "max-size=64k", "--log-opt", "max-file=3",
             "busybox", "sh", "-c", "seq 1 40000; sleep 1000", env=env, check=True).stdout.strip()
    cdir = root / "containers" / cid
    assert wait_for(lambda: b" 40000\n" in (cdir / "container.log").read_bytes(), timeout=20)
    files = sorted(p.name for p in cdir.glob("container.log*"))
    assert files == ["container.log", "container.log.1", "container.log.2"]
    assert all(p.stat().st_size <= 64 * 1024 for p in cdir.glob("container.log*"))
    numbers = [int(x) for x in mb("logs", cid, env=env, check=True).stdout.split()]
    assert numbers[-1] == 40000 and numbers == list(range(numbers[0], 40001))  # the newest, in order, no gap
    assert numbers[0] > 1  # the oldest went: the cap holds
    mb("rm", "-f", cid, env=env, check=True)


def test_a_full_disk_keeps_the_runtime_operable(small_root):
    root, env = small_root
    mb("run", "-d", "--name", "filler", "busybox", "sleep", "1000", env=env, check=True)
    mb("run", "-d", "--name", "bystander", "busybox", "sleep", "1000", env=env, check=True)
    # fill the state disk from inside a container (its upper layer lives there)
    mb("exec", "filler", "sh", "-c", "dd if=/dev/zero of=/big bs=1M 2>/dev/null; sync", env=env)
    assert os.statvfs(root).f_bavail == 0
    ps = mb("ps", "-a", env=env)
    assert ps.returncode == 0 and "filler" in ps.stdout and "bystander" in ps.stdout
    failed = mb("run", "-d", "--name", "newcomer", "busybox", "true", env=env)
    assert failed.returncode == 125 and failed.stderr.count("\n") == 1, failed.stderr
    assert "No space left on device" in failed.stderr and str(root) in failed.stderr  # names the path
    assert not (root / "names/newcomer").exists()
    held = {a for a in os.listdir(root / "ipam/full") if not a.startswith(".")}
    assert held == {"10.250.7.2", "10.250.7.3"}  # filler's and bystander's: the failed run left no empty file
    assert mb("stop", "-t", "1", "bystander", env=env).returncode == 0
    assert mb("rm", "-f", "filler", env=env).returncode == 0  # the way out: removing frees the space
    assert mb("run", "--rm", "busybox", "true", env=env).returncode == 0
    mb("rm", "-f", "bystander", env=env, check=True)


def test_a_failed_volume_create_and_a_killed_pull_leave_nothing_hidden(small_root):
    """#24 item 6: a volume create that fails on a full disk left a directory `volume ls`
    hid and `volume rm` refused; a damaged meta.json did the same; a pull killed while it
    wrote a layer's metadata left images/layers/.DIGEST.json.PID.tmp, which gc kept."""
    root, env = small_root
    mb("volume", "create", "dmgvol", env=env, check=True)
    (root / "volumes/dmgvol/meta.json").write_text("[1, 2")
    ls = mb("volume", "ls", env=env)
    assert ls.returncode == 0 and "dmgvol" in ls.stdout and "DAMAGED" in ls.stdout
    assert "meta.json is damaged" in ls.stderr and "volume rm dmgvol" in ls.stderr
    assert mb("volume", "rm", "dmgvol", env=env).returncode == 0 and not (root / "volumes/dmgvol").exists()
    mb("run", "-d", "--name", "filler", "busybox", "sleep", "1000", env=env, check=True)
    try:
        mb("exec", "filler", "sh", "-c", "dd if=/dev/zero of=/big bs=1M 2>/dev/null; sync", env=env)
        assert os.statvfs(root).f_bavail == 0
        res = mb("volume", "create", "nospace", env=env)
        assert res.returncode != 0 and res.stderr.count("\n") == 1 and "No space left" in res.stderr, res.stderr
        assert not (root / "volumes/nospace").exists()  # taken back, not hidden
    finally:
        mb("rm", "-f", "filler", env=env)
    dead = subprocess.Popen(["true"])
    dead.wait()
    half = root / "images/layers" / f".sha256:{'ab' * 32}.json.{dead.pid}.tmp"
    half.write_text('{"half": ')
    out = mb("gc", "--explain", env=env, check=True)
    assert not half.exists() and str(half) in out.stderr


def test_a_read_only_state_root_is_one_line_and_rm_f_still_kills(small_root, tmp_path):
    """#24 item 5: on a read-only root, taking a lock file gave `internal error: OSError` in
    stop, kill, rm -f, gc and network create. Each now says in one line what is wrong, and
    does what needs no write: kill and rm -f end the container, then say what they could
    not record. (The root is seen read-only through a bind mount, as the shims, which
    write the exits, keep the writable one.)"""
    root, env = small_root
    for n in ("ro1", "ro2"):
        mb("run", "-d", "--name", n, "busybox", "sleep", "1000", env=env, check=True)
    pids = [int(mb("inspect", "-f", "{{.State.Pid}}", n, env=env, check=True).stdout) for n in ("ro1", "ro2")]
    view = tmp_path / "view"
    view.mkdir()
    sh(f"mount --bind {root} {view} && mount -o remount,bind,ro {view}")
    ro = dict(env, MINIBOX_ROOT=str(view))
    try:
        for args in (["kill", "ro1"], ["rm", "-f", "ro2"], ["gc"], ["network", "create", "rox"], ["ps", "-a"],
                     ["run", "--rm", "busybox", "true"]):
            res = mb(*args, env=ro)
            assert "internal error" not in res.stderr and res.stderr.count("\n") <= 2, (args, res.stderr)
            if res.returncode:
                assert "Read-only file system" in res.stderr, (args, res.stderr)
        assert wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids))  # both ended
    finally:
        sh(f"umount {view}")
    assert "rox" not in mb("network", "ls", env=env, check=True).stdout
    mb("rm", "-f", "ro1", "ro2", env=env, check=True)


# --- damaged state ----------------------------------------------------------------------------------------


def test_a_damaged_record_harms_only_its_container():
    ids = {n: mb("run", "-d", "--network", "none", "--name", n, "busybox", "sleep", "1000", check=True).stdout.strip()
           for n in ("good", "badstate", "badconfig")}
    (ROOT / "containers" / ids["badstate"] / "state.json").write_text('{"status": "runn')
    (ROOT / "containers" / ids["badconfig"] / "config.json").write_bytes(b"\xff\xfe garbage \x00")
    listed = mb("ps", "-a")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert "Up " in rows[ids["good"][:12]]
    assert "Dead (cannot read config.json)" in rows[ids["badconfig"][:12]]
    assert ids["badstate"][:12] in rows
    inspected = mb("inspect", "badstate")
    assert inspected.returncode == 125 and "state.json is damaged" in inspected.stderr
    assert str(ROOT) in inspected.stderr  # the file is named
    for ref in ("badstate", ids["badconfig"][:8]):
        res = mb("rm", "-f", ref)
        assert res.returncode == 0, res.stderr
    assert mb("ps", "-aq").stdout.split() == [ids["good"][:12]]
    mb("rm", "-f", "good", check=True)


def test_damage_of_other_kinds_stays_with_its_object():
    """A directory where a state file belongs, a record gone, a network record of garbage
    or wrong types: ps -a, rm -f, logs and every run on other networks go on; the damaged
    object is one line, listed, and removable (#24 item 4: IsADirectoryError, internal
    errors, every run failing)."""
    ids = {n: mb("run", "-d", "--network", "none", "--name", n, "busybox", "sleep", "1000", check=True).stdout.strip()
           for n in ("good", "dirstate", "dirlog", "norecord")}
    for name, file in (("dirstate", "state.json"), ("dirlog", "container.log")):
        path = ROOT / "containers" / ids[name] / file
        path.unlink()
        path.mkdir()
    (ROOT / "containers" / ids["norecord"] / "config.json").unlink()
    listed = mb("ps", "-a")
    assert listed.returncode == 0 and "error" not in listed.stderr, listed.stderr
    assert {ids[n][:12] for n in ids} <= {line.split()[0] for line in listed.stdout.splitlines()[1:]}
    assert "Dead (cannot read config.json)" in listed.stdout
    logs = mb("logs", "dirlog")
    assert logs.returncode != 0 and "container.log is damaged (a directory" in logs.stderr \
        and logs.stderr.count("\n") == 1, logs.stderr
    for ref in ("dirstate", "dirlog", ids["norecord"][:12]):
        res = mb("rm", "-f", ref)
        assert res.returncode == 0 and "error" not in res.stderr, (ref, res.stderr)
    assert mb("ps", "-aq").stdout.split() == [ids["good"][:12]]
    mb("rm", "-f", "good", check=True)
    mb("network", "create", "--subnet", "10.90.0.0/24", "fine", check=True)
    try:
        for garbage in ("", "garbage", "[1,2]", '{"name": 5, "id": [], "bridge": 1, "subnet": 7}'):
            mb("network", "create", "--subnet", "10.91.0.0/24", "dmg", check=True)
            (ROOT / "networks/dmg.json").write_text(garbage)
            for net in ("fine", "minibox"):
                res = mb("run", "--rm", "--network", net, "busybox", "true")
                assert res.returncode == 0 and "error" not in res.stderr, (garbage, net, res.stderr)
            ls = mb("network", "ls")
            assert ls.returncode == 0 and "DAMAGED" in ls.stdout and "fine" in ls.stdout, (garbage, ls)
            assert "dmg.json is damaged" in ls.stderr and "network rm dmg" in ls.stderr
            inspected = mb("network", "inspect", "dmg")
            assert inspected.returncode != 0 and inspected.stderr.count("\n") == 1, inspected.stderr
            assert mb("network", "rm", "dmg").returncode == 0
            assert not (ROOT / "networks/dmg.json").exists()
            assert [x for x in sh("ip -o link show").stdout.split() if x.startswith("mbx-")] == \
                [json.loads(mb("network", "inspect", "fine", check=True).stdout)[0]["Options"]["bridge.name"] + ":"]
    finally:
        mb("network", "rm", "fine")


def test_gc_frees_an_address_only_on_evidence():
    cid = mb("run", "-d", "--name", "holder", "busybox", "sleep", "1000", check=True).stdout.strip()
    ip = json.loads(mb("inspect", "holder", check=True).stdout)[0]["NetworkSettings"]["IPAddress"]
    ipam = ROOT / "ipam/minibox"
    (ipam / ip).write_text("garbage, not an id\n")  # the file's content is damaged...
    (ipam / "10.222.0.200").write_bytes(b"\xff\xfe\x00")  # ...an unreadable leftover nobody claims
    (ipam / "10.222.0.201").write_bytes(b"")  # ...and an empty one (a run that hit a full disk)
    res = mb("gc", check=True)
    assert (ipam / ip).exists()  # the record still names it: the address stays held
    assert not (ipam / "10.222.0.200").exists() and not (ipam / "10.222.0.201").exists()
    assert "removed 2 leftover(s)" in res.stdout
    mb("run", "-d", "--name", "next", "busybox", "sleep", "1000", check=True)
    assert json.loads(mb("inspect", "next", check=True).stdout)[0]["NetworkSettings"]["IPAddress"] != ip
    mb("rm", "-f", "holder", "next", check=True)
    assert not (ipam / ip).exists() and cid


def test_a_default_bridge_left_by_a_killed_first_run_is_taken_back():
    """A run killed while it made the default network leaves minibox0 (with 10.222.0.1) and no
    record; the next run must make the network on that bridge, not move it to 10.222.1.0/24
    (seen when the kill -9 rounds were the first to need the default network)."""
    assert mb("network", "rm", "minibox").returncode in (0, 1)  # gone, or never made yet
    sh("ip link add minibox0 type bridge && ip addr add 10.222.0.1/24 dev minibox0 && ip link set minibox0 up")
    mb("run", "--rm", "busybox", "true", check=True)
    net = json.loads(mb("network", "inspect", "minibox", check=True).stdout)[0]
    assert net["IPAM"]["Config"][0]["Subnet"] == "10.222.0.0/24"
    assert "10.222.1." not in sh("ip -4 addr show minibox0").stdout


def test_the_names_index_is_never_trusted_over_the_records():
    """names/NAME is an index of the records. Emptied, garbled, or names/ deleted whole: a
    second `run --name NAME` is refused, every verb still finds NAME, and gc writes the
    index again (#24: each of these let two containers share a name, or lost the name)."""
    mb("run", "-d", "--name", "held", "busybox", "sleep", "60", check=True)
    cid = mb("inspect", "-f", "{{.Id}}", "held", check=True).stdout.strip()
    try:
        for damage in ("truncate -s 0 {f}", "echo garbage > {f}", "rm -rf {d}"):
            sh(damage.format(f=ROOT / "names/held", d=ROOT / "names"))
            again = mb("run", "-d", "--name", "held", "busybox", "sleep", "60")
            assert again.returncode == 125 and 'name "held" is already in use' in again.stderr, (damage, again)
            assert mb("inspect", "-f", "{{.Id}}", "held", check=True).stdout.strip() == cid
            sh(damage.format(f=ROOT / "names/held", d=ROOT / "names"))
            assert mb("exec", "held", "true").returncode == 0  # found through the records
            sh(damage.format(f=ROOT / "names/held", d=ROOT / "names"))
            out = mb("gc", "--explain", check=True)
            assert (ROOT / "names/held").read_text().strip() == cid, (damage, out.stderr)
        assert mb("ps", "-aq", "--filter", "name=held").stdout.split() == [cid[:12]]
    finally:
        mb("rm", "-f", "held")


def test_ps_memo_is_never_trusted_over_the_records():
    """`ps` keeps what it read of each record in ps-memo.json, by the record's inode, mtime
    and size: a record that changed is read again, an entry that does not match its record
    is not used, a damaged memo is ignored and written anew, and a PID 1 that died or a
    frozen group is seen as without the memo."""
    memo = ROOT / "ps-memo.json"
    mb("run", "-d", "--name", "memo-a", "busybox", "sleep", "600", check=True)
    mb("run", "-d", "--name", "memo-b", "busybox", "sleep", "600", check=True)
    b = mb("inspect", "-f", "{{.Id}}", "memo-b", check=True).stdout.strip()
    try:
        assert "memo-a" in mb("ps", check=True).stdout
        entries = lambda: listing.decode(memo.read_bytes())  # noqa: E731
        assert b in entries()
        mb("rename", "memo-a", "memo-c", check=True)  # its config.json is written again
        names = mb("ps", "--format", "{{.Names}}", check=True).stdout.split()
        assert "memo-c" in names and "memo-a" not in names
        head, body = memo.read_bytes().split(b"\n", 1)
        data = listing.decode(head + b"\n" + body)
        key, view, *rest = data[b]
        renamed = (view[0], "forged", *view[2:])
        # another name, its checksum not made again: a memo edited by hand
        forged = head + b"\n" + listing.encode({**data, b: (key, renamed, *rest)}).split(b"\n", 1)[1]
        # a valid checksum, for another mtime than the record's
        resealed = listing.encode({**data, b: ((key[0], key[1] + 1, key[2]), renamed, *rest)})
        assert listing.decode(resealed)[b][1][1] == "forged" and listing.decode(forged) == {}
        for junk in (forged, resealed, b"", b"garbage", b"[1, 2]", head, head + b"\n" + body[:-9]):
            memo.write_bytes(junk)
            res = mb("ps")
            assert res.returncode == 0 and "memo-b" in res.stdout and "forged" not in res.stdout and not res.stderr, \
                (junk[:80], res)
        assert entries()[b][1][1] == "memo-b"  # written anew
        # A record written in the clock tick a ps read it can be written again with the same
        # mtime and size: here in place, its mtime set back each time (as a file from the future).
        record = ROOT / "containers" / b / "config.json"
        future = time.time_ns() + 3600 * 10**9
        os.utime(record, ns=(future, future))
        assert "memo-b" in mb("ps", check=True).stdout.split() and entries()[b][0] is None  # its stat not kept
        record.write_text(record.read_text().replace('"memo-b"', '"memo-x"'))
        os.utime(record, ns=(future, future))
        assert "memo-x" in mb("ps", check=True).stdout.split()
        record.write_text(record.read_text().replace('"memo-x"', '"memo-b"'))
        os.utime(record)
        mb("pause", "memo-b", check=True)  # the freezer changes, state.json does not
        assert "(Paused)" in mb("ps", "--filter", "name=memo-b", check=True).stdout
        mb("unpause", "memo-b", check=True)
        assert "(Paused)" not in mb("ps", "--filter", "name=memo-b", check=True).stdout
        pid = json.loads((ROOT / "containers" / b / "state.json").read_text())["pid"]
        os.kill(pid, 9)  # the memo still says running: ps asks the kernel
        assert wait_for(lambda: "memo-b" not in mb("ps").stdout)
        assert "Exited (137)" in mb("ps", "-a", "--filter", "name=memo-b", check=True).stdout
        dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True).stdout.strip()
        killed, writing = ROOT / f".ps-memo.json.{dead}.tmp", ROOT / f".ps-memo.json.{os.getpid()}.tmp"
        killed.write_text("{"), writing.write_text("{")  # a ps killed mid-write, and one still writing
        # the same for any state file written whole: a container's, a network's
        others = [ROOT / "containers" / b / f".state.json.{dead}.tmp", ROOT / "networks" / f".net.json.{dead}.tmp",
                  ROOT / "libexec" / f".minibox-shim-1-2.{dead}.tmp"]
        for half in others:
            half.write_text("{")
        out = mb("gc", "--explain", check=True)
        assert not killed.exists() and writing.exists() and str(killed) in out.stdout + out.stderr
        assert not any(half.exists() for half in others) and all(str(h) in out.stdout + out.stderr for h in others)
        assert "memo-c" in mb("ps", check=True).stdout  # what the records say is left alone
    finally:
        mb("rm", "-f", "memo-b", "memo-c")
        (ROOT / f".ps-memo.json.{os.getpid()}.tmp").unlink(missing_ok=True)


def test_a_deleted_address_index_never_hands_out_a_running_containers_address():
    """ipam/NET is an index of the records: with the network's directory deleted, the next
    run must not get the running container's address (#24: it did); gc writes the files
    the records need again."""
    mb("run", "-d", "--name", "addr1", "busybox", "sleep", "60", check=True)
    try:
        ip = mb("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "addr1", check=True).stdout.strip()
        sh(f"rm -rf {ROOT}/ipam/minibox")
        mb("run", "-d", "--name", "addr2", "busybox", "sleep", "60", check=True)
        assert mb("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "addr2", check=True).stdout.strip() != ip
        (ROOT / "ipam/minibox" / ip).unlink()
        out = mb("gc", "--explain", check=True)
        assert (ROOT / "ipam/minibox" / ip).read_text().split()[0].startswith(
            mb("inspect", "-f", "{{.Id}}", "addr1", check=True).stdout.strip()), out.stderr
    finally:
        mb("rm", "-f", "addr1", "addr2")


# --- races -------------------------------------------------------------------------------------------------


def test_parallel_network_rm_exactly_one_wins():
    mb("network", "create", "racy", check=True)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: mb("network", "rm", "racy"), range(3)))
    assert sorted(r.returncode for r in results) == [0, 1, 1]
    for r in results:
        if r.returncode:
            assert r.stderr.count("\n") == 1 and 'no such network: "racy"' in r.stderr


def test_exec_racing_rm_gets_one_clean_line():
    for i in range(4):
        mb("run", "-d", "--network", "none", "--name", f"race{i}", "busybox", "sleep", "1000", check=True)
        ex = faults.start(["exec", f"race{i}", "sh", "-c", "sleep 3"])
        time.sleep(0.05 * i)  # race at different moments of the exec's start (fault timing, not a wait)
        mb("rm", "-f", f"race{i}", check=True)
        ex.wait(timeout=20)
        err = ex.stderr.read().decode()
        assert "Errno" not in err and "Traceback" not in err, err
        assert err.count("\n") <= 1


# --- the sandbox itself -------------------------------------------------------------------------------


def test_sandbox_cleans_up_after_sigterm(tmp_path):
    # Its state root goes under TMPDIR and its cgroups are named here, so that what it leaves
    # is told apart from what another sandbox running beside this one (a second test run) has.
    parent = f"minibox-sandbox-sigterm-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if k not in ("MINIBOX_SANDBOX", "MINIBOX_ROOT")}
    env.update(MINIBOX_CGROUP_PARENT=parent, TMPDIR=str(tmp_path))
    res = subprocess.run(["timeout", "-s", "TERM", "3", sys.executable, str(PROJECT / "scripts/sandbox"),
                          sys.executable, "-m", "minibox", "run", "--network", "none", "busybox", "sleep", "30"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 124 and "Traceback" not in res.stderr, res.stderr
    assert [d for d in os.listdir(tmp_path) if d.startswith("minibox-sandbox")] == []
    assert [c for c in os.listdir("/sys/fs/cgroup") if os.path.exists(f"/sys/fs/cgroup/{c}/{parent}")] == []
