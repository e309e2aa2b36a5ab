"""Golden renderings of both firewall backends for one network with one published container.

The golden files double as documentation: tests/unit/golden/*.txt are exactly what minibox
applies for `minibox run -d -p 8080:80 --name web busybox httpd -f -p 80` on the default
network. Regenerate with UPDATE_GOLDEN=1 after an intended change, and read the diff.
"""

import os
from pathlib import Path

import pytest

from minibox.plan import iptrules, rules
from minibox.plan.rules import NetFacts, PortFacts

GOLDEN = Path(__file__).with_name("golden")
NET = NetFacts("minibox", "minibox0", "10.222.0.0/24")
WEB = PortFacts("4f1c" + "0" * 60, "web", "", 8080, "tcp", "10.222.0.2", 80)


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"rendering differs from {path}; UPDATE_GOLDEN=1 to accept"


def test_nft_golden():
    check("nftables-one-published-port.txt", "\n".join(rules.nft_apply([NET], [WEB])) + "\n")


def test_iptables_golden():
    check("iptables-one-published-port.txt", iptrules.ipt_restore(iptrules.ipt_desired([NET], [WEB]), list(iptrules.IPT_JUMPS)))


def test_every_rule_and_element_names_its_owner():
    for line in rules.nft_apply([NET], [WEB]):
        if line.startswith(("add element", "add rule")):
            assert "comment" in line
    for r in iptrules.ipt_desired([NET], [WEB]):
        assert r.comment.startswith("minibox")
    assert WEB.tag == "minibox ctr 4f1c00000000 web"


def test_nft_port_keys():
    assert rules.nft_port_keys(WEB) == [("hostport-any", "tcp . 8080", "10.222.0.2")]
    lo = PortFacts("b" * 64, "db", "127.0.0.1", 5432, "tcp", "10.222.0.3", 5432)
    assert rules.nft_port_keys(lo) == [("hostport-addr", "127.0.0.1 . tcp . 5432", "10.222.0.3")]
    assert rules.nft_delete_elements([rules.nft_port_keys(lo)[0][:2]]) == [
        "delete element inet minibox hostport-addr { 127.0.0.1 . tcp . 5432 }"]


DUAL = PortFacts("c" * 64, "web6", "", 8080, "tcp", "10.222.7.2", 80, ctr_ip6="fd42:7::2")


def test_a_dual_stack_port_is_published_on_both_families():
    """-p 8080:80 of a container on an --ipv6 network: an element in each family's map;
    -p [::]:8080:80 the IPv6 one alone; -p [IPV6]:8080:80 keyed by that address."""
    assert [m for m, _, _ in rules.nft_port_keys(DUAL)] == ["hostport-any", "hostport-any6"]
    assert rules.nft_port_elements(DUAL)[1] == ("hostport-any6", 'tcp . 8080 comment "minibox ctr cccccccccccc web6" '
                                                                 ': fd42:7::2 . 80')
    assert rules.nft_port_keys(DUAL._replace(host_ip="::")) == [("hostport-any6", "tcp . 8080", "fd42:7::2")]
    assert rules.nft_port_keys(DUAL._replace(host_ip="fd00:1::5"))[0][:2] == ("hostport-addr6",
                                                                             "fd00:1::5 . tcp . 8080")
    (r,) = iptrules.ipt_port_rules(DUAL, v6=True)
    assert r.target == "DNAT --to-destination [fd42:7::2]:80" and r.match == "-p tcp -m tcp --dport 8080"
    assert iptrules.ipt_port_rules(DUAL._replace(host_ip="127.0.0.1"), v6=True) == []
    assert iptrules.ipt_port_rules(DUAL._replace(host_ip="::"), v6=False) == []


def test_ip6tables_rules_of_an_ipv6_network():
    net = NetFacts("six", "mbx-0123456789a", "10.222.7.0/24", subnet6="fd42:7::/64")
    six = iptrules.ipt_desired([NET, net], [DUAL], v6=True)
    text = iptrules.ipt_restore(six, list(iptrules.IPT_JUMPS6), v6=True)
    assert "-s fd42:7::/64 ! -o mbx-0123456789a" in text and "minibox0" not in text  # only --ipv6 networks
    assert "127.0.0.0/8" not in text and "MINIBOX-INPUT" not in text  # no loopback path in IPv6
    assert "-I PREROUTING 1 ! -d ::1/128 -m addrtype --dst-type LOCAL" in text
    assert ("subnets6", 'fd42:7::/64 comment "minibox net six"') in rules.nft_network_elements(net)


def test_internal_network_has_no_masquerade_or_accept():
    internal = NetFacts("secret", "mbx-0123456789a", "10.222.5.0/24", internal=True)
    ipt = iptrules.ipt_network_rules(internal)
    assert not any(r.target == "MASQUERADE" for r in ipt)
    assert ("internal", '"mbx-0123456789a" comment "minibox net secret"') in rules.nft_network_elements(internal)


def test_coexistence_rules_only_accept():
    accepts = iptrules.ipt_network_rules(NET, full=False)
    assert accepts and all(r.target == "ACCEPT" and r.chain == "MINIBOX-FORWARD" for r in accepts)
    text = iptrules.ipt_restore(accepts, [], full=False)
    assert "*nat" not in text and ":MINIBOX-FORWARD - [0:0]" in text


def test_coexistence_covers_ip6tables_for_ipv6_networks():
    from minibox.plan.firewall import Desired, FirewallFacts, _coexist

    six = NetFacts("six", "mbx-0123456789b", "10.222.6.0/24", subnet6="fd42:10:20::/64")
    ff = FirewallFacts("nftables", Desired(), True, forward_chain=True, forward_chain6=True)
    steps = _coexist(ff, Desired((NET, six)))
    assert [s.backend for s in steps] == ["iptables", "ip6tables"]
    assert any("-o mbx-0123456789b" in line for line in steps[1].lines)
    assert not any(NET.bridge in line for line in steps[1].lines)  # an IPv4-only network has no IPv6 accepts
    assert [s.backend for s in _coexist(ff, Desired((NET,)))] == ["iptables"]  # no --ipv6 network: no ip6tables


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_iptables_port_rule(proto):
    p = PortFacts("c" * 64, "x", "198.18.0.1", 53, proto, "10.222.0.9", 5353)
    (r,) = iptrules.ipt_port_rules(p)
    assert r.line() == (f'-A MINIBOX -d 198.18.0.1/32 -p {proto} -m {proto} --dport 53 -m comment --comment '
                        f'"minibox ctr cccccccccccc x" -j DNAT --to-destination 10.222.0.9:5353')
