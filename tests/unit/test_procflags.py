"""Run's process and kernel flags, checked as Docker checks them: each bad value one line naming it."""

import pytest

from minibox.errors import InvalidSpec
from minibox.plan import procflags

DEFAULT = ("chown", "net_raw", "kill")
HELD = ("chown", "net_raw", "kill", "net_admin", "sys_admin")


def test_capabilities_drop_first_then_add_within_what_is_held():
    assert procflags.capability("CAP_NET_ADMIN", "--cap-add") == "net_admin"
    assert procflags.capability("net_admin", "--cap-add") == "net_admin"
    assert procflags.capability("ALL", "--cap-drop") == "all"
    assert procflags.capabilities(DEFAULT, ("net_admin",), ("net_raw",), HELD) == ("chown", "kill", "net_admin")
    assert procflags.capabilities(DEFAULT, ("kill",), ("all",), HELD) == ("kill",)
    assert procflags.capabilities(DEFAULT, ("all",), (), HELD) == DEFAULT + ("net_admin", "sys_admin")
    with pytest.raises(InvalidSpec, match='--cap-add "CAP_FLY": unknown capability'):
        procflags.capability("CAP_FLY", "--cap-add")


def test_ulimits():
    assert procflags.ulimit("nofile=1024:2048") == ("RLIMIT_NOFILE", 1024, 2048)
    assert procflags.ulimit("core=0") == ("RLIMIT_CORE", 0, 0)
    assert procflags.ulimit("memlock=-1") == ("RLIMIT_MEMLOCK", 2 ** 64 - 1, 2 ** 64 - 1)
    for bad, needle in (("nofile", "expected NAME=SOFT"), ("files=1", "expected NAME=SOFT"),
                        ("nofile=2048:1024", "at most the hard one"), ("nofile=a:b", "expected NAME=SOFT")):
        with pytest.raises(InvalidSpec, match=needle):
            procflags.ulimit(bad)


def test_only_namespaced_sysctls():
    assert procflags.sysctl("net.ipv4.ip_forward=1", True) == ("net.ipv4.ip_forward", "1")
    assert procflags.sysctl("kernel.shmmax=4096", False) == ("kernel.shmmax", "4096")
    assert procflags.sysctl("fs.mqueue.msg_max=20", True) == ("fs.mqueue.msg_max", "20")
    with pytest.raises(InvalidSpec, match="vm.swappiness is not allowed"):
        procflags.sysctl("vm.swappiness=1", True)
    with pytest.raises(InvalidSpec, match="shares a network namespace"):
        procflags.sysctl("net.ipv4.ip_forward=1", False)
    with pytest.raises(InvalidSpec, match="expected KEY=VALUE"):
        procflags.sysctl("net.ipv4.ip_forward", True)


def test_devices_and_stop_signals():
    assert procflags.device("/dev/fuse") == ("/dev/fuse", "/dev/fuse", "rwm")
    assert procflags.device("/dev/fuse:/dev/f2:r") == ("/dev/fuse", "/dev/f2", "r")
    assert procflags.device("/dev/fuse:rw") == ("/dev/fuse", "/dev/fuse", "rw")
    with pytest.raises(InvalidSpec, match='invalid --device "fuse"'):
        procflags.device("fuse")
    assert procflags.stop_signal("quit") == "SIGQUIT" and procflags.stop_signal("SIGUSR1") == "SIGUSR1"
    assert procflags.stop_signal("9") == "SIGKILL"
    with pytest.raises(InvalidSpec, match='invalid --stop-signal "SIGNOPE"'):
        procflags.stop_signal("SIGNOPE")
