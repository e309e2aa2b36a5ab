"""Forward blockers found in iptables-save and `nft -j list chains` output (net.firewall.blockers)."""

from minibox.net.firewall import blockers


def test_a_drop_above_minibox_jump_blocks_and_one_below_does_not():
    lines = [":FORWARD ACCEPT [0:0]", "-A FORWARD -s 10.0.0.0/8 -j REJECT --reject-with icmp-port-unreachable",
             "-A FORWARD -j DROP", '-A FORWARD -m comment --comment minibox -j MINIBOX-FORWARD',
             "-A FORWARD -o eth9 -j DROP"]
    found = blockers.iptables_blockers(lines)
    assert [b.what for b in found] == [lines[1], lines[2]]
    assert found[0].fix[1].startswith("iptables -I FORWARD 1 ")
    assert blockers.iptables_blockers(lines[3:]) == []


def test_another_tables_forward_policy_drop_blocks_but_iptables_own_and_ours_do_not():
    chains = [{"family": "inet", "table": "firewalld", "name": "filter_FORWARD", "hook": "forward", "policy": "drop"},
              {"family": "ip", "table": "filter", "name": "FORWARD", "hook": "forward", "policy": "drop"},
              {"family": "inet", "table": "minibox", "name": "forward", "hook": "forward", "policy": "accept"},
              {"family": "inet", "table": "ufw", "name": "input", "hook": "input", "policy": "drop"}]
    (b,) = blockers.nft_blockers(chains, ["minibox0"])
    assert b.where == "nft inet firewalld filter_FORWARD"
    assert b.fix == ('nft insert rule inet firewalld filter_FORWARD iifname "minibox0" accept',
                     'nft insert rule inet firewalld filter_FORWARD oifname "minibox0" accept')
