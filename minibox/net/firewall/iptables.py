"""The iptables backend: our own chains, rewritten whole from the snapshot in one iptables-restore.

`iptables-restore --noflush` leaves every chain alone except those it declares; declaring
ours (`:MINIBOX - [0:0]`) empties them, and the rules that follow refill them, all in one
atomic commit per table. The jumps from the built-in chains are inserted only when
missing (another tool may have flushed them; Docker re-inserts its own at the top).

This module also serves the nftables backend on hosts where iptables' FORWARD policy is
DROP (Docker leaves it so): an accept in our nft table cannot overrule a drop in another
table's base chain, so those hosts also get MINIBOX-FORWARD with the accepts only.
"""

from __future__ import annotations

from minibox.net.firewall.base import FirewallError, Snapshot, run_tool
from minibox.plan import rules
from minibox.plan.rules import NetFacts, PortFacts
from minibox.plan.steps import Firewall, Step

NAME = "iptables"


def saved(table: str) -> list[str]:
    """iptables-save of one table; empty when that table does not exist (listing it
    through iptables-nft does not create it)."""
    return run_tool(["iptables-save", "-t", table], check=False).stdout.splitlines()


def forward_policy_drops() -> bool:
    """True when iptables' filter FORWARD chain has policy DROP (Docker's doing)."""
    return any(line.startswith(":FORWARD DROP") for line in saved("filter"))


def _present_jumps(lines_by_table: dict[str, list[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for table, lines in lines_by_table.items():
        for line in lines:
            for t, chain, _, target in rules.IPT_JUMPS:
                if t == table and line.startswith(f"-A {chain} ") and line.endswith(f"-j {target}"):
                    out.setdefault(table, []).append(line)
    return out


def _missing_jumps(full: bool) -> list[tuple[str, str, str, str]]:
    tables = ("nat", "filter") if full else ("filter",)
    present = _present_jumps({t: saved(t) for t in tables})
    missing = []
    for jump in rules.IPT_JUMPS:
        table, chain, _, target = jump
        if table not in tables or (not full and target != "MINIBOX-FORWARD"):
            continue
        if not any(line.startswith(f"-A {chain} ") for line in present.get(table, [])):
            missing.append(jump)
    return missing


def converge_steps(snap: Snapshot, full: bool = True) -> list[Step]:
    desired = rules.ipt_desired(list(snap.nets), list(snap.ports), full)
    text = rules.ipt_restore(desired, _missing_jumps(full), full)
    return [Firewall("iptables", tuple(text.rstrip("\n").splitlines()),
                     why="rewrite minibox's iptables chains from its state (iptables-restore --noflush)")]


def apply(steps: list[Step]) -> None:
    for step in steps:
        if isinstance(step, Firewall) and step.backend == "iptables":
            run_tool(["iptables-restore", "-w", "--noflush"], "\n".join(step.lines) + "\n")


def teardown(full: bool = True) -> list[str]:
    """Remove our jumps and chains entirely (the last network is gone)."""
    tables = ("nat", "filter") if full else ("filter",)
    lines = {t: saved(t) for t in tables}
    ours = {t: tuple(c for c in rules.IPT_CHAINS[t] if any(line.startswith(f":{c} ") for line in lines[t]))
            for t in tables}
    if not full:
        ours = {"filter": tuple(c for c in ours.get("filter", ()) if c == "MINIBOX-FORWARD")}
    text = rules.ipt_teardown(_present_jumps(lines), ours)
    if text.strip():
        try:
            run_tool(["iptables-restore", "-w", "--noflush"], text)
        except FirewallError as e:
            return [str(e)]
    return []


def up(snap: Snapshot, net: NetFacts, ports: list[PortFacts]) -> list[Step]:
    steps = converge_steps(snap)
    apply(steps)
    return steps


def down(snap: Snapshot, ports: list[PortFacts]) -> tuple[list[Step], list[str]]:
    try:
        steps = converge_steps(snap)
        apply(steps)
    except FirewallError as e:
        return [], [str(e)]
    return steps, []


def net_down(snap: Snapshot, net: NetFacts) -> tuple[list[Step], list[str]]:
    if not snap.nets:
        return [], teardown()
    return down(snap, [])


def rebuild(snap: Snapshot) -> list[Step]:
    if not snap.nets:
        teardown()
        return []
    return up(snap, snap.nets[0], [])


def listing() -> str:
    return "\n".join(line for t in ("nat", "filter") for line in saved(t)
                     if "MINIBOX" in line or line.startswith("*"))
