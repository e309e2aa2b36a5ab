"""-p parsing and host-port conflicts."""

import pytest

from minibox.errors import Conflict, InvalidSpec
from minibox.model import PortMapping
from minibox.plan.ports import check_conflicts, overlaps, parse_publish


@pytest.mark.parametrize("spec, expected", [
    ("8080:80", PortMapping("", 8080, 80, "tcp")),
    ("127.0.0.1:8080:80", PortMapping("127.0.0.1", 8080, 80, "tcp")),
    ("198.18.0.1:8080:80", PortMapping("198.18.0.1", 8080, 80, "tcp")),
    ("0.0.0.0:8080:80", PortMapping("", 8080, 80, "tcp")),
    ("8080:80/udp", PortMapping("", 8080, 80, "udp")),
    ("8080:80/TCP", PortMapping("", 8080, 80, "tcp")),
    ("80", PortMapping("", 0, 80, "tcp")),
    ("127.0.0.1::80", PortMapping("127.0.0.1", 0, 80, "tcp")),
    ("53/udp", PortMapping("", 0, 53, "udp")),
])
def test_forms(spec, expected):
    assert parse_publish(spec) == expected


@pytest.mark.parametrize("spec, needle", [
    ("8080:0", "container port 0"),
    ("70000:80", "host port 70000"),
    ("8080:80/sctp", 'protocol "sctp"'),
    ("abc:80", 'host port "abc"'),
    ("1.2.3:8080:80", 'host address "1.2.3"'),
    ("8080:", "container port is missing"),
    ("a:b:c:d", "malformed"),
    ("8000-8010:80-90", "ranges"),
    ("[::1]:8080:80", "IPv6"),
])
def test_bad_specs_name_the_value(spec, needle):
    with pytest.raises(InvalidSpec) as e:
        parse_publish(spec)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_overlap_rules():
    any_ = PortMapping("", 8080, 80)
    lo = PortMapping("127.0.0.1", 8080, 80)
    other = PortMapping("198.18.0.1", 8080, 80)
    assert overlaps(any_, lo) and overlaps(lo, any_)
    assert not overlaps(lo, other)
    assert not overlaps(any_, PortMapping("", 8080, 80, "udp"))
    assert not overlaps(PortMapping("", 0, 80), PortMapping("", 0, 80))  # both ephemeral


def test_conflicts_with_other_container_and_self():
    with pytest.raises(Conflict, match="already published by container web"):
        check_conflicts((parse_publish("8080:80"),), [("web", parse_publish("127.0.0.1:8080:81"))])
    with pytest.raises(Conflict, match="given twice"):
        check_conflicts((parse_publish("8080:80"), parse_publish("8080:81")), [])
    check_conflicts((parse_publish("8080:80"), parse_publish("8080:80/udp")), [("web", parse_publish("9090:80"))])
