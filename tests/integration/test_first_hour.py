"""What a Docker user meets in the first hour: Docker-only flags named as such, ports of exited containers."""

import pytest
from conftest import mb, wait_for


@pytest.mark.parametrize("flag, what", [
    (["--device-read-bps", "/dev/sda:1mb"], "--device-read-bps is Docker's flag to throttle a device's reads; "
                                            "minibox does not support it"),
    (["--gpus", "all"], "--gpus is Docker's flag to pass GPUs; minibox does not support it"),
    (["--pid", "host"], "--pid is Docker's flag to share a PID namespace; minibox does not support it"),
])
def test_a_docker_only_flag_is_named_as_docker_s_not_guessed_at(flag, what):
    res = mb("run", *flag, "--network", "none", "busybox", "true")
    assert res.returncode == 125 and res.stderr == f"minibox: {what} (see `minibox run --help`)\n"
    assert mb("ps", "-aq").stdout == ""  # nothing made


def test_an_unknown_flag_still_gets_click_s_suggestion():
    res = mb("run", "--bogus", "busybox", "true")
    assert res.returncode == 125 and "No such option '--bogus'" in res.stderr


def test_ports_are_shown_only_while_the_container_runs():
    mb("run", "-d", "--name", "pe", "-p", "8096:80", "busybox", "httpd", "-f", "-p", "80", check=True)
    try:
        assert mb("port", "pe", check=True).stdout == "80/tcp -> 0.0.0.0:8096\n"
        assert mb("ps", "--format", "{{.Ports}}", check=True).stdout == "0.0.0.0:8096->80/tcp\n"
        mb("stop", "-t", "1", "pe", check=True)
        assert wait_for(lambda: mb("ps", "-a", "--format", "{{.State}}").stdout.strip() == "exited")
        assert mb("port", "pe", check=True).stdout == ""  # released, as Docker shows it
        assert mb("ps", "-a", "--format", "{{.Ports}}|{{.Names}}", check=True).stdout == "|pe\n"
        assert "8096" not in mb("ps", "-a", check=True).stdout
    finally:
        mb("rm", "-f", "pe")


def test_network_show_keeps_to_what_a_packet_of_ours_can_cross():
    from conftest import sh

    sh("ip link add xtra0 type veth peer name xtra1")  # another engine's veth pair, say
    try:
        mb("run", "-d", "--name", "shown", "busybox", "sleep", "1000", check=True)
        text = mb("network", "show", check=True).stdout
        assert "xtra0" not in text and "other interfaces not shown: `--all` lists them" in text
        assert "  lo " in text and "minibox0" in text
        everything = mb("network", "show", "--all", check=True).stdout
        assert "xtra0" in everything and "xtra1" in everything and "not shown" not in everything
        import json

        mac = json.loads(mb("network", "inspect", "minibox", check=True).stdout)[0]["Options"]["bridge.mac"]
        assert f"mac      {mac}" in text  # the bridge's MAC whole, on a line of its own
    finally:
        mb("rm", "-f", "shown")
        sh("ip link del xtra0", check=False)


def test_exit_codes_are_docker_s():
    """1 when a verb fails on an object (missing, running, taken); 125 when run fails or a
    command is refused; the message is one line naming the object either way."""
    mb("run", "-d", "--name", "busy", "--network", "none", "busybox", "sleep", "1000", check=True)
    try:
        cases = [
            (("rm", "busy"), 1, "container busy is running: stop it first, or use `minibox rm -f busy`"),
            (("exec", "ghost", "true"), 1, 'no such container: "ghost"'),
            (("inspect", "ghost"), 1, 'no such object: "ghost"'),
            (("rm", "ghost"), 1, 'no such container: "ghost"'),
            (("run", "--name", "busy", "--network", "none", "busybox", "true"), 125,
             'container name "busy" is already in use'),
            (("run", "--pull", "never", "--network", "none", "ghost-image"), 125, 'no such image'),
            (("ps", "--format", "{{.Nope"), 125, "invalid --format"),
        ]
        for args, code, message in cases:
            res = mb(*args)
            assert (res.returncode, res.stderr.count("\n")) == (code, 1) and message in res.stderr, (args, res.stderr)
        assert mb("ps", "-q", check=True).stdout.count("\n") == 1  # the refusals changed nothing
    finally:
        mb("rm", "-f", "busy")
