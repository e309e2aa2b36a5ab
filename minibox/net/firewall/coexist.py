"""The nftables backend's accept path in iptables' filter FORWARD chain, for hosts where Docker also runs.

An accept in minibox's nft table cannot overrule a drop in another table's base chain on
the same hook: every base chain must accept. Docker sets iptables' FORWARD policy to
DROP. So whenever iptables' filter FORWARD chain exists (whatever its policy now: Docker
may start after minibox), the nftables backend also installs MINIBOX-FORWARD there, with
the same accepts, and a jump to it at the top of FORWARD; and in ip6tables' FORWARD for
the --ipv6 networks (Docker with ip6tables enabled drops there too).
"""

from __future__ import annotations

from minibox.net.firewall import iptables


def facts(v6: bool = False) -> tuple[bool, tuple]:
    """(FORWARD exists, our jumps missing from it), in iptables' filter table or ip6tables'."""
    lines = iptables.saved("filter", v6)
    if not iptables.forward_chain_exists(lines):
        return False, ()
    return True, tuple(iptables.missing_jumps({"filter": lines}, targets=("MINIBOX-FORWARD",), v6=v6))


def teardown(v6: bool = False) -> list[str]:
    """The last nftables-backed network (`v6`: the last --ipv6 one) is gone: MINIBOX-FORWARD
    and its jump go too, from iptables' filter table (ip6tables')."""
    if not any(line.startswith(":MINIBOX-FORWARD ") for line in iptables.saved("filter", v6)):
        return []
    return iptables.teardown(full=False, v6=v6)
