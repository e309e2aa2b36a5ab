"""A container's endpoint through net.rtnetlink's own messages: the steps --explain prints
are what the kernel holds afterwards, read back with iproute2, and a refusal is one line
naming the step's command and the kernel's reason."""

import os
import subprocess
import time

import pytest
from conftest import mb, processes, sh

from minibox.errors import MiniboxError
from minibox.net import links
from minibox.plan.network import plan_endpoint


@pytest.fixture
def netns():
    holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
    sh("ip link add rttest0 type bridge && ip addr add 10.199.7.1/24 dev rttest0 && "
       "ip addr add fd00:199:7::1/64 dev rttest0 nodad && ip link set rttest0 up")
    try:
        while not os.path.exists(f"/proc/{holder.pid}/ns/net") or \
                os.readlink(f"/proc/{holder.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            time.sleep(0.01)  # unshare has not switched yet
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()
        sh("ip link del rttest0; ip link del rttestv0", check=False)


def test_the_endpoint_steps_are_what_the_kernel_holds_after(netns):
    steps = plan_endpoint("rttestv0", "rttest0", "02:42:0a:c7:07:02", "10.199.7.2", 24, "10.199.7.1", str(netns),
                          ip6="fd00:199:7::2", prefixlen6=64, gateway6="fd00:199:7::1")
    links.add_endpoint(steps, netns)
    inside = f"nsenter -t {netns} -n "
    eth0 = sh(inside + "ip -d addr show eth0").stdout
    assert "link/ether 02:42:0a:c7:07:02" in eth0 and ",UP," in eth0
    assert "inet 10.199.7.2/24 scope global eth0" in eth0  # no broadcast, as `ip addr add` gives
    assert "inet6 fd00:199:7::2/64 scope global nodad" in eth0
    assert "default via 10.199.7.1 dev eth0 proto static" in sh(inside + "ip route").stdout
    assert "default via fd00:199:7::1 dev eth0 proto static" in sh(inside + "ip -6 route").stdout
    host = sh("ip -d link show rttestv0").stdout
    assert "master rttest0" in host and ",UP," in host and "hairpin on" in host

    with pytest.raises(MiniboxError, match=r"^ip link add rttestv0 type veth .*: File exists$"):
        links.add_endpoint(steps, netns)  # the same veth name twice: the kernel's EEXIST, with the step

    done, errors = links.remove_link("rttestv0", "test")
    assert [type(s).__name__ for s in done] == ["LinkDel"] and errors == []
    assert sh("ip link show rttestv0", check=False).returncode != 0
    assert links.remove_link("rttestv0", "test") == ([], [])  # already gone: nothing to do, no error


def test_a_namespace_named_by_path_as_cni_passes_it(netns):
    steps = plan_endpoint("rttestv0", "rttest0", "02:42:0a:c7:07:03", "10.199.7.3", 24, "10.199.7.1",
                          f"/proc/{netns}/ns/net")
    links.add_endpoint(steps, f"/proc/{netns}/ns/net")
    assert "10.199.7.3/24" in sh(f"nsenter -t {netns} -n ip -o addr show eth0").stdout


def test_a_start_that_fails_leaves_no_process_behind():
    before = processes()
    assert mb("run", "--no-such-flag", "busybox").returncode == 125  # refused by typer
    assert mb("run", "--rm", "no-such-image-rt").returncode == 125  # failed in the start itself
    assert processes() == before
