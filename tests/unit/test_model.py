"""Records and states survive the round trip through their JSON files unchanged."""

import json

from minibox.model import (
    ContainerRecord,
    ContainerSpec,
    ContainerState,
    Endpoint,
    NetworkRecord,
    PortMapping,
    can_move,
)

SPEC = ContainerSpec(image="busybox", cmd=("httpd", "-f"), name="web", env=("A=1",), workdir="/w", hostname="h",
                     interactive=True, tty=True, detach=True, remove=True, network="minibox",
                     ports=(PortMapping("", 8080, 80), PortMapping("127.0.0.1", 5353, 53, "udp")), ip="10.222.0.9",
                     memory=64 << 20, pids_limit=10, seccomp="unconfined", log_max_size=1 << 20, log_max_files=2)


def roundtrip(obj):
    return type(obj).from_dict(json.loads(json.dumps(obj.to_dict())))


def test_spec_roundtrip():
    assert roundtrip(SPEC) == SPEC


def test_record_roundtrip():
    rec = ContainerRecord(id="4f" * 32, name="web", created=1.5, spec=SPEC, image_layers=("/img",), hostname="h",
                          env=("PATH=/bin",), endpoint=Endpoint("minibox", "minibox0", "mbx4f4f4f4f4f4f", "10.222.0.9",
                                                               24, "10.222.0.1", "02:42:0a:de:00:09"),
                          ports=(PortMapping("", 8080, 80),), firewall="nftables", caps=("chown", "kill"))
    assert roundtrip(rec) == rec


def test_state_roundtrip():
    state = ContainerState(status="exited", pid=12, pid_start=34, shim_pid=5, shim_start=6, creator_pid=7,
                           creator_start=8, started_at=1.0, finished_at=2.0, exit_code=137, error="e", released=True,
                           release_log=(("why", "ip link del x"),))
    assert roundtrip(state) == state


def test_network_roundtrip_and_unknown_keys_are_ignored():
    net = NetworkRecord("n", "id", "br", "10.0.0.0/24", "10.0.0.1", "02:00:00:00:00:01", True, "iptables", 3.0,
                        (("k", "v"),))
    assert roundtrip(net) == net
    assert NetworkRecord.from_dict({**net.to_dict(), "from_a_newer_minibox": 1}) == net


def test_transitions():
    assert can_move("creating", "created") and can_move("created", "running") and can_move("running", "exited")
    assert can_move("creating", "exited") and can_move("exited", "removing")
    assert not can_move("exited", "running") and not can_move("removing", "running")


def test_the_network_mode_is_read_once_into_a_value():
    from minibox.model import ContainerSpec, NetworkMode

    assert NetworkMode.parse("") == NetworkMode.parse("bridge") == NetworkMode("default")
    assert NetworkMode.parse("none").kind == "none" and not NetworkMode.parse("none").bridged
    host = NetworkMode.parse("host")
    assert not host.bridged and not host.own_netns
    named = NetworkMode.parse("v-net-0")
    assert named.bridged and named.own_netns and named.name == "v-net-0" and str(named) == "v-net-0"
    assert ContainerSpec(image="i", network="none").mode == NetworkMode("none")


def test_notes_go_where_the_command_sends_them():
    import io

    from minibox import notes

    notes.use(None)
    notes.say("kept for later")
    assert notes.kept[-1] == "kept for later"
    out = io.StringIO()
    notes.use(out)
    try:
        notes.say("enabled something")
        assert out.getvalue() == "minibox: enabled something\n"
    finally:
        notes.use(None)
