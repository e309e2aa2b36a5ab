"""Data in and out of containers: bind mounts, named and anonymous volumes, tmpfs, --read-only, users, cp, and the scripting formats."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import time

import pytest
from conftest import ROOT, busybox_rootfs, inspect, mb, sh, wait_for

RUN = ("run", "--rm", "--network", "none")


def run_d(*args: str) -> str:
    return mb("run", "-d", "--network", "none", *args, check=True).stdout.strip()


# --- bind mounts ---------------------------------------------------------------------------------------


def test_bind_mount_shows_host_edits_inside_and_ro_refuses_writes(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("one\n")
    run_d("--name", "bind", "-v", f"{site}:/www:ro", "busybox", "sleep", "1000")
    try:
        assert mb("exec", "bind", "cat", "/www/index.html", check=True).stdout == "one\n"
        (site / "index.html").write_text("two\n")  # an edit on the host ...
        assert mb("exec", "bind", "cat", "/www/index.html", check=True).stdout == "two\n"  # ... is seen inside
        res = mb("exec", "bind", "touch", "/www/new")
        assert res.returncode != 0 and "Read-only file system" in res.stderr
        assert not (site / "new").exists()
        mounts = inspect("bind")["Mounts"]
        assert mounts == [{"Type": "bind", "Source": str(site), "Destination": "/www", "Mode": "ro", "RW": False,
                           "Propagation": "rprivate"}]
    finally:
        mb("rm", "-f", "bind", check=True)


def test_a_bind_mount_is_writable_without_ro_and_v_makes_a_missing_host_dir(tmp_path):
    made = tmp_path / "made/by/v"
    out = mb(*RUN, "-v", f"{made}:/out", "busybox", "sh", "-c", "echo written > /out/f && echo ok", check=True)
    assert out.stdout == "ok\n" and (made / "f").read_text() == "written\n"


def test_a_bind_mounted_file(tmp_path):
    conf = tmp_path / "app.conf"
    conf.write_text("setting=1\n")
    assert mb(*RUN, "-v", f"{conf}:/etc/app.conf:ro", "busybox", "cat", "/etc/app.conf",
              check=True).stdout == "setting=1\n"


def test_mount_flag_forms_and_a_missing_bind_source_is_an_error(tmp_path):
    d = tmp_path / "src"
    d.mkdir()
    (d / "x").write_text("x\n")
    out = mb(*RUN, "--mount", f"type=bind,source={d},target=/m,readonly", "busybox", "sh", "-c",
             "cat /m/x; touch /m/y 2>&1 | grep -c Read-only", check=True).stdout
    assert out == "x\n1\n"
    res = mb(*RUN, "--mount", f"type=bind,source={tmp_path}/absent,target=/m", "busybox", "true")
    assert res.returncode == 125 and res.stderr == (
        f'minibox: invalid mount config for type "bind": bind source path does not exist: {tmp_path}/absent\n')
    assert not (tmp_path / "absent").exists()


# --- volumes -----------------------------------------------------------------------------------------------


def test_a_named_volume_outlives_its_containers_and_cannot_go_while_used():
    try:
        mb(*RUN, "-v", "keep:/data", "busybox", "sh", "-c", "echo kept > /data/f", check=True)
        assert "keep" in mb("volume", "ls", "-q", check=True).stdout.split()
        assert mb(*RUN, "-v", "keep:/data:ro", "busybox", "cat", "/data/f", check=True).stdout == "kept\n"
        run_d("--name", "holder", "-v", "keep:/data", "busybox", "sleep", "1000")
        mb("stop", "-t", "0", "holder", check=True)
        res = mb("volume", "rm", "keep")  # a stopped container still names it, as Docker counts it
        assert res.returncode == 1 and "in use by container(s) holder" in res.stderr
        doc = json.loads(mb("volume", "inspect", "keep", check=True).stdout)[0]
        assert doc["Mountpoint"] == str(ROOT / "volumes/keep/_data") and doc["Driver"] == "local"
        m = inspect("holder")["Mounts"][0]
        assert (m["Type"], m["Name"], m["Destination"], m["RW"]) == ("volume", "keep", "/data", True)
    finally:
        mb("rm", "-f", "holder")
        mb("volume", "rm", "keep")
    assert "keep" not in mb("volume", "ls", "-q").stdout.split()


def test_a_new_volume_gets_the_images_content_and_an_old_one_keeps_its_own():
    try:
        out = mb(*RUN, "-v", "etcvol:/etc", "busybox", "sh", "-c", "cat /etc/passwd | head -1; echo mine > /etc/own",
                 check=True).stdout
        assert out.startswith("root:x:0:0")
        assert (ROOT / "volumes/etcvol/_data/passwd").exists()  # copied up from the image
        out = mb(*RUN, "-v", "etcvol:/etc", "busybox", "cat", "/etc/own", check=True).stdout
        assert out == "mine\n"
        # nocopy: a new volume stays empty
        assert mb(*RUN, "-v", "bare:/etc:nocopy", "busybox", "ls", "/etc", check=True).stdout == ""
    finally:
        mb("volume", "rm", "etcvol", "bare")


def test_anonymous_volumes_go_with_rm_and_rm_v():
    before = set(mb("volume", "ls", "-q", check=True).stdout.split())
    mb(*RUN, "-v", "/scratch", "busybox", "sh", "-c", "echo x > /scratch/x", check=True)
    assert set(mb("volume", "ls", "-q").stdout.split()) == before  # --rm took it
    run_d("--name", "anon", "-v", "/scratch", "busybox", "true")
    assert wait_for(lambda: inspect("anon")["State"]["Status"] == "exited")
    made = set(mb("volume", "ls", "-q").stdout.split()) - before
    assert len(made) == 1 and len(made.pop()) == 64
    mb("rm", "-v", "anon", check=True)
    assert set(mb("volume", "ls", "-q").stdout.split()) == before


def test_volume_create_ls_prune():
    assert mb("volume", "create", "made", check=True).stdout == "made\n"
    res = mb("volume", "create", "made")
    assert res.returncode == 1 and 'volume "made" already exists' in res.stderr
    assert "local    made" in mb("volume", "ls", check=True).stdout
    assert "made" not in mb("volume", "prune", "-f", check=True).stdout  # named: kept without -a
    assert "made" in mb("volume", "prune", "-a", "-f", check=True).stdout
    assert "made" not in mb("volume", "ls", "-q").stdout.split()


def test_read_only_root_with_tmpfs_and_volumes_writable():
    out = mb(*RUN, "--read-only", "--tmpfs", "/run:size=1m", "--tmpfs", "/tmp", "-v", "rw:/data", "busybox", "sh",
             "-c", "touch /etc/x 2>&1; touch /run/ok /tmp/ok /data/ok && echo writable; df -k /run | tail -1",
             check=True).stdout.splitlines()
    try:
        assert "Read-only file system" in out[0] and out[1] == "writable"
        assert out[2].split()[1] == "1024"  # size=1m
        assert inspect_readonly()
    finally:
        mb("volume", "rm", "rw")


def inspect_readonly() -> bool:
    run_d("--name", "ro", "--read-only", "busybox", "sleep", "1000")
    try:
        return inspect("ro")["HostConfig"]["ReadonlyRootfs"] is True
    finally:
        mb("rm", "-f", "ro", check=True)


def test_a_volume_target_is_resolved_inside_the_root(tmp_path):
    """An image whose /data is a symlink to a host path: the volume lands in the container's own copy."""
    rootfs = tmp_path / "rootfs"
    sh(f"cp -a {busybox_rootfs()} {rootfs}")
    host_dir = tmp_path / "host-target"
    host_dir.mkdir()
    os.symlink(str(host_dir), rootfs / "data")
    mb("image", "import", str(rootfs), "symdata", check=True)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("volume\n")
    try:
        assert mb(*RUN, "-v", f"{src}:/data", "symdata", "cat", "/data/f", check=True).stdout == "volume\n"
        assert list(host_dir.iterdir()) == []  # nothing was mounted on the host's directory
        assert mb(*RUN, "-v", "symvol:/data", "symdata", "ls", "/data", check=True).stdout == ""
    finally:
        mb("volume", "rm", "symvol")
        mb("image", "rm", "symdata", check=True)


# --- users ---------------------------------------------------------------------------------------------------


def test_user_by_number_and_name_with_groups():
    assert mb(*RUN, "-u", "65534", "busybox", "id", check=True).stdout == "uid=65534(nobody) gid=65534(nogroup)\n"
    assert mb(*RUN, "-u", "1234:5678", "busybox", "id", check=True).stdout == "uid=1234 gid=5678\n"
    out = mb(*RUN, "-u", "nobody", "--group-add", "tty", "--group-add", "4242", "busybox", "id",
             check=True).stdout
    assert out == "uid=65534(nobody) gid=65534(nogroup) groups=5(tty),4242\n"
    # root gets the groups the image gives it, not the caller's
    assert mb(*RUN, "busybox", "id", check=True).stdout == "uid=0(root) gid=0(root)\n"


def test_a_non_root_user_has_no_effective_capabilities():
    caps = mb(*RUN, "-u", "65534", "busybox", "grep", "^Cap", "/proc/self/status", check=True).stdout
    fields = dict(line.split(":\t") for line in caps.splitlines())
    assert fields["CapEff"] == fields["CapPrm"] == "0000000000000000"
    assert fields["CapBnd"] != "0000000000000000"  # the bounding set is Docker's, as for root
    root = mb(*RUN, "busybox", "grep", "^CapEff", "/proc/self/status", check=True).stdout
    assert root.split()[1] != "0000000000000000"  # positive control: root keeps Docker's set
    res = mb(*RUN, "-u", "65534", "busybox", "chown", "0", "/tmp")
    assert res.returncode != 0 and "Operation not permitted" in res.stderr


def test_unknown_user_gets_dockers_message_and_nothing_is_made():
    res = mb(*RUN, "-u", "nosuch", "busybox", "id")
    assert res.returncode == 125
    assert res.stderr == "minibox: unable to find user nosuch: no matching entries in passwd file\n"
    res = mb(*RUN, "-u", "nobody:nosuchgroup", "busybox", "id")
    assert res.returncode == 125 and "unable to find group nosuchgroup" in res.stderr
    assert mb("ps", "-aq").stdout == ""


def test_exec_runs_as_the_containers_user_or_u():
    run_d("--name", "usr", "-u", "65534", "busybox", "sleep", "1000")
    try:
        assert mb("exec", "usr", "id", "-u", check=True).stdout == "65534\n"
        assert mb("exec", "-u", "0", "usr", "id", "-u", check=True).stdout == "0\n"
        assert mb("exec", "-u", "root:tty", "usr", "id", check=True).stdout == "uid=0(root) gid=5(tty)\n"
        res = mb("exec", "-u", "ghost", "usr", "id")
        assert res.returncode == 125 and "unable to find user ghost" in res.stderr
    finally:
        mb("rm", "-f", "usr", check=True)


# --- cp ------------------------------------------------------------------------------------------------------


def test_cp_both_ways_running_and_stopped(tmp_path):
    run_d("--name", "cpc", "busybox", "sh", "-c", "mkdir -p /srv/d && echo inside > /srv/d/f && sleep 1000")
    try:
        assert wait_for(lambda: mb("exec", "cpc", "test", "-f", "/srv/d/f").returncode == 0)
        mb("cp", "cpc:/srv/d", str(tmp_path / "out"), check=True)  # a missing DEST: the directory, renamed
        assert (tmp_path / "out/f").read_text() == "inside\n"
        mb("cp", "cpc:/srv/d", str(tmp_path), check=True)  # an existing DEST directory: into it
        assert (tmp_path / "d/f").read_text() == "inside\n"
        assert os.stat(tmp_path / "d/f").st_uid == os.getuid()
        src = tmp_path / "in"
        src.mkdir()
        (src / "g").write_text("from host\n")
        os.chown(src / "g", 4321, 4321)
        mb("cp", str(src), "cpc:/srv", check=True)
        assert mb("exec", "cpc", "stat", "-c", "%u %n", "/srv/in/g", check=True).stdout == "0 /srv/in/g\n"
        mb("cp", str(src / "g"), "cpc:/srv/renamed", check=True)
        assert mb("exec", "cpc", "cat", "/srv/renamed", check=True).stdout == "from host\n"
        mb("stop", "-t", "0", "cpc", check=True)
        # stopped: its filesystem is still there to copy from and to
        mb("cp", "cpc:/srv/in/g", str(tmp_path / "g2"), check=True)
        assert (tmp_path / "g2").read_text() == "from host\n"
        mb("cp", str(src / "g"), "cpc:/srv/while-stopped", check=True)
        mb("cp", "cpc:/srv/while-stopped", str(tmp_path / "g3"), check=True)
        assert (tmp_path / "g3").read_text() == "from host\n"
    finally:
        mb("rm", "-f", "cpc", check=True)


def test_cp_tar_streams_both_ways(tmp_path):
    run_d("--name", "cpt", "busybox", "sleep", "1000")
    try:
        out = subprocess.run([os.sys.executable, "-m", "minibox", "cp", "cpt:/etc", "-"], capture_output=True)
        assert out.returncode == 0, out.stderr
        names = tarfile.open(fileobj=io.BytesIO(out.stdout)).getnames()
        assert "etc/passwd" in names and "etc" in names
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            info = tarfile.TarInfo("streamed/file")
            info.size = 6
            t.addfile(info, io.BytesIO(b"tarred"))
        res = subprocess.run([os.sys.executable, "-m", "minibox", "cp", "-", "cpt:/tmp"], input=buf.getvalue(),
                             capture_output=True)
        assert res.returncode == 0, res.stderr
        assert mb("exec", "cpt", "cat", "/tmp/streamed/file", check=True).stdout == "tarred"
    finally:
        mb("rm", "-f", "cpt", check=True)


def test_cp_resolves_container_symlinks_inside_its_root(tmp_path):
    """A link in the container to /: copying `link/...` reads the container's file, never the host's."""
    run_d("--name", "cps", "busybox", "sh", "-c", f"ln -s / /hostroot; mkdir -p {tmp_path}; echo ctr > "
                                                   f"{tmp_path}/which; sleep 1000")
    (tmp_path / "which").write_text("host\n")
    try:
        assert wait_for(lambda: mb("exec", "cps", "test", "-f", f"{tmp_path}/which").returncode == 0)
        mb("cp", f"cps:/hostroot{tmp_path}/which", str(tmp_path / "got"), check=True)
        assert (tmp_path / "got").read_text() == "ctr\n"
        # and writing through a container's symlink lands in the container
        victim = tmp_path / "victim"
        victim.mkdir()
        mb("exec", "cps", "ln", "-s", str(victim), "/out", check=True)
        (tmp_path / "payload").write_text("x\n")
        res = mb("cp", str(tmp_path / "payload"), "cps:/out/")  # the link leads nowhere in the container
        assert res.returncode == 1 and "no such directory in the container: /out/" in res.stderr
        mb("exec", "cps", "mkdir", "-p", str(victim), check=True)  # now it leads to the container's own copy
        mb("cp", str(tmp_path / "payload"), "cps:/out/", check=True)
        assert mb("exec", "cps", "cat", f"{victim}/payload", check=True).stdout == "x\n"
        assert list(victim.iterdir()) == []
    finally:
        mb("rm", "-f", "cps", check=True)


def test_cp_bad_input(tmp_path):
    run_d("--name", "cpb", "busybox", "sleep", "1000")
    try:
        for args, message in [(("cpb:/nope", str(tmp_path)), "no such file in the container: /nope"),
                              ((str(tmp_path / "nope"), "cpb:/tmp"), "no such file on the host"),
                              (("a", "b"), "cp copies between a container and the host"),
                              (("ghost:/x", "."), 'no such container: "ghost"')]:
            res = mb("cp", *args)
            assert res.returncode != 0 and message in res.stderr and res.stderr.count("\n") == 1, (args, res.stderr)
    finally:
        mb("rm", "-f", "cpb", check=True)


# --- formats, filters, logs -------------------------------------------------------------------------------------


def test_inspect_format_and_ps_format_and_filters():
    run_d("--name", "fa", "--label", "tier=web", "busybox", "sleep", "1000")
    run_d("--name", "fb", "busybox", "true")
    try:
        assert wait_for(lambda: inspect("fb")["State"]["Status"] == "exited")
        assert mb("inspect", "-f", "{{.State.Status}} {{.Name}}", "fa", check=True).stdout == "running /fa\n"
        assert mb("inspect", "-f", "{{json .Config.Cmd}}", "fa", check=True).stdout == '["sleep","1000"]\n'
        assert mb("inspect", "-f", '{{index .Config.Labels "tier"}}|{{join .Args ","}}', "fa",
                  check=True).stdout == "web|1000\n"
        assert mb("inspect", "-f", "{{range .Config.Env}}{{.}};{{end}}", "fa", check=True).stdout.startswith("PATH=")
        assert mb("ps", "--format", "{{.Names}} {{.State}}", check=True).stdout == "fa running\n"
        lines = mb("ps", "-a", "--format", "{{json .}}", check=True).stdout.splitlines()
        assert {json.loads(line)["Names"] for line in lines} == {"fa", "fb"}
        assert mb("ps", "-a", "--filter", "status=exited", "--format", "{{.Names}}").stdout == "fb\n"
        assert mb("ps", "-a", "--filter", "label=tier=web", "-q").stdout.strip() == inspect("fa")["Id"][:12]
        assert mb("ps", "-a", "--filter", "name=f", "--filter", "ancestor=busybox", "--format",
                  "{{.Names}}").stdout.split() == ["fb", "fa"]
        table = mb("ps", "--format", "table {{.Names}}\\t{{.Status}}", check=True).stdout.splitlines()
        assert table[0].split() == ["NAMES", "STATUS"] and table[1].startswith("fa ")
    finally:
        mb("rm", "-f", "fa", "fb", check=True)


@pytest.mark.parametrize("fmt", ["{{.State.Pid", "{{end}}", "{{nosuchfunc .Id}}", "{{range .Mounts}}x"])
def test_a_malformed_format_is_one_line_and_125(fmt):
    res = mb("inspect", "-f", fmt, "busybox")
    assert res.returncode == 125 and res.stderr.count("\n") == 1 and "invalid --format" in res.stderr, res.stderr


def test_logs_tail_since_and_timestamps():
    run_d("--name", "lg", "busybox", "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; sleep 1000")
    try:
        assert wait_for(lambda: mb("logs", "lg").stdout.count("\n") == 5)
        assert mb("logs", "--tail", "2", "lg", check=True).stdout == "line4\nline5\n"
        assert mb("logs", "-n", "0", "lg", check=True).stdout == ""
        stamped = mb("logs", "-t", "--tail", "1", "lg", check=True).stdout
        ts, text = stamped.split(" ", 1)
        assert text == "line5\n" and ts.endswith("Z") and ts[:4].isdigit() and "T" in ts
        assert mb("logs", "--since", "1m", "lg", check=True).stdout.count("\n") == 5
        assert mb("logs", "--since", str(time.time() + 60), "lg", check=True).stdout == ""
        res = mb("logs", "--since", "yesterday-ish", "lg")
        assert res.returncode == 125 and 'invalid --since "yesterday-ish"' in res.stderr
    finally:
        mb("rm", "-f", "lg", check=True)


def test_readme_data_section_runs_as_written(tmp_path):
    from test_isolation import readme_blocks
    from test_walkthrough import matches

    steps = readme_blocks("## Images, volumes and your data")
    assert len(steps) >= 10
    try:
        for cmd, expected in steps:
            cmd = cmd.replace("/tmp/site", str(tmp_path / "site"))  # the README's path, kept off the host
            res = subprocess.run(["sh", "-c", cmd + " 2>&1"], capture_output=True, text=True, timeout=60)
            assert matches(expected, res.stdout), f"`{cmd}` printed:\n{res.stdout}\nexpected:\n" + "\n".join(expected)
    finally:
        mb("rm", "-f", "box")
        mb("volume", "rm", "notes")


# --- bad input -------------------------------------------------------------------------------------------------


BAD = [
    (["-v", "rel/path:/x"], 'includes invalid characters for a local volume name'),
    (["-v", "/tmp:/"], 'a mount cannot cover the container\'s root'),
    (["-v", "/tmp:/proc"], "/proc is the kernel's"),
    (["-v", "/tmp:/dev/shm"], "/dev is the kernel's"),
    (["--mount", "type=nfs,target=/x"], 'type "nfs" is not bind, volume or tmpfs'),
    (["--tmpfs", "/x:size=lots"], 'invalid tmpfs option "size=lots"'),
    (["-v", "/tmp:relative"], "give an absolute path inside the container"),
    (["-u", "bad user"], 'invalid --user "bad user"'),
    (["--env-file", "/nonexistent/env"], 'cannot read --env-file "/nonexistent/env"'),
    (["--pull", "sometimes"], 'invalid --pull "sometimes"'),
]


@pytest.mark.parametrize("flags, message", BAD)
def test_bad_mounts_and_users_get_one_line_and_125(flags, message):
    res = mb(*RUN, *flags, "busybox", "true")
    assert res.returncode == 125 and message in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert mb("ps", "-aq").stdout == "" and mb("volume", "ls", "-q").stdout == ""


def test_an_images_volume_gets_an_anonymous_volume_as_dockers():
    """VOLUME /data in the image: each container gets a fresh anonymous volume there (with
    the image's content at that path), `rm -v` removes it, and a -v for that path replaces it."""
    mb("image", "import", "-c", "VOLUME /data", "-c", 'VOLUME ["/cache"]', str(busybox_rootfs()), "withvol",
       check=True)
    try:
        assert inspect("withvol")["Config"]["Volumes"] == {"/cache": {}, "/data": {}}
        mb("run", "--name", "vol1", "withvol", "sh", "-c", "echo kept > /data/f", check=True)
        mounts = {m["Destination"]: m for m in inspect("vol1")["Mounts"]}
        assert set(mounts) == {"/cache", "/data"} and mounts["/data"]["Type"] == "volume"
        name = mounts["/data"]["Name"]
        assert len(name) == 64 and name in mb("volume", "ls", "-q", check=True).stdout.split()
        mb("run", "--rm", "-v", "named:/data", "withvol", "true", check=True)
        assert "named" in mb("volume", "ls", "-q", check=True).stdout.split()
        mb("rm", "-v", "vol1", check=True)
        assert name not in mb("volume", "ls", "-q", check=True).stdout.split()  # rm -v took it
        bad = mb("image", "import", "-c", "VOLUME data", str(busybox_rootfs()), "badvol")
        assert bad.returncode == 125 and "is not an absolute path" in bad.stderr
    finally:
        mb("rm", "-f", "vol1")
        mb("volume", "rm", "named")
        mb("rmi", "withvol")
