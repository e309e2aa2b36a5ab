"""Golden renderings of both firewall backends for one network with one published container.

The golden files double as documentation: tests/unit/golden/*.txt are exactly what minibox
applies for `minibox run -d -p 8080:80 --name web busybox httpd -f -p 80` on the default
network. Regenerate with UPDATE_GOLDEN=1 after an intended change, and read the diff.
"""

import os
from pathlib import Path

import pytest

from minibox.plan import rules
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
    check("iptables-one-published-port.txt", rules.ipt_restore(rules.ipt_desired([NET], [WEB]), list(rules.IPT_JUMPS)))


def test_every_rule_and_element_names_its_owner():
    for line in rules.nft_apply([NET], [WEB]):
        if line.startswith(("add element", "add rule")):
            assert "comment" in line
    for r in rules.ipt_desired([NET], [WEB]):
        assert r.comment.startswith("minibox")
    assert WEB.tag == "minibox ctr 4f1c00000000 web"


def test_nft_port_keys():
    assert rules.nft_port_key(WEB) == ("hostport-any", "tcp . 8080")
    lo = PortFacts("b" * 64, "db", "127.0.0.1", 5432, "tcp", "10.222.0.3", 5432)
    assert rules.nft_port_key(lo) == ("hostport-addr", "127.0.0.1 . tcp . 5432")
    assert rules.nft_delete_elements([rules.nft_port_key(lo)]) == [
        "delete element ip minibox hostport-addr { 127.0.0.1 . tcp . 5432 }"]


def test_internal_network_has_no_masquerade_or_accept():
    internal = NetFacts("secret", "mbx-0123456789a", "10.222.5.0/24", internal=True)
    ipt = rules.ipt_network_rules(internal)
    assert not any(r.target == "MASQUERADE" for r in ipt)
    assert ("internal", '"mbx-0123456789a" comment "minibox net secret"') in rules.nft_network_elements(internal)


def test_coexistence_rules_only_accept():
    accepts = rules.ipt_network_rules(NET, full=False)
    assert accepts and all(r.target == "ACCEPT" and r.chain == "MINIBOX-FORWARD" for r in accepts)
    text = rules.ipt_restore(accepts, [], full=False)
    assert "*nat" not in text and ":MINIBOX-FORWARD - [0:0]" in text


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_iptables_port_rule(proto):
    p = PortFacts("c" * 64, "x", "198.18.0.1", 53, proto, "10.222.0.9", 5353)
    (r,) = rules.ipt_port_rules(p)
    assert r.line() == (f'-A MINIBOX -d 198.18.0.1/32 -p {proto} -m {proto} --dport 53 -m comment --comment '
                        f'"minibox ctr cccccccccccc x" -j DNAT --to-destination 10.222.0.9:5353')
