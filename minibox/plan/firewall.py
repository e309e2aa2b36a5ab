"""Which firewall transaction a change needs: the whole of minibox's rules, or only its own new elements.

minibox keeps its desired firewall state on disk (networks/*.json and the ports/ index),
and remembers the nftables generation id the kernel had right after minibox last wrote
its rules. The kernel bumps that id on every ruleset change, by anyone: `nft flush
ruleset`, Docker starting and setting FORWARD to DROP, a hand-edited rule. So a change is
planned from two facts:

  - in sync (the id is still ours): add or delete exactly this change's elements, in one
    transaction; a run that publishes nothing on an existing network spawns no tool;
  - out of sync: re-assert everything, every network and every published port of every
    live container, with the jumps from the built-in chains, as one transaction per backend.

nftables backend: the accept path is also installed into iptables' filter FORWARD chain
whenever that chain exists, not only when its policy is DROP at that moment, so a Docker
started later (policy DROP) does not cut existing containers off.

Pure: facts in, Firewall steps out (rendered by plan.rules).
"""

from __future__ import annotations

from minibox.plan import iptrules, rules
from minibox.plan.rules import NetFacts, PortFacts
from minibox.plan.steps import Firewall, InPlace, Step
from minibox.value import Value

Jump = tuple[str, str, str, str]


class Desired(Value):
    """Everything minibox should have in one backend."""

    nets: tuple[NetFacts, ...] = ()
    ports: tuple[PortFacts, ...] = ()

    def without(self, owner: str = "", net: str = "") -> Desired:
        return Desired(tuple(n for n in self.nets if n.name != net),
                       tuple(p for p in self.ports if p.owner != owner))

    def with_(self, net: NetFacts | None = None, ports: tuple[PortFacts, ...] = ()) -> Desired:
        nets = self.nets if net is None or any(n.name == net.name for n in self.nets) else self.nets + (net,)
        return Desired(nets, self.ports + tuple(p for p in ports if p not in self.ports))


class FirewallFacts(Value):
    backend: str  # "nftables" or "iptables"
    desired: Desired  # as it is before the change
    in_sync: bool  # the kernel's ruleset generation is the one minibox last left
    missing_jumps: tuple[Jump, ...] = ()  # iptables: jumps from built-in chains not there now
    forward_chain: bool = False  # iptables' filter FORWARD chain exists (nftables backend)
    coexist_missing_jumps: tuple[Jump, ...] = ()  # ...and lacks our jump
    missing_jumps6: tuple[Jump, ...] = ()  # iptables: ip6tables' missing jumps (when an --ipv6 network exists)
    forward_chain6: bool = False  # nftables backend: ip6tables' filter FORWARD chain exists (--ipv6 networks)...
    coexist_missing_jumps6: tuple[Jump, ...] = ()  # ...and lacks our jump


WHY_FULL = ("re-assert all of minibox's rules and elements: the ruleset changed since minibox last wrote it "
            "(a flush, another tool, a reboot), or this is the first")


def resets(backend: str, steps: list[Firewall]) -> tuple[bool, bool]:
    """Which counters applying `steps` to `backend` sets back to zero: (the rules', every
    one). nftables: flushing a chain resets its rules, deleting the table its map elements
    too; iptables-restore: declaring a chain (`:MINIBOX - [0:0]`) resets it, DNAT rules included."""
    lines = [line for s in steps if s.backend == backend for line in s.lines]
    if backend == "iptables":
        every = any(line.startswith(":MINIBOX ") for line in lines)
        return every, every
    return any(line.startswith("flush chain") for line in lines), any(line.startswith("delete table") for line in lines)


def _coexist(ff: FirewallFacts, desired: Desired) -> list[Firewall]:
    if ff.backend != "nftables" or not desired.nets:
        return []
    out = []
    if ff.forward_chain:
        text = iptrules.ipt_restore(iptrules.ipt_desired(list(desired.nets), [], full=False),
                                    list(ff.coexist_missing_jumps), full=False)
        out.append(Firewall("iptables", tuple(text.rstrip("\n").splitlines()),
                            why="iptables' filter FORWARD chain exists (Docker's, perhaps): an nft accept cannot "
                                "overrule a DROP there, now or later, so accept minibox's traffic there too"))
    if ff.forward_chain6 and any(n.subnet6 for n in desired.nets):
        text = iptrules.ipt_restore(iptrules.ipt_desired(list(desired.nets), [], full=False, v6=True),
                                    list(ff.coexist_missing_jumps6), full=False, v6=True)
        out.append(Firewall("ip6tables", tuple(text.rstrip("\n").splitlines()),
                            why="...and ip6tables' FORWARD chain exists too: the same accepts for the IPv6 subnets"))
    return out


def full(ff: FirewallFacts, desired: Desired) -> list[Firewall]:
    """Everything in `desired`, from scratch, as one transaction per backend."""
    if ff.backend == "iptables":
        if not desired.nets:
            return []
        nets, ports = list(desired.nets), list(desired.ports)
        text = iptrules.ipt_restore(iptrules.ipt_desired(nets, ports), list(ff.missing_jumps))
        out = [Firewall("iptables", tuple(text.rstrip("\n").splitlines()),
                        why="rewrite minibox's iptables chains from its state (iptables-restore --noflush)")]
        if any(n.subnet6 for n in nets):
            text = iptrules.ipt_restore(iptrules.ipt_desired(nets, ports, v6=True), list(ff.missing_jumps6), v6=True)
            out.append(Firewall("ip6tables", tuple(text.rstrip("\n").splitlines()),
                                why="...and the same for IPv6 (--ipv6 networks), in ip6tables"))
        return out
    if not desired.nets:
        return [Firewall("nftables", tuple(rules.nft_drop()),
                         why="no minibox network is left: delete minibox's table")]
    lines = rules.nft_rebuild(list(desired.nets), list(desired.ports))
    return [Firewall("nftables", tuple(lines), why=WHY_FULL)] + _coexist(ff, desired)


def add_network(ff: FirewallFacts, net: NetFacts) -> list[Firewall]:
    """A new network (ff.desired does not hold it yet)."""
    after = ff.desired.with_(net)
    if not ff.in_sync or ff.backend == "iptables":
        return full(ff, after)
    # The table's base (declared on first use, idempotent) and this network's elements.
    return [Firewall("nftables", tuple(rules.nft_apply([net], [])),
                     why="minibox's nft table, its fixed rules, and this network's elements, in one atomic "
                         "transaction")] + _coexist(ff, after)


def in_place(ff: FirewallFacts, net: NetFacts) -> list[Step]:
    """The rules a container on `net` relies on that the network's creation made (MASQUERADE,
    the forward rules, its set elements): for the lesson, not applied."""
    if ff.backend == "nftables":
        lines = [x for x in rules.nft_apply([net], []) if x.startswith(("add rule", "add element"))]
    else:
        lines = [r.line() for r in iptrules.ipt_network_rules(net, True)]
        lines += [r.line() for r in iptrules.ipt_network_rules(net, True, v6=True)] if net.subnet6 else []
    return [InPlace(ff.backend, tuple(lines), why=f"network {net.name}'s firewall rules, which this container's "
                                                  "traffic goes through")]


def add(ff: FirewallFacts, net: NetFacts, ports: tuple[PortFacts, ...]) -> list[Firewall]:
    """A container on `net` (which exists) publishing `ports`."""
    if not ff.in_sync:
        return full(ff, ff.desired.with_(net, ports))
    if not ports:
        return []  # nothing changes: no tool is spawned
    if ff.backend == "iptables":
        return full(ff, ff.desired.with_(net, ports))
    elements = rules.nft_add_elements([e for p in ports for e in rules.nft_port_elements(p)])
    return [Firewall("nftables", tuple(elements), why="this container's published ports: elements of the DNAT maps")]


def reassert(ff: FirewallFacts) -> list[Firewall]:
    """Everything minibox's state holds, whatever the kernel has now (`network reconcile`)."""
    return full(ff, ff.desired)


def remove_ports(ff: FirewallFacts, ports: tuple[PortFacts, ...]) -> list[Firewall]:
    """A container's published ports go (ff.desired still holds them)."""
    owners = {p.owner for p in ports}
    after = Desired(ff.desired.nets, tuple(p for p in ff.desired.ports if p.owner not in owners))
    if not ff.in_sync:
        return full(ff, after)
    if not ports:
        return []
    if ff.backend == "iptables":
        return full(ff, after)
    keys = [(m, key) for p in ports for m, key, _ in rules.nft_port_keys(p)]
    whose = "this container's" if len(owners) == 1 else f"these {len(owners)} containers'"
    return [Firewall("nftables", tuple(rules.nft_delete_elements(keys)),
                     why=f"delete {whose} published-port elements")]


def remove_elements(ff: FirewallFacts, keys: tuple[tuple[str, str], ...], owner: str) -> list[Firewall]:
    """Elements found by their owner's tag (its record is lost): delete them, or re-assert."""
    if not ff.in_sync or ff.backend == "iptables":  # iptables: rewriting the chains drops its rules
        return full(ff, ff.desired.without(owner=owner))
    if not keys:
        return []
    return [Firewall("nftables", tuple(rules.nft_delete_elements(list(keys))),
                     why="published-port elements of a container whose record is gone")]


def remove_network(ff: FirewallFacts, net: NetFacts) -> list[Firewall]:
    """A network goes (ff.desired still holds it). When it was the backend's last, the
    caller also takes minibox's chains and jumps out of iptables (that needs the kernel's
    view of which jumps are there: net.firewall.coexist)."""
    after = ff.desired.without(net=net.name)
    if not ff.in_sync or ff.backend == "iptables" or not after.nets:
        return full(ff, after)
    keys = rules.nft_network_keys(net)
    return [Firewall("nftables", tuple(rules.nft_delete_elements(keys)),
                     why="forget this network's bridge and subnet")] + _coexist(ff, after)
