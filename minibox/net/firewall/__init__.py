"""Firewall backends (nftables, iptables) chosen per network, and the one way minibox changes rules.

`locked(backend)` holds the firewall lock and reads the facts a plan needs (is the ruleset
still as minibox left it? which jumps are there?); plan.firewall decides the transaction
from them, and `apply` applies it, still under the lock, and remembers the ruleset
generation it left: what is applied is what was planned. `change(backend, plan)` is the
three in one. Everything that changes rules (run, rm, network create/rm/reconcile, gc, the
CNI plugin) goes through here.
"""

from __future__ import annotations

import contextlib
from typing import Callable

from minibox import store
from minibox.errors import MiniboxError
from minibox.net.firewall import generation
from minibox.net.firewall.base import Backend, FirewallError  # noqa: F401 - part of this package's interface
from minibox.plan.firewall import Desired, FirewallFacts, resets
from minibox.plan.steps import Firewall

BACKENDS = ("nftables", "iptables")


def backend(name: str) -> Backend:
    """The module implementing backend `name`."""
    if name == "iptables":
        from minibox.net.firewall import iptables

        return iptables
    if name == "nftables":
        from minibox.net.firewall import nftables

        return nftables
    raise MiniboxError(f'unknown firewall backend "{name}": use nftables or iptables')




def desired(name: str, with_ports: bool = True) -> Desired:
    """What minibox's state says backend `name` should hold."""
    from minibox.net import portindex

    from minibox.plan.run import net_facts

    nets = tuple(net_facts(n) for n in store.all_networks() if n.firewall == name)
    ports = tuple(portindex.all_facts({n.name for n in nets})) if with_ports else ()
    return Desired(nets, ports)


def facts(name: str, force_full: bool = False, networks_change: bool = False) -> FirewallFacts:
    """The facts plan.firewall needs; reads ports and iptables only when a full re-assert may
    follow (or, `networks_change`, when iptables' accept path must follow the networks)."""
    in_sync = not force_full and generation.in_sync()
    full = not in_sync or name == "iptables"
    want = desired(name, with_ports=full)
    missing: tuple = ()
    missing6: tuple = ()
    forward, coexist_missing, forward6, coexist_missing6 = False, (), False, ()
    if full and name == "iptables":
        from minibox.net.firewall import iptables

        missing = tuple(iptables.missing_jumps({t: iptables.saved(t) for t in ("nat", "filter")}))
        if any(n.subnet6 for n in want.nets):
            missing6 = tuple(iptables.missing_jumps({t: iptables.saved(t, v6=True) for t in ("nat", "filter")},
                                                    v6=True))
    if name == "nftables" and (not in_sync or networks_change):
        from minibox.net.firewall import coexist

        forward, coexist_missing = coexist.facts()
        # Read whatever the networks are now: the change being planned may add the first --ipv6 one.
        forward6, coexist_missing6 = coexist.facts(v6=True)
    return FirewallFacts(name, want, in_sync, missing, forward, coexist_missing, missing6, forward6, coexist_missing6)


@contextlib.contextmanager
def locked(name: str, force_full: bool = False, networks_change: bool = False):
    """The firewall lock held, and the facts read under it: plan from them, then `apply`
    what was planned, inside the `with`."""
    with store.firewall_lock():
        yield facts(name, force_full, networks_change)


def apply(name: str, steps: list[Firewall], resync: bool = False) -> None:
    """Apply a transaction planned from `locked` facts (under that lock). `resync`: the
    facts said another tool changed the ruleset, so say what outside minibox now drops
    its traffic (once, here, not on every run)."""
    if steps:
        backend(name).apply(steps)
        generation.record()
        generation.record_reset(*resets(name, steps))
        if resync:
            _warn_blockers()


def change(name: str, plan: Callable[[FirewallFacts], list[Firewall]], force_full: bool = False,
           networks_change: bool = False) -> list[Firewall]:
    """Plan and apply one change to backend `name` under the firewall lock; the steps applied."""
    with locked(name, force_full, networks_change) as ff:
        steps = plan(ff)
        apply(name, steps, resync=not ff.in_sync)
        return steps


def _warn_blockers() -> None:
    """Say once, when minibox re-asserts its rules, what outside them drops its traffic."""
    from minibox import notes
    from minibox.net.firewall import blockers

    try:
        found = blockers.find([n.bridge for n in store.all_networks()])
    except (OSError, ValueError, MiniboxError):
        return  # a warning only: never a reason for the change to fail
    for b in found:
        notes.say(f"warning: {b.where} ({b.what}) drops containers' forwarded traffic; `minibox doctor` says "
                  "how to let it through")
