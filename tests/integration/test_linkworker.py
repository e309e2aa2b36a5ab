"""The helper that imports pyroute2 beside a start: it plugs a veth in, reports a failure
as the start's error, and never outlives the command that forked it."""

import os
import subprocess
import time

import pytest
from conftest import mb, processes, sh

from minibox.net import linkworker
from minibox.plan.network import plan_endpoint


@pytest.fixture
def netns():
    holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
    sh("ip link add lwtest0 type bridge && ip addr add 10.199.7.1/24 dev lwtest0 && ip link set lwtest0 up")
    try:
        while not os.path.exists(f"/proc/{holder.pid}/ns/net") or \
                os.readlink(f"/proc/{holder.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            time.sleep(0.01)  # unshare has not switched yet
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()
        sh("ip link del lwtest0; ip link del lwtestv0", check=False)


def test_the_helper_plugs_the_veth_in_reports_failures_and_removes_it(netns):
    steps = plan_endpoint("lwtestv0", "lwtest0", "02:42:0a:c7:07:02", "10.199.7.2", 24, "10.199.7.1", str(netns))
    worker = linkworker.Worker()
    helper = worker.pid
    worker.add_endpoint(steps, netns)
    assert "10.199.7.2/24" in sh(f"nsenter -t {netns} -n ip -o addr show eth0").stdout
    assert "master lwtest0" in sh("ip -o link show lwtestv0").stdout
    assert not os.path.exists(f"/proc/{helper}"), "the helper is reaped once it has answered"

    again = linkworker.Worker()
    with pytest.raises(linkworker.LinkError, match="exists"):
        again.add_endpoint(steps, netns)  # the same veth name twice: the kernel's EEXIST comes back
    assert again.pid == 0

    steps_done, errors = linkworker.Worker().remove_link("lwtestv0", "test")
    assert [type(s).__name__ for s in steps_done] == ["LinkDel"] and errors == []
    assert sh("ip link show lwtestv0", check=False).returncode != 0


def test_a_start_that_fails_leaves_no_helper_behind():
    before = processes()
    assert mb("run", "--no-such-flag", "busybox").returncode == 125  # refused by typer, after the fork
    assert mb("run", "--rm", "no-such-image-lw").returncode == 125  # failed in the start itself
    assert processes() == before


def test_an_unused_helper_is_killed_and_reaped_by_its_command():
    linkworker.prefetch(["run", "busybox"])
    helper = linkworker._early.pid
    assert os.path.exists(f"/proc/{helper}")
    linkworker.discard()  # what exit_now does
    assert not os.path.exists(f"/proc/{helper}"), "killed and reaped, not left a zombie"
    assert linkworker.take("bridge") is None
