"""The four ways a packet crosses what minibox built for a published port, worked out from a topology snapshot.

For `-p 8080:80` on container web, network minibox (bridge minibox0, uplink eth0):

  in from the LAN      eth0 → DNAT (prerouting) → minibox0 → web's veth → web eth0:80
  in from this host    lo → DNAT (output) → MASQUERADE from 127.0.0.1 → minibox0 → veth → web:80
  in from a container  minibox0 → DNAT (prerouting) → MASQUERADE (hairpin) → minibox0 → veth → web:80
  out to the world     web eth0 → veth → minibox0 → MASQUERADE → eth0

Each hop names a box of the picture (`node`) and says what happens there, with the packet
counter of the rule or map element that does it, read from the same snapshot. The text and
SVG renderers of `network show` both draw these paths, so they cannot disagree.
Pure: a Topology in, Paths out.
"""

from __future__ import annotations

import re

from minibox.value import Value

PORT = re.compile(r"(?P<host_ip>[\d.]+):(?P<host_port>\d+)->(?P<ctr_port>\d+)/(?P<proto>\w+)$")

LAN_IN, HOST_IN, CTR_IN, OUT = "lan-in", "host-in", "ctr-in", "out"
NO_UPLINK = "the uplink"  # what stands for it when the host has no default route (a throwaway host)
TITLES = {LAN_IN: "in from the LAN", HOST_IN: "in from this host", CTR_IN: "in from a container",
          OUT: "out to the world"}


class Published(Value):
    """One published port of one container, parsed from the topology's `0.0.0.0:8080->80/tcp`."""

    host_ip: str
    host_port: int
    ctr_port: int
    proto: str
    ctr_ip: str
    ctr: str  # container name
    short_id: str
    net: str  # network name
    bridge: str
    veth: str
    subnet: str
    since: str = ""  # HH:MM:SS its DNAT counter counts from

    @property
    def label(self) -> str:
        return f"{self.host_ip}:{self.host_port}->{self.ctr_port}/{self.proto}"

    @property
    def nat_id(self) -> str:
        return f"dnat:{self.host_ip}:{self.host_port}/{self.proto}"


class Hop(Value):
    node: str  # the picture's box: "if:eth0", "dnat:0.0.0.0:8080/tcp", "masq:minibox0", "br:minibox0", "ctr:<id>"
    text: str  # what happens there, as a learner reads it


class Path(Value):
    kind: str  # LAN_IN, HOST_IN, CTR_IN or OUT
    port: Published
    hops: tuple[Hop, ...]

    @property
    def title(self) -> str:
        return TITLES[self.kind]


def published(t) -> list[Published]:
    """Every published port on the topology's networks, in the order they are drawn."""
    out = []
    for n in t.nets:
        for c in n.containers:
            for p in c.ports:
                m = PORT.match(p)
                if m:
                    out.append(Published(m["host_ip"], int(m["host_port"]), int(m["ctr_port"]), m["proto"], c.ip,
                                         c.name, c.short_id, n.name, n.bridge, c.veth, n.subnet,
                                         c.counted_since))
    return out


def select(ports: list[Published], want: str) -> list[Published]:
    """`--port P` or `--port P/PROTO`: the published ports with host port P (all when want is "")."""
    if not want:
        return ports
    port, _, proto = want.partition("/")
    return [p for p in ports if str(p.host_port) == port and (not proto or p.proto == proto)]


def pkts(packets: int | None) -> str:
    return "-" if packets is None else f"{packets} pkt{'' if packets == 1 else 's'}"


def _counted(packets: int | None, since: str = "") -> str:
    return "" if packets is None else f" [{pkts(packets)}{f' since {since}' if since else ''}]"


def _rule_packets(t, nft_comment: str, ipt: str) -> int | None:
    """The counter of the rule whose nft comment starts with `nft_comment`, or whose
    iptables text contains `ipt`."""
    for h in t.hooks:
        for r in h.rules:
            if (t.firewall == "nftables" and r.comment.startswith(nft_comment)) or \
                    (t.firewall == "iptables" and ipt and ipt in r.text):
                return r.packets
    return None


def dnat_packets(t, p: Published) -> int | None:
    """The map element's counter (nftables), or the DNAT rule's (iptables)."""
    key = f"{p.proto} . {p.host_port} -> {p.ctr_ip} . {p.ctr_port}"
    if p.host_ip != "0.0.0.0":
        key = f"{p.host_ip} . {key}"
    for h in t.hooks:
        for r in h.rules:
            if r.text == key or (f"--dport {p.host_port} " in r.text + " " and
                                 f"--to-destination {p.ctr_ip}:{p.ctr_port}" in r.text):
                return r.packets
    return None


def masq_packets(t, subnet: str, bridge: str, kind: str) -> int | None:
    """The packet counter of a network's MASQUERADE rule for traffic of `kind`."""
    if kind == OUT:
        return _rule_packets(t, "egress: containers leave", f"-s {subnet} ! -o {bridge} ")
    if kind == HOST_IN:
        return _rule_packets(t, "published port reached via 127", f"-s 127.0.0.0/8 -o {bridge} ")
    return _rule_packets(t, "hairpin", f"-s {subnet} -o {bridge} -m conntrack --ctstate DNAT")


def paths(t, p: Published) -> list[Path]:
    """The four paths of published port `p`."""
    from minibox.teach.topology import uplink

    up = uplink(t.routes) or NO_UPLINK
    where = "any host address" if p.host_ip == "0.0.0.0" else p.host_ip
    to = "" if p.host_ip == "0.0.0.0" else p.host_ip
    dnat = f"DNAT {p.proto} {to}:{p.host_port} → {p.ctr_ip}:{p.ctr_port}{_counted(dnat_packets(t, p), p.since)}"
    into = [Hop(f"br:{p.bridge}", f"{p.bridge} (bridge)"),
            Hop(f"ctr:{p.short_id}", f"{p.veth} ⇄ eth0 {p.ctr_ip}:{p.ctr_port} ({p.ctr})")]
    lan = [Hop(f"if:{up}", f"{up}: a LAN host asks for {where}:{p.host_port}"),
           Hop(p.nat_id, f"prerouting: {dnat}"),
           Hop(f"fwd:{p.bridge}", "forward: accept, DNAT made it")] + into
    host_src = "127.0.0.1" if p.host_ip in ("0.0.0.0", "127.0.0.1") else p.host_ip
    host = [Hop("if:lo", f"lo: `curl {host_src}:{p.host_port}` on the host"),
            Hop(p.nat_id, f"output: {dnat}")]
    if host_src.startswith("127."):
        host.append(Hop(f"masq:{p.bridge}", "postrouting: MASQUERADE from 127.0.0.1, so the reply comes back"
                                            f"{_counted(masq_packets(t, p.subnet, p.bridge, HOST_IN), t.rules_since)}"))
    hairpin = [Hop(f"br:{p.bridge}", f"{p.bridge}: another container on {p.net} asks for {where}:{p.host_port}"),
               Hop(p.nat_id, f"prerouting: {dnat}"),
               Hop(f"masq:{p.bridge}", f"postrouting: MASQUERADE (hairpin){_counted(masq_packets(t, p.subnet, p.bridge, CTR_IN), t.rules_since)}")]
    out = [Hop(f"ctr:{p.short_id}", f"{p.ctr} eth0 {p.ctr_ip} → its default route, the bridge"),
           Hop(f"br:{p.bridge}", f"{p.bridge} (bridge), via {p.veth}"),
           Hop(f"fwd:{p.bridge}", "forward: accept, egress"),
           Hop(f"masq:{p.bridge}", f"postrouting: MASQUERADE to {up}'s address{_counted(masq_packets(t, p.subnet, p.bridge, OUT), t.rules_since)}"),
           Hop(f"if:{up}", f"{up}: out to the LAN and beyond")]
    return [Path(LAN_IN, p, tuple(lan)), Path(HOST_IN, p, tuple(host + into)),
            Path(CTR_IN, p, tuple(hairpin + into)), Path(OUT, p, tuple(out))]
