"""What outside minibox drops its forwarded traffic: a DROP above its jump in iptables' FORWARD, another nftables forward chain whose policy is drop.

Every base chain on the forward hook must accept a packet for it to pass: an accept in
minibox's own table (or MINIBOX-FORWARD) cannot overrule a drop elsewhere. Two shapes of
it are common and invisible in minibox's own rules: a rule like `iptables -I FORWARD -j
DROP` placed above minibox's jump, and a firewall manager's table (firewalld's, ufw's
nftables setups) with a forward chain of `policy drop`. iptables' own FORWARD policy is
the doctor's FORWARD policy check. Reads only; each blocker comes with the commands that
would let minibox's traffic through, for a person to decide on.
"""

from __future__ import annotations

import json

from minibox.net.firewall.base import run_tool
from minibox.value import Value

JUMP = "-j MINIBOX-FORWARD"


class Blocker(Value):
    where: str  # "iptables FORWARD" or "nft inet firewalld filter_FORWARD"
    what: str  # the rule, or the chain's policy
    fix: tuple[str, ...]  # commands that let minibox's traffic through


def iptables_blockers(filter_lines: list[str]) -> list[Blocker]:
    """DROP or REJECT rules in iptables' FORWARD above minibox's jump (all of them, if the
    jump is missing: the FORWARD policy check names that)."""
    rules = [line for line in filter_lines if line.startswith("-A FORWARD ")]
    above = rules[:next((i for i, r in enumerate(rules) if r.endswith(JUMP)), len(rules))]
    move = ("iptables -D FORWARD -m comment --comment minibox -j MINIBOX-FORWARD",
            "iptables -I FORWARD 1 -m comment --comment minibox -j MINIBOX-FORWARD")
    return [Blocker("iptables FORWARD", r, move) for r in above
            if r.endswith(("-j DROP", "-j REJECT")) or " -j REJECT " in r]


def nft_blockers(chains: list[dict], bridges: list[str]) -> list[Blocker]:
    """Forward-hook chains of other nftables tables with policy drop (iptables-nft's own
    `filter` tables excepted: that is iptables' FORWARD policy)."""
    out = []
    for c in chains:
        ours = c.get("table") == "minibox" or (c.get("family") in ("ip", "ip6") and c.get("table") == "filter")
        if c.get("hook") != "forward" or c.get("policy") != "drop" or ours:
            continue
        at = f"{c.get('family')} {c.get('table')} {c.get('name')}"
        fix = tuple(f'nft insert rule {at} {side}name "{br}" accept' for br in bridges for side in ("iif", "oif"))
        out.append(Blocker(f"nft {at}", "policy drop", fix))
    return out


def find(bridges: list[str]) -> list[Blocker]:
    """Every blocker on this host, for minibox's `bridges`."""
    from minibox.net.firewall import iptables

    found = iptables_blockers(iptables.saved("filter"))
    res = run_tool(["nft", "-j", "list", "chains"], check=False)
    if res.returncode == 0:
        chains = [o["chain"] for o in json.loads(res.stdout).get("nftables", []) if "chain" in o]
        found += nft_blockers(chains, bridges)
    return found
