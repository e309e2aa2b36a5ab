"""The teaching tools' pure parts, against golden text: topology renderers, trace parsing, step scripts.

Each golden file under tests/unit/golden/ is what a learner sees for one fixed input.
Regenerate with UPDATE_GOLDEN=1 after an intended change, and read the diff.
"""

import os
import re
from pathlib import Path

from minibox.plan import network as netplan
from minibox.plan.steps import PID, ConntrackFlush, Firewall, LoadSeccomp, Mount, render
from minibox.teach import paths, picture, topology, topotext, trace
from minibox.teach.topology import Ctr, Hook, Net, Rule, Topology

GOLDEN = Path(__file__).with_name("golden")


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"rendering differs from {path}; UPDATE_GOLDEN=1 to accept"


WEB = Ctr("web", "4f1c00000000", "mbx4f1c00000000", "10.222.0.2", 24, "02:42:0a:de:00:02", ["0.0.0.0:8080->80/tcp"],
          True, "19:00:05")
TOPO = Topology(
    host_links=[("lo", "", ["127.0.0.1/8"]), ("eth0", "", ["192.0.2.10/24"])],
    routes=["default via 192.0.2.1 dev eth0", "10.222.0.0/24 dev minibox0"],
    nets=[Net("minibox", "minibox0", "10.222.0.0/24", "10.222.0.1", "02:aa:bb:cc:dd:ee", False, "nftables", True,
              [WEB])],
    hooks=[Hook("chain prerouting (hook prerouting, nat, priority -100)",
                [Rule(3, "ip daddr != 127.0.0.0/8 fib daddr type local jump hostports",
                      "published ports, reached from outside")]),
           Hook("chain postrouting (hook postrouting, nat, priority 100)",
                [Rule(7, "iifname @bridges ip saddr @subnets oifname != @bridges masquerade",
                      "egress: containers leave with the host's address"),
                 Rule(2, "oifname @bridges ip saddr 127.0.0.0/8 masquerade", "published port reached via 127.0.0.1"),
                 Rule(0, "oifname @bridges ip saddr @subnets ct status dnat masquerade",
                      "hairpin: a container reaching a published port")]),
           Hook("map hostport-any (published ports)",
                [Rule(5, "tcp . 8080 -> 10.222.0.2 . 80", "minibox ctr 4f1c00000000 web")])],
    firewall="nftables",
    rules_since="19:00:01",
)


def test_topology_text():
    text = topotext.text(TOPO)
    assert all(len(line) <= 100 for line in text.splitlines())
    check("topology.txt", text)


def test_topology_mermaid():
    check("topology.mermaid", topotext.mermaid(TOPO))


def svg_structure(svg: str) -> tuple[dict, set, set]:
    """What the picture says, without pixels: its boxes (node id -> text), its wires
    (from, to), and its packet paths (kind, from, to)."""
    import xml.etree.ElementTree as ET

    ns = "{http://www.w3.org/2000/svg}"
    root = ET.fromstring(svg)
    nodes = {g.get("data-node"): " | ".join("".join(t.itertext()) for t in g.iter(ns + "text"))
             for g in root.iter(ns + "g") if g.get("class") == "node"}
    lines = list(root.iter(ns + "line"))
    wires = {(x.get("data-from"), x.get("data-to")) for x in lines if x.get("class") == "wire"}
    hops = {(x.get("class").split()[1], x.get("data-from"), x.get("data-to")) for x in lines
            if (x.get("class") or "").startswith("path ")}
    return nodes, wires, hops


def test_topology_svg_structure():
    svg = picture.svg(TOPO)
    nodes, wires, hops = svg_structure(svg)
    dnat, masq = "dnat:0.0.0.0:8080/tcp", "masq:minibox0"
    assert nodes == {
        "if:lo": "lo | 127.0.0.1/8", "if:eth0": "eth0 | 192.0.2.10/24",
        dnat: "DNAT tcp :8080 → web:80 | 0.0.0.0:8080 → 10.222.0.2:80 | 5 pkts since 19:00:05",
        masq: "MASQUERADE (postrouting) | 10.222.0.0/24 → eth0 | 7 pkts out since 19:00:01",
        "br:minibox0": "minibox0 (bridge) | 10.222.0.1  net minibox | 10.222.0.0/24",
        "ctr:4f1c00000000": "container web | eth0 10.222.0.2/24 | 02:42:0a:de:00:02"}
    # nothing floats: lo and the uplink reach the bridge through the NAT boxes
    assert wires == {("if:eth0", dnat), ("if:lo", dnat), (dnat, "br:minibox0"), ("br:minibox0", masq),
                     (masq, "if:eth0"), ("br:minibox0", "ctr:4f1c00000000")}
    # the way in from the LAN: uplink → DNAT → bridge → veth → the container's port
    ctr = "ctr:4f1c00000000"
    assert {h for h in hops if h[0] == "lan-in"} == {("lan-in", "if:eth0", dnat), ("lan-in", dnat, "br:minibox0"),
                                                     ("lan-in", "br:minibox0", ctr)}
    # the way out: container → bridge → MASQUERADE → uplink
    assert {h for h in hops if h[0] == "out"} == {("out", ctr, "br:minibox0"), ("out", "br:minibox0", masq),
                                                  ("out", masq, "if:eth0")}
    assert ("host-in", "if:lo", dnat) in hops and ("host-in", masq, "br:minibox0") in hops
    assert ("ctr-in", "br:minibox0", dnat) in hops and ("ctr-in", dnat, masq) in hops
    assert "rule counters since 19:00:01" in svg
    check("topology.svg", svg)


def test_port_picks_its_paths_and_nothing_else():
    other = WEB._replace(name="db", short_id="77aa00000000", veth="mbx77aa00000000", ip="10.222.0.3",
                         ports=["127.0.0.1:5432->5432/tcp"])
    two = TOPO._replace(nets=[TOPO.nets[0]._replace(containers=(WEB, other))])
    assert [p.label for p in paths.published(two)] == ["0.0.0.0:8080->80/tcp", "127.0.0.1:5432->5432/tcp"]
    assert [p.label for p in paths.select(paths.published(two), "5432/tcp")] == ["127.0.0.1:5432->5432/tcp"]
    assert paths.select(paths.published(two), "5432/udp") == []
    _, wires, hops = svg_structure(picture.svg(two, "5432"))
    assert {h[1] for h in hops} >= {"if:lo", "dnat:127.0.0.1:5432/tcp"}
    assert not any("8080" in a or "8080" in b for _, a, b in hops)  # only the chosen port is drawn
    assert ("if:lo", "dnat:127.0.0.1:5432/tcp") not in wires  # bound to 127.0.0.1: not reachable from the LAN...
    assert ("if:eth0", "dnat:127.0.0.1:5432/tcp") in wires  # ...but its DNAT sits on the uplink's prerouting path
    text = topotext.text(two, "8080")
    assert "packet paths of 0.0.0.0:8080->80/tcp (web)" in text and "5432->5432" not in text.split("routes")[1]
    lan = text.split("  in from the LAN\n")[1].split("  in from this host")[0]
    assert "prerouting: DNAT tcp :8080 → 10.222.0.2:80 [5 pkts since 19:00:05]" in lan


TRACE = """\
trace id 2a6b4c1d ip minibox-trace-ab pre packet: iif "uplink0" ether saddr 02:00:00:00:00:02 ip saddr 198.18.213.2 ip daddr 198.18.213.1 ip protocol tcp tcp sport 40000 tcp dport 8080 tcp flags == syn
trace id 2a6b4c1d ip minibox-trace-ab pre rule meta nftrace set 1 (verdict continue)
trace id 2a6b4c1d inet minibox prerouting rule ip daddr != 127.0.0.0/8 fib daddr type local counter packets 1 bytes 60 jump hostports (verdict jump hostports)
trace id 2a6b4c1d inet minibox hostports rule dnat ip to meta l4proto . th dport map @hostport-any (verdict accept)
trace id 2a6b4c1d inet minibox forward packet: iif "uplink0" oif "minibox0" ip saddr 198.18.213.2 ip daddr 10.222.0.2 tcp sport 40000 tcp dport 80 tcp flags == syn
trace id 2a6b4c1d inet minibox forward rule oifname @bridges ct status dnat counter packets 1 bytes 60 accept (verdict accept)
trace id 77aa0000 ip minibox-trace-ab pre packet: iif "minibox0" ip saddr 10.222.0.2 ip daddr 198.18.213.2 tcp sport 80 tcp dport 40000 tcp flags == 0x12
trace id 77aa0000 inet minibox forward rule oifname @bridges ct state established,related counter packets 9 bytes 9 accept (verdict accept)
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
              Firewall("nftables", ("add element inet minibox hostport-any { tcp . 8080 : 10.222.0.2 . 80 }",),
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
    text = topotext.text(TOPO._replace(hidden=3))
    assert "  (3 other interfaces not shown: `--all` lists them)" in text.splitlines()
    assert "not shown" not in topotext.text(TOPO)


def test_cgroup_mounts_finds_each_hierarchy():
    from minibox.teach import observe

    info = ("35 25 0:30 / /sys/fs/cgroup rw - tmpfs tmpfs ro,mode=755\n"
            "36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
            "40 35 0:35 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n"
            "41 35 0:36 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n"
            "42 35 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n")
    m = observe.cgroup_mounts(info)
    assert m == {"": "/sys/fs/cgroup/unified", "memory": "/sys/fs/cgroup/memory", "cpu": "/sys/fs/cgroup/cpu,cpuacct",
                 "cpuacct": "/sys/fs/cgroup/cpu,cpuacct", "xattr": "/sys/fs/cgroup/systemd",
                 "name=systemd": "/sys/fs/cgroup/systemd"}


def test_one_network_keeps_to_its_own_rules():
    other = [Rule(1, "tcp . 9090 -> 10.9.0.2 . 80", "minibox ctr 77aa00000000 db"),
             Rule(2, '-i br-other -o br-other -j ACCEPT', "minibox net other")]
    hooks = TOPO.hooks + [Hook("map hostport-any (published ports)", other[:1]), Hook("filter", other[1:])]
    kept = topology.own_rules(hooks, TOPO.nets)
    texts = [r.text for h in kept for r in h.rules]
    assert "tcp . 8080 -> 10.222.0.2 . 80" in texts and "ip daddr != 127.0.0.0/8 fib daddr type local jump hostports" \
        in texts  # its own element, and the fixed rules every network shares
    assert not any(t in texts for t in (other[0].text, other[1].text)) and len(kept) == len(TOPO.hooks)


def test_a_host_without_a_default_route_still_shows_where_the_lan_would_be():
    lonely = TOPO._replace(host_links=[("lo", "", ["127.0.0.1/8"])], routes=["10.222.0.0/24 dev minibox0"])
    nodes, wires, hops = svg_structure(picture.svg(lonely))
    assert nodes["if:the uplink"] == "the uplink | no default route here"
    assert ("if:the uplink", "dnat:0.0.0.0:8080/tcp") in wires and ("masq:minibox0", "if:the uplink") in wires
    assert ("lan-in", "if:the uplink", "dnat:0.0.0.0:8080/tcp") in hops
