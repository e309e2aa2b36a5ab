"""The firewall as data: one model of networks and published ports, rendered for nftables or iptables.

The model is two kinds of plain facts: a bridge network (NetFacts) and a published port
(PortFacts). The renderers turn them into the exact text the backends apply:

- nftables: one table, `inet minibox` (IPv4 and IPv6 alike), whose rules never change;
  networks and ports are elements of its sets and maps. Publishing a port adds one map element, so the rule path
  a packet walks does not grow with the number of containers, and each element keeps its
  own packet counter.
- iptables: chains of our own named like Docker's, one rule per network fact and per
  port (plan.iptrules renders them).

Every rule and element carries a comment naming its owner ("minibox net NAME" or
"minibox ctr ID12 NAME"), so teardown can find exactly what a container or network
installed even if minibox's own state is lost.

Pure: no I/O here. The text returned is what is applied *and* what `--explain` prints.
"""

from __future__ import annotations

from minibox.value import Value

TABLE = "minibox"


class NetFacts(Value):
    name: str
    bridge: str
    subnet: str
    internal: bool = False
    subnet6: str = ""  # an --ipv6 network's

    @property
    def tag(self) -> str:
        return f"minibox net {self.name}"


class PortFacts(Value):
    owner: str  # container id
    owner_name: str
    host_ip: str  # "" = every host address
    host_port: int
    proto: str
    ctr_ip: str
    ctr_port: int
    ctr_ip6: str = ""  # a dual-stack container's: a port on every address is published on IPv6 too

    @property
    def tag(self) -> str:
        return f"minibox ctr {self.owner[:12]} {self.owner_name}"


# --- nftables ----------------------------------------------------------------------------

NFT_SETS = (
    # (kind, name, type, extra, comment)
    ("set", "bridges", "ifname", "", "every minibox bridge"),
    ("set", "subnets", "ipv4_addr", "flags interval;", "every minibox subnet"),
    ("set", "icc", "ifname . ifname", "", "bridge . same bridge: containers of one network talk freely"),
    ("set", "internal", "ifname", "", "bridges of --internal networks: no way in or out"),
    ("map", "hostport-any", "inet_proto . inet_service : ipv4_addr . inet_service", "counter;",
     "published ports on every host address: proto . port -> container . port"),
    ("map", "hostport-addr", "ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service", "counter;",
     "published ports on one host address: address . proto . port -> container . port"),
    ("set", "subnets6", "ipv6_addr", "flags interval;", "every minibox IPv6 subnet (--ipv6 networks)"),
    ("map", "hostport-any6", "inet_proto . inet_service : ipv6_addr . inet_service", "counter;",
     "published ports on every host IPv6 address: proto . port -> container . port"),
    ("map", "hostport-addr6", "ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service", "counter;",
     "published ports on one host IPv6 address: address . proto . port -> container . port"),
)

NFT_CHAINS = (
    # (name, hook declaration or "" for a regular chain)
    ("prerouting", "type nat hook prerouting priority dstnat; policy accept;"),
    ("output", "type nat hook output priority -100; policy accept;"),  # dstnat: 1.0.6 only names it for prerouting
    ("hostports", ""),
    ("postrouting", "type nat hook postrouting priority srcnat; policy accept;"),
    ("forward", "type filter hook forward priority filter; policy accept;"),
    ("input", "type filter hook input priority filter; policy accept;"),
)


def nft_rules() -> list[tuple[str, str]]:
    """The fixed rules, (chain, rule), in order. Networks and ports only add set elements."""
    r: list[tuple[str, str]] = []
    # "A packet from outside for one of this host's addresses goes to the published-port
    # lookup." Not for 127.0.0.0/8: route_localnet on our bridge would otherwise let a LAN
    # host reach a port published on 127.0.0.1 with a crafted packet (moby#45610).
    r.append(("prerouting", 'ip daddr != 127.0.0.0/8 fib daddr type local counter jump hostports '
                            'comment "published ports, reached from outside"'))
    r.append(("prerouting", 'ip6 daddr != ::1 fib daddr type local counter jump hostports '
                            'comment "published ports, reached from outside over IPv6"'))
    # "A packet from a process on this host for one of its own addresses, 127.0.0.1
    # included, goes to the published-port lookup." (Docker leaves 127/8 to its proxy.)
    r.append(("output", 'meta nfproto ipv4 fib daddr type local counter jump hostports '
                        'comment "published ports, reached from this host"'))
    # "...and over IPv6, but not to ::1": a packet from ::1 cannot leave the host (IPv6
    # has no route_localnet), so [::1] is left to the host's own listeners.
    r.append(("output", 'ip6 daddr != ::1 fib daddr type local counter jump hostports '
                        'comment "published ports, reached from this host over IPv6"'))
    # "Destination address . protocol . port found in hostport-addr: rewrite the destination
    # to the container address and port it maps to." (-p 127.0.0.1:8080:80)
    r.append(("hostports", 'dnat ip to ip daddr . meta l4proto . th dport map @hostport-addr '
                           'comment "DNAT: -p IP:HOST:CTR"'))
    # "Protocol . port found in hostport-any: the same, whatever host address was asked."
    r.append(("hostports", 'dnat ip to meta l4proto . th dport map @hostport-any '
                           'comment "DNAT: -p HOST:CTR"'))
    # The same two lookups for IPv6 destinations, to the container's IPv6 address.
    r.append(("hostports", 'dnat ip6 to ip6 daddr . meta l4proto . th dport map @hostport-addr6 '
                           'comment "DNAT: -p [IPV6]:HOST:CTR"'))
    r.append(("hostports", 'dnat ip6 to meta l4proto . th dport map @hostport-any6 '
                           'comment "DNAT: -p HOST:CTR, over IPv6"'))
    # "From a container, leaving through anything but a minibox bridge: replace the source
    # with the outgoing interface's address." (egress MASQUERADE)
    r.append(("postrouting", 'iifname @bridges ip saddr @subnets oifname != @bridges counter masquerade '
                             'comment "egress: containers leave with the host\'s address"'))
    # The same for IPv6 (NAT66, as Docker's default gateway mode: the subnet is private).
    r.append(("postrouting", 'iifname @bridges ip6 saddr @subnets6 oifname != @bridges counter masquerade '
                             'comment "IPv6 egress: containers leave with the host\'s address"'))
    # "From 127.0.0.0/8 into a bridge: masquerade", so a container can answer a
    # `curl 127.0.0.1:8080` on the host (with route_localnet=1 on the bridge).
    r.append(("postrouting", 'oifname @bridges ip saddr 127.0.0.0/8 counter masquerade '
                             'comment "published port reached via 127.0.0.1"'))
    # "From a container, DNAT'd back into a bridge: masquerade" (hairpin): the answer must
    # come back through the host, which undoes the DNAT, not straight from the server.
    r.append(("postrouting", 'oifname @bridges ip saddr @subnets ct status dnat counter masquerade '
                             'comment "hairpin: a container reaching a published port"'))
    r.append(("postrouting", 'oifname @bridges ip6 saddr @subnets6 ct status dnat counter masquerade '
                             'comment "hairpin over IPv6"'))
    # "Replies into a bridge are let through."
    r.append(("forward", 'oifname @bridges ct state established,related counter accept comment "replies"'))
    # "Container to container on the same bridge: accept."
    r.append(("forward", 'iifname . oifname @icc counter accept comment "same network"'))
    # "Nothing leaves or enters an --internal network."
    r.append(("forward", 'iifname @internal counter drop comment "internal network: no egress"'))
    r.append(("forward", 'oifname @internal counter drop comment "internal network: no ingress"'))
    # "New connections into a bridge are accepted only when DNAT made them (a published port)."
    r.append(("forward", 'oifname @bridges ct status dnat counter accept comment "published ports"'))
    # "One minibox network to another: drop." (networks are isolated)
    r.append(("forward", 'iifname @bridges oifname @bridges counter drop comment "between networks"'))
    # "Out of a bridge to the world: accept."
    r.append(("forward", 'iifname @bridges counter accept comment "egress"'))
    # "Anything else into a bridge (say, a routed packet for a container address): drop."
    r.append(("forward", 'oifname @bridges counter drop comment "no direct access to containers"'))
    # "From a bridge to 127.0.0.0/8, unless conntrack made it so (the reply to a published
    # port reached via 127.0.0.1): drop." route_localnet=1 on the bridge, needed for that
    # path, would otherwise let a container with CAP_NET_RAW send a frame to 127.0.0.1 and
    # reach services bound only to the host's loopback (the CVE-2020-8558 pattern).
    r.append(("input", 'iifname @bridges ip daddr 127.0.0.0/8 ct status ! dnat counter drop '
                       'comment "containers may not reach the host\'s 127.0.0.1"'))
    return r


def nft_base() -> list[str]:
    """Idempotent: declares the table, sets, maps and chains, then rewrites the chains' rules.

    `add` of an existing table/set/chain is a no-op and elements survive; each chain is
    flushed and refilled in the same transaction, so no packet ever sees it half-built.
    """
    out = [f"add table inet {TABLE}"]
    for kind, name, typ, extra, comment in NFT_SETS:
        out.append(f'add {kind} inet {TABLE} {name} {{ type {typ}; {extra + " " if extra else ""}comment "{comment}"; }}')
    for name, hook in NFT_CHAINS:
        out.append(f"add chain inet {TABLE} {name}" + (f" {{ {hook} }}" if hook else ""))
    for name, _ in NFT_CHAINS:
        out.append(f"flush chain inet {TABLE} {name}")
    for chain, rule in nft_rules():
        out.append(f"add rule inet {TABLE} {chain} {rule}")
    return out


def nft_network_elements(net: NetFacts) -> list[tuple[str, str]]:
    """(set, element) pairs that make `net` known to the fixed rules."""
    return [(s, f'{k} comment "{net.tag}"') for s, k in nft_network_keys(net)]


def nft_port_keys(p: PortFacts) -> list[tuple[str, str, str]]:
    """(map, key, container address) of each element a published port needs: on every
    address, an IPv4 one and (dual stack) an IPv6 one; on [::], the IPv6 one alone."""
    if p.host_ip == "::":
        return [("hostport-any6", f"{p.proto} . {p.host_port}", p.ctr_ip6)]
    if ":" in p.host_ip:
        return [("hostport-addr6", f"{p.host_ip} . {p.proto} . {p.host_port}", p.ctr_ip6)]
    if p.host_ip:
        return [("hostport-addr", f"{p.host_ip} . {p.proto} . {p.host_port}", p.ctr_ip)]
    both = [("hostport-any", f"{p.proto} . {p.host_port}", p.ctr_ip)]
    return both + ([("hostport-any6", f"{p.proto} . {p.host_port}", p.ctr_ip6)] if p.ctr_ip6 else [])


def nft_port_elements(p: PortFacts) -> list[tuple[str, str]]:
    return [(m, f'{key} comment "{p.tag}" : {ip} . {p.ctr_port}') for m, key, ip in nft_port_keys(p)]


def nft_add_elements(elements: list[tuple[str, str]]) -> list[str]:
    return [f"add element inet {TABLE} {s} {{ {e} }}" for s, e in elements]


def nft_delete_elements(keys: list[tuple[str, str]]) -> list[str]:
    return [f"delete element inet {TABLE} {s} {{ {k} }}" for s, k in keys]


def nft_network_keys(net: NetFacts) -> list[tuple[str, str]]:
    br = f'"{net.bridge}"'
    keys = [("bridges", br), ("subnets", net.subnet), ("icc", f"{br} . {br}")]
    if net.subnet6:
        keys.append(("subnets6", net.subnet6))
    if net.internal:
        keys.append(("internal", br))
    return keys


def nft_apply(nets: list[NetFacts], ports: list[PortFacts]) -> list[str]:
    """Base, plus elements for these networks and ports: what `run` applies."""
    els: list[tuple[str, str]] = []
    for n in nets:
        els += nft_network_elements(n)
    els += [e for p in ports for e in nft_port_elements(p)]
    return nft_base() + nft_add_elements(els)


def nft_rebuild(nets: list[NetFacts], ports: list[PortFacts]) -> list[str]:
    """Everything from scratch (reconcile): delete our table and build it again, atomically."""
    return nft_drop() + nft_apply(nets, ports)


def nft_drop() -> list[str]:
    """Delete minibox's table, and the `ip minibox` one of versions before IPv6 came
    (`add` first: nft 1.0.6 has no `destroy`, and deleting a missing table fails)."""
    return [f"add table ip {TABLE}", f"delete table ip {TABLE}", f"add table inet {TABLE}",
            f"delete table inet {TABLE}"]
