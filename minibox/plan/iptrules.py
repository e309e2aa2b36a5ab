"""The firewall for the iptables backend: Docker-like chains, one rule per network fact and per port, for iptables and ip6tables.

Our own chains are named like Docker's (MINIBOX, MINIBOX-POSTROUTING, MINIBOX-FORWARD,
MINIBOX-ISOLATION-1/2), jumped to from the built-in chains, so `iptables -t nat -S`
reads like Docker's. An --ipv6 network gets the same rules in ip6tables (`v6`).

Pure: no I/O here. The text returned is what is applied *and* what `--explain` prints.
"""

from __future__ import annotations

from minibox.plan.rules import NetFacts, PortFacts
from minibox.value import Value




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
    # "Packets from outside for a local address (not 127/8, see plan.rules.nft_rules): published ports."
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
# ip6tables: the same, but no 127.0.0.0/8 guard, and ::1 left out (IPv6 cannot route a
# packet from ::1 out of the host: published ports do not answer on [::1]).
IPT_JUMPS6 = (
    ("nat", "PREROUTING", "! -d ::1/128 -m addrtype --dst-type LOCAL", "MINIBOX"),
    ("nat", "OUTPUT", "! -d ::1/128 -m addrtype --dst-type LOCAL", "MINIBOX"),
    ("nat", "POSTROUTING", "", "MINIBOX-POSTROUTING"),
    ("filter", "FORWARD", "", "MINIBOX-FORWARD"),
)
JUMP_COMMENT = "minibox"


def jumps_of(v6: bool) -> tuple[tuple[str, str, str, str], ...]:
    return IPT_JUMPS6 if v6 else IPT_JUMPS


def chains_of(table: str, v6: bool) -> tuple[str, ...]:
    return tuple(c for c in IPT_CHAINS[table] if not (v6 and c == "MINIBOX-INPUT"))


def jump_rule(jump: tuple[str, str, str, str]) -> IptRule:
    table, chain, match, target = jump
    return IptRule(table, chain, match, target, JUMP_COMMENT)


def ipt_base_rules() -> list[IptRule]:
    # "Before anything else: is this packet crossing between two minibox networks?"
    return [IptRule("filter", "MINIBOX-FORWARD", "", "MINIBOX-ISOLATION-1", "minibox base")]


def ipt_network_rules(net: NetFacts, full: bool = True, v6: bool = False) -> list[IptRule]:
    """Rules of one network (`v6`: its ip6tables rules). full=False gives only the accepts,
    which is what the nftables backend needs in iptables' FORWARD when its policy is DROP
    (an nft accept cannot overrule a drop in another table's base chain)."""
    br, sub, tag = net.bridge, net.subnet6 if v6 else net.subnet, net.tag
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
    if full and not v6:
        # "From this bridge to 127.0.0.0/8, unless conntrack DNAT'd it: drop" (see plan.rules.nft_rules).
        r.append(IptRule("filter", "MINIBOX-INPUT", f"-i {br} -d 127.0.0.0/8 -m conntrack ! --ctstate DNAT",
                         "DROP", tag))
    if full and not net.internal:
        # "From this subnet, leaving through another interface: MASQUERADE (egress)."
        r.append(IptRule("nat", "MINIBOX-POSTROUTING", f"-s {sub} ! -o {br}", "MASQUERADE", tag))
        if not v6:
            # "From 127.0.0.0/8 into the bridge: MASQUERADE (curl 127.0.0.1:PORT on the host)."
            r.append(IptRule("nat", "MINIBOX-POSTROUTING", f"-s 127.0.0.0/8 -o {br}", "MASQUERADE", tag))
        # "From this subnet, DNAT'd back into the bridge: MASQUERADE (hairpin)."
        r.append(IptRule("nat", "MINIBOX-POSTROUTING", f"-s {sub} -o {br} -m conntrack --ctstate DNAT",
                         "MASQUERADE", tag))
    return r


def ipt_port_rules(p: PortFacts, v6: bool = False) -> list[IptRule]:
    # "To HOST_IP (or any local address), proto, port HOST_PORT: DNAT to CONTAINER:PORT."
    if v6:  # a port on every address of a dual-stack container, on [::], or on one IPv6 address
        if not (p.host_ip == "::" or (not p.host_ip and p.ctr_ip6) or ":" in p.host_ip):
            return []
        dst = f"-d {p.host_ip}/128 " if p.host_ip not in ("", "::") else ""
        to = f"[{p.ctr_ip6}]:{p.ctr_port}"
    else:
        if ":" in p.host_ip:
            return []
        dst = f"-d {p.host_ip}/32 " if p.host_ip else ""
        to = f"{p.ctr_ip}:{p.ctr_port}"
    return [IptRule("nat", "MINIBOX", f"{dst}-p {p.proto} -m {p.proto} --dport {p.host_port}",
                    f"DNAT --to-destination {to}", p.tag)]


def ipt_desired(nets: list[NetFacts], ports: list[PortFacts], full: bool = True, v6: bool = False) -> list[IptRule]:
    """Every rule of `nets` and `ports`; `v6`: the ip6tables ones, of the --ipv6 networks."""
    rules = ipt_base_rules() if full else []
    for n in nets:
        if n.subnet6 or not v6:
            rules += ipt_network_rules(n, full, v6)
    if full:
        for p in ports:
            rules += ipt_port_rules(p, v6)
    return rules


def ipt_restore(rules: list[IptRule], missing_jumps: list[tuple[str, str, str, str]], full: bool = True,
                v6: bool = False) -> str:
    """iptables-restore --noflush input: declaring our chains (`:NAME - [0:0]`) empties
    them, so they are rewritten whole from the model; the built-in chains are only touched
    to insert a jump that is missing."""
    out = []
    for table in ("nat", "filter"):
        chains = chains_of(table, v6) if full else (("MINIBOX-FORWARD",) if table == "filter" else ())
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
