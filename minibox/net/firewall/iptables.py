"""The iptables backend: our own chains, rewritten whole in one iptables-restore, and reading iptables' tables.

`iptables-restore --noflush` leaves every chain alone except those it declares; declaring
ours (`:MINIBOX - [0:0]`) empties them, and the rules that follow refill them, all in one
atomic commit per table. The jumps from the built-in chains are inserted only when
missing (another tool may have flushed them; Docker re-inserts its own at the top).
"""

from __future__ import annotations

from typing import Sequence

from minibox.net.firewall.base import FirewallError, run_tool
from minibox.plan import rules
from minibox.plan.steps import Firewall

NAME = "iptables"


def saved(table: str) -> list[str]:
    """iptables-save of one table; empty when that table does not exist (listing it
    through iptables-nft does not create it)."""
    return run_tool(["iptables-save", "-t", table], check=False).stdout.splitlines()


def forward_chain_exists(lines: list[str] | None = None) -> bool:
    return any(line.startswith(":FORWARD ") for line in (saved("filter") if lines is None else lines))


def present_jumps(lines_by_table: dict[str, list[str]]) -> dict[str, list[str]]:
    """Our jumps from built-in chains, as iptables-save prints them, per table."""
    out: dict[str, list[str]] = {}
    for table, lines in lines_by_table.items():
        for line in lines:
            for t, chain, _, target in rules.IPT_JUMPS:
                if t == table and line.startswith(f"-A {chain} ") and line.endswith(f"-j {target}"):
                    out.setdefault(table, []).append(line)
    return out


def missing_jumps(lines_by_table: dict[str, list[str]], targets: tuple[str, ...] | None = None) -> list:
    """Jumps of rules.IPT_JUMPS (only to `targets`, if given) not in the tables read."""
    present = present_jumps(lines_by_table)
    out = []
    for jump in rules.IPT_JUMPS:
        table, chain, _, target = jump
        if table not in lines_by_table or (targets is not None and target not in targets):
            continue
        if not any(line.startswith(f"-A {chain} ") and line.endswith(f"-j {target}")
                   for line in present.get(table, [])):
            out.append(jump)
    return out


def apply(steps: Sequence[Firewall]) -> None:
    for step in steps:
        if step.backend == NAME:
            run_tool(["iptables-restore", "-w", "--noflush"], "\n".join(step.lines) + "\n")


def teardown(full: bool = True) -> list[str]:
    """Remove our jumps and chains entirely (the last network is gone); full=False: only
    MINIBOX-FORWARD and its jump (the nftables backend's accept path). Returns errors."""
    tables = ("nat", "filter") if full else ("filter",)
    lines = {t: saved(t) for t in tables}
    ours = {t: tuple(c for c in rules.IPT_CHAINS[t] if any(line.startswith(f":{c} ") for line in lines[t]))
            for t in tables}
    jumps = present_jumps(lines)
    if not full:
        ours = {"filter": tuple(c for c in ours.get("filter", ()) if c == "MINIBOX-FORWARD")}
        jumps = {"filter": [j for j in jumps.get("filter", []) if j.endswith("-j MINIBOX-FORWARD")]}
    text = rules.ipt_teardown(jumps, ours)
    if text.strip():
        try:
            run_tool(["iptables-restore", "-w", "--noflush"], text)
        except FirewallError as e:
            return [str(e)]
    return []


def owned_elements(tag: str) -> list[tuple[str, str]]:
    """iptables has no elements: a container's rules go when the chains are rewritten."""
    return []


def listing() -> str:
    return "\n".join(line for t in ("nat", "filter") for line in saved(t)
                     if "MINIBOX" in line or line.startswith("*"))
