"""Docker's wait and rename, on minibox's state machine."""

from conftest import mb


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
