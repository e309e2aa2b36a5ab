"""The nftables backend's accept path in iptables' filter FORWARD chain, for hosts where Docker also runs.

An accept in minibox's nft table cannot overrule a drop in another table's base chain on
the same hook: every base chain must accept. Docker sets iptables' FORWARD policy to
DROP. So whenever iptables' filter FORWARD chain exists (whatever its policy now: Docker
may start after minibox), the nftables backend also installs MINIBOX-FORWARD there, with
the same accepts, and a jump to it at the top of FORWARD.
"""

from __future__ import annotations

from minibox.net.firewall import iptables


def facts() -> tuple[bool, tuple]:
    """(FORWARD exists, our jumps missing from it)."""
    lines = iptables.saved("filter")
    if not iptables.forward_chain_exists(lines):
        return False, ()
    return True, tuple(iptables.missing_jumps({"filter": lines}, targets=("MINIBOX-FORWARD",)))


def teardown() -> list[str]:
    """The last nftables-backed network is gone: MINIBOX-FORWARD and its jump go too."""
    if not iptables.saved("filter"):
        return []
    return iptables.teardown(full=False)
