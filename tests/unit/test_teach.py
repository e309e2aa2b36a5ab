"""The teaching tools' pure parts, against golden text: topology renderers, trace parsing, step scripts.

Each golden file under tests/unit/golden/ is what a learner sees for one fixed input.
Regenerate with UPDATE_GOLDEN=1 after an intended change, and read the diff.
"""

import os
import re
from pathlib import Path

from minibox.plan import network as netplan
from minibox.plan.steps import PID, ConntrackFlush, Firewall, LoadSeccomp, Mount, render
from minibox.teach import topology, trace
from minibox.teach.topology import Ctr, Hook, Net, Rule, Topology

GOLDEN = Path(__file__).with_name("golden")


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"rendering differs from {path}; UPDATE_GOLDEN=1 to accept"


WEB = Ctr("web", "4f1c00000000", "mbx4f1c00000000", "10.222.0.2", 24, "02:42:0a:de:00:02", ["0.0.0.0:8080->80/tcp"],
          True)
TOPO = Topology(
    host_links=[("lo", "", ["127.0.0.1/8"]), ("eth0", "", ["192.0.2.10/24"])],
    routes=["default via 192.0.2.1 dev eth0", "10.222.0.0/24 dev minibox0"],
    nets=[Net("minibox", "minibox0", "10.222.0.0/24", "10.222.0.1", "02:aa:bb:cc:dd:ee", False, "nftables", True,
              [WEB])],
    hooks=[Hook("prerouting (nat)", [Rule(3, "ip daddr != 127.0.0.0/8 fib daddr type local jump hostports",
                                          "published ports, reached from outside")]),
           Hook("hostports", [Rule(None, "tcp . 8080 : 10.222.0.2 . 80", "minibox ctr 4f1c00000000 web")])],
    firewall="nftables",
)


def test_topology_text():
    check("topology.txt", topology.text(TOPO))


def test_topology_mermaid():
    check("topology.mermaid", topology.mermaid(TOPO))


def test_topology_svg_structure():
    svg = topology.svg(TOPO)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    # every box a learner must find: the bridge, the veth pair, the container with its address
    for needle in ("minibox0", "mbx4f1c00000000", "eth0", "10.222.0.2", "web"):
        assert needle in svg, needle
    check("topology.svg", svg)


TRACE = """\
trace id 2a6b4c1d ip minibox-trace-ab pre packet: iif "uplink0" ether saddr 02:00:00:00:00:02 ip saddr 198.18.213.2 ip daddr 198.18.213.1 ip protocol tcp tcp sport 40000 tcp dport 8080 tcp flags == syn
trace id 2a6b4c1d ip minibox-trace-ab pre rule meta nftrace set 1 (verdict continue)
trace id 2a6b4c1d ip minibox prerouting rule ip daddr != 127.0.0.0/8 fib daddr type local counter packets 1 bytes 60 jump hostports (verdict jump hostports)
trace id 2a6b4c1d ip minibox hostports rule dnat ip to meta l4proto . th dport map @hostport-any (verdict accept)
trace id 2a6b4c1d ip minibox forward packet: iif "uplink0" oif "minibox0" ip saddr 198.18.213.2 ip daddr 10.222.0.2 tcp sport 40000 tcp dport 80 tcp flags == syn
trace id 2a6b4c1d ip minibox forward rule oifname @bridges ct status dnat counter packets 1 bytes 60 accept (verdict accept)
trace id 77aa0000 ip minibox-trace-ab pre packet: iif "minibox0" ip saddr 10.222.0.2 ip daddr 198.18.213.2 tcp sport 80 tcp dport 40000 tcp flags == 0x12
trace id 77aa0000 ip minibox forward rule oifname @bridges ct state established,related counter packets 9 bytes 9 accept (verdict accept)
"""


def test_trace_groups_hops_by_packet():
    packets = trace._hops(TRACE)
    assert list(packets) == ["2a6b4c1d#0", "77aa0000#1"]
    first = packets["2a6b4c1d#0"]
    assert first[0] == "packet iif uplink0 198.18.213.2:40000 -> 198.18.213.1:8080 [SYN]"
    assert any("hostports" in h and "dnat ip to" in h for h in first)
    assert not any("counter packets" in h for h in first)  # counters are noise here
    assert not any("minibox-trace" in h for h in first)  # our own marking rule is left out
    assert packets["77aa0000#1"][0].endswith("[SYN,ACK]")
    r = trace.Result("outside", "198.18.213.1:8080", "HTTP/1.1 200 OK", packets,
                     ["tcp 6 src=198.18.213.2 dst=198.18.213.1 sport=40000 dport=8080 src=10.222.0.2 dst=198.18.213.2"])
    check("trace-outside.txt", trace.render(r))


def test_packet_summary_without_ports():
    assert trace._packet('iif "lo" ip saddr 127.0.0.1 ip daddr 127.0.0.1 icmp type echo-request') == "iif lo"


def test_steps_render_as_a_commented_script():
    steps = netplan.plan_endpoint("mbx4f1c00000000", "minibox0", "02:42:0a:de:00:02", "10.222.0.2", 24, "10.222.0.1",
                                  PID)
    steps += [ConntrackFlush("", addr="10.222.0.2", why="forget its flows"),
              Firewall("nftables", ("add element ip minibox hostport-any { tcp . 8080 : 10.222.0.2 . 80 }",),
                       why="its published port"),
              Mount("proc", "/c/merged/proc", "proc", 14, why="a /proc of its own"),
              LoadSeccomp("/p.json", 433, b"\0" * 16, why="seccomp")]
    check("steps.sh", render(steps, pid=4242) + "\n")
    assert "$CTR_PID" not in render(steps, pid=4242)
    assert render(steps).count("$CTR_PID") == 4  # a script keeps the placeholder
    assert not re.search(r"^# $", render(steps), re.M)  # steps without a why get no empty comment


def test_topology_counts_the_interfaces_it_leaves_out_and_finds_the_uplink():
    assert topology.uplink(["10.222.0.0/24 dev minibox0", "default via 192.0.2.1 dev eth0"]) == "eth0"
    assert topology.uplink(["10.222.0.0/24 dev minibox0"]) == ""
    text = topology.text(TOPO._replace(hidden=3))
    assert "  (3 other interfaces not shown: `--all` lists them)" in text.splitlines()
    assert "not shown" not in topology.text(TOPO)
