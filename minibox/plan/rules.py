"""The firewall as data: one model of networks and published ports, rendered for nftables or iptables.

The model is two kinds of plain facts: a bridge network (NetFacts) and a published port
(PortFacts). The renderers turn them into the exact text the backends apply:

- nftables: one table, `ip minibox`, whose rules never change; networks and ports are
  elements of its sets and maps. Publishing a port adds one map element, so the rule path
  a packet walks does not grow with the number of containers, and each element keeps its
  own packet counter.
- iptables: chains of our own named like Docker's (MINIBOX, MINIBOX-POSTROUTING,
  MINIBOX-FORWARD, MINIBOX-ISOLATION-1/2), jumped to from the built-in chains, one rule
  per network fact and per port, so `iptables -t nat -S` reads like Docker's.

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
    # "A packet from a process on this host for one of its own addresses, 127.0.0.1
    # included, goes to the published-port lookup." (Docker leaves 127/8 to its proxy.)
    r.append(("output", 'fib daddr type local counter jump hostports '
                        'comment "published ports, reached from this host"'))
    # "Destination address . protocol . port found in hostport-addr: rewrite the destination
    # to the container address and port it maps to." (-p 127.0.0.1:8080:80)
    r.append(("hostports", 'dnat ip to ip daddr . meta l4proto . th dport map @hostport-addr '
                           'comment "DNAT: -p IP:HOST:CTR"'))
    # "Protocol . port found in hostport-any: the same, whatever host address was asked."
    r.append(("hostports", 'dnat ip to meta l4proto . th dport map @hostport-any '
                           'comment "DNAT: -p HOST:CTR"'))
    # "From a container, leaving through anything but a minibox bridge: replace the source
    # with the outgoing interface's address." (egress MASQUERADE)
    r.append(("postrouting", 'iifname @bridges ip saddr @subnets oifname != @bridges counter masquerade '
                             'comment "egress: containers leave with the host\'s address"'))
    # "From 127.0.0.0/8 into a bridge: masquerade", so a container can answer a
    # `curl 127.0.0.1:8080` on the host (with route_localnet=1 on the bridge).
    r.append(("postrouting", 'oifname @bridges ip saddr 127.0.0.0/8 counter masquerade '
                             'comment "published port reached via 127.0.0.1"'))
    # "From a container, DNAT'd back into a bridge: masquerade" (hairpin): the answer must
    # come back through the host, which undoes the DNAT, not straight from the server.
    r.append(("postrouting", 'oifname @bridges ip saddr @subnets ct status dnat counter masquerade '
                             'comment "hairpin: a container reaching a published port"'))
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
    out = [f"add table ip {TABLE}"]
    for kind, name, typ, extra, comment in NFT_SETS:
        out.append(f'add {kind} ip {TABLE} {name} {{ type {typ}; {extra + " " if extra else ""}comment "{comment}"; }}')
    for name, hook in NFT_CHAINS:
        out.append(f"add chain ip {TABLE} {name}" + (f" {{ {hook} }}" if hook else ""))
    for name, _ in NFT_CHAINS:
        out.append(f"flush chain ip {TABLE} {name}")
    for chain, rule in nft_rules():
        out.append(f"add rule ip {TABLE} {chain} {rule}")
    return out


def nft_network_elements(net: NetFacts) -> list[tuple[str, str]]:
    """(set, element) pairs that make `net` known to the fixed rules."""
    br = f'"{net.bridge}"'
    els = [("bridges", f'{br} comment "{net.tag}"'),
           ("subnets", f'{net.subnet} comment "{net.tag}"'),
           ("icc", f'{br} . {br} comment "{net.tag}"')]
    if net.internal:
        els.append(("internal", f'{br} comment "{net.tag}"'))
    return els


def nft_port_key(p: PortFacts) -> tuple[str, str]:
    """(map, key) of a published port."""
    if p.host_ip:
        return "hostport-addr", f"{p.host_ip} . {p.proto} . {p.host_port}"
    return "hostport-any", f"{p.proto} . {p.host_port}"


def nft_port_element(p: PortFacts) -> tuple[str, str]:
    m, key = nft_port_key(p)
    return m, f'{key} comment "{p.tag}" : {p.ctr_ip} . {p.ctr_port}'


def nft_add_elements(elements: list[tuple[str, str]]) -> list[str]:
    return [f"add element ip {TABLE} {s} {{ {e} }}" for s, e in elements]


def nft_delete_elements(keys: list[tuple[str, str]]) -> list[str]:
    return [f"delete element ip {TABLE} {s} {{ {k} }}" for s, k in keys]


def nft_network_keys(net: NetFacts) -> list[tuple[str, str]]:
    br = f'"{net.bridge}"'
    keys = [("bridges", br), ("subnets", net.subnet), ("icc", f"{br} . {br}")]
    if net.internal:
        keys.append(("internal", br))
    return keys


def nft_apply(nets: list[NetFacts], ports: list[PortFacts]) -> list[str]:
    """Base, plus elements for these networks and ports: what `run` applies."""
    els: list[tuple[str, str]] = []
    for n in nets:
        els += nft_network_elements(n)
    els += [nft_port_element(p) for p in ports]
    return nft_base() + nft_add_elements(els)


def nft_rebuild(nets: list[NetFacts], ports: list[PortFacts]) -> list[str]:
    """Everything from scratch (reconcile): delete our table and build it again, atomically."""
    return [f"add table ip {TABLE}", f"delete table ip {TABLE}"] + nft_apply(nets, ports)


# --- iptables -------------------------------------------------------------------------------


class IptRule(Value):
    table: str  # "nat" | "filter"
    chain: str
    match: str  # e.g. "-o minibox0 -m conntrack --ctstate DNAT"
    target: str  # e.g. "ACCEPT", "DNAT --to-destination 10.222.0.2:80"
    comment: str

    def line(self, op: str = "-A", position: int = 0) -> str:
        where = f"{op} {self.chain}" + (f" {position}" if position else "")
        match = f"{self.match} " if self.match else ""
        return f'{where} {match}-m comment --comment "{self.comment}" -j {self.target}'


IPT_CHAINS = {"nat": ("MINIBOX", "MINIBOX-POSTROUTING"),
              "filter": ("MINIBOX-FORWARD", "MINIBOX-ISOLATION-1", "MINIBOX-ISOLATION-2", "MINIBOX-INPUT")}

# Jumps from the built-in chains into ours, inserted first so no other tool's rule (or a
# FORWARD policy of DROP, as Docker leaves it) decides before we do: (table, chain, spec).
IPT_JUMPS = (
    # "Packets from outside for a local address (not 127/8, see nft_rules): published ports."
    ("nat", "PREROUTING", "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL", "MINIBOX"),
    # "Packets from this host for a local address, 127.0.0.1 included: published ports."
    ("nat", "OUTPUT", "-m addrtype --dst-type LOCAL", "MINIBOX"),
    # "Every packet about to leave: our masquerade rules."
    ("nat", "POSTROUTING", "", "MINIBOX-POSTROUTING"),
    # "Every forwarded packet: our accepts and drops, before anyone's policy."
    ("filter", "FORWARD", "", "MINIBOX-FORWARD"),
    # "Every packet for this host: the 127.0.0.0/8 guard."
    ("filter", "INPUT", "", "MINIBOX-INPUT"),
)
JUMP_COMMENT = "minibox"


def jump_rule(jump: tuple[str, str, str, str]) -> IptRule:
    table, chain, match, target = jump
    return IptRule(table, chain, match, target, JUMP_COMMENT)


def ipt_base_rules() -> list[IptRule]:
    # "Before anything else: is this packet crossing between two minibox networks?"
    return [IptRule("filter", "MINIBOX-FORWARD", "", "MINIBOX-ISOLATION-1", "minibox base")]


def ipt_network_rules(net: NetFacts, full: bool = True) -> list[IptRule]:
    """Rules of one network. full=False gives only the accepts, which is what the nftables
    backend needs in iptables' FORWARD when its policy is DROP (an nft accept cannot
    overrule a drop in another table's base chain)."""
    br, sub, tag = net.bridge, net.subnet, net.tag
    r: list[IptRule] = []
    if full:
        # "Leaving this bridge for another interface: on to stage 2" / "stage 2: into this
        # bridge from another minibox bridge: drop" (Docker's two-stage isolation).
        r.append(IptRule("filter", "MINIBOX-ISOLATION-1", f"-i {br} ! -o {br}", "MINIBOX-ISOLATION-2", tag))
        r.append(IptRule("filter", "MINIBOX-ISOLATION-2", f"-o {br}", "DROP", tag))
    # "Replies into the bridge: accept."
    r.append(IptRule("filter", "MINIBOX-FORWARD", f"-o {br} -m conntrack --ctstate RELATED,ESTABLISHED", "ACCEPT", tag))
    # "Container to container on the same bridge: accept."
    r.append(IptRule("filter", "MINIBOX-FORWARD", f"-i {br} -o {br}", "ACCEPT", tag))
    if net.internal:
        if full:
            # "Internal network: nothing in, nothing out."
            r.append(IptRule("filter", "MINIBOX-FORWARD", f"-i {br}", "DROP", tag))
            r.append(IptRule("filter", "MINIBOX-FORWARD", f"-o {br}", "DROP", tag))
    else:
        # "New connections into the bridge that DNAT made (published ports): accept."
        r.append(IptRule("filter", "MINIBOX-FORWARD", f"-o {br} -m conntrack --ctstate DNAT", "ACCEPT", tag))
        # "Out of the bridge to the world: accept."
        r.append(IptRule("filter", "MINIBOX-FORWARD", f"-i {br}", "ACCEPT", tag))
        if full:
            # "Anything else into the bridge: drop (no direct access to containers)."
            r.append(IptRule("filter", "MINIBOX-FORWARD", f"-o {br}", "DROP", tag))
    if full:
        # "From this bridge to 127.0.0.0/8, unless conntrack DNAT'd it: drop" (see nft_rules).
        r.append(IptRule("filter", "MINIBOX-INPUT", f"-i {br} -d 127.0.0.0/8 -m conntrack ! --ctstate DNAT",
                         "DROP", tag))
    if full and not net.internal:
        # "From this subnet, leaving through another interface: MASQUERADE (egress)."
        r.append(IptRule("nat", "MINIBOX-POSTROUTING", f"-s {sub} ! -o {br}", "MASQUERADE", tag))
        # "From 127.0.0.0/8 into the bridge: MASQUERADE (curl 127.0.0.1:PORT on the host)."
        r.append(IptRule("nat", "MINIBOX-POSTROUTING", f"-s 127.0.0.0/8 -o {br}", "MASQUERADE", tag))
        # "From this subnet, DNAT'd back into the bridge: MASQUERADE (hairpin)."
        r.append(IptRule("nat", "MINIBOX-POSTROUTING", f"-s {sub} -o {br} -m conntrack --ctstate DNAT",
                         "MASQUERADE", tag))
    return r


def ipt_port_rules(p: PortFacts) -> list[IptRule]:
    # "To HOST_IP (or any local address), proto, port HOST_PORT: DNAT to CONTAINER:PORT."
    dst = f"-d {p.host_ip}/32 " if p.host_ip else ""
    return [IptRule("nat", "MINIBOX", f"{dst}-p {p.proto} -m {p.proto} --dport {p.host_port}",
                    f"DNAT --to-destination {p.ctr_ip}:{p.ctr_port}", p.tag)]


def ipt_desired(nets: list[NetFacts], ports: list[PortFacts], full: bool = True) -> list[IptRule]:
    rules = ipt_base_rules() if full else []
    for n in nets:
        rules += ipt_network_rules(n, full)
    if full:
        for p in ports:
            rules += ipt_port_rules(p)
    return rules


def ipt_restore(rules: list[IptRule], missing_jumps: list[tuple[str, str, str, str]], full: bool = True) -> str:
    """iptables-restore --noflush input: declaring our chains (`:NAME - [0:0]`) empties
    them, so they are rewritten whole from the model; the built-in chains are only touched
    to insert a jump that is missing."""
    out = []
    for table in ("nat", "filter"):
        chains = IPT_CHAINS[table] if full else (("MINIBOX-FORWARD",) if table == "filter" else ())
        jumps = [j for j in missing_jumps if j[0] == table]
        body = [r.line() for r in rules if r.table == table]
        if not chains and not jumps:
            continue
        out.append(f"*{table}")
        out += [f":{c} - [0:0]" for c in chains]
        out += [jump_rule(j).line("-I", 1) for j in jumps]
        out += body
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def ipt_teardown(saved_jump_lines: dict[str, list[str]], chains: dict[str, tuple[str, ...]]) -> str:
    """Remove everything of ours: the jumps (as iptables-save printed them, -A turned into
    -D), then our chains, emptied first."""
    out = []
    for table in ("nat", "filter"):
        ours = chains.get(table, ())
        jumps = saved_jump_lines.get(table, [])
        if not ours and not jumps:
            continue
        out.append(f"*{table}")
        out += ["-D" + line[2:] for line in jumps]
        out += [f"-F {c}" for c in ours]
        out += [f"-X {c}" for c in ours]
        out.append("COMMIT")
    return "\n".join(out) + "\n"
