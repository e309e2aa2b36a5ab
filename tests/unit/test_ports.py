"""-p parsing (ranges too) and host-port conflicts."""

import pytest

from minibox.errors import Conflict, InvalidSpec
from minibox.model import PortMapping
from minibox.plan.ports import check_conflicts, overlaps, parse_all, parse_publish


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
    assert parse_publish(spec) == (expected,)


@pytest.mark.parametrize("spec, expected", [
    ("8000-8002:8000-8002", [("", 8000, 8000, "tcp"), ("", 8001, 8001, "tcp"), ("", 8002, 8002, "tcp")]),
    ("9000-9002:80-82/udp", [("", 9000, 80, "udp"), ("", 9001, 81, "udp"), ("", 9002, 82, "udp")]),
    ("127.0.0.1:8000-8001:80-81", [("127.0.0.1", 8000, 80, "tcp"), ("127.0.0.1", 8001, 81, "tcp")]),
    ("80-81", [("", 0, 80, "tcp"), ("", 0, 81, "tcp")]),  # each its own ephemeral host port
    ("127.0.0.1::80-81", [("127.0.0.1", 0, 80, "tcp"), ("127.0.0.1", 0, 81, "tcp")]),
    ("8080-8080:80-80", [("", 8080, 80, "tcp")]),
])
def test_ranges_publish_each_port(spec, expected):
    assert parse_publish(spec) == tuple(PortMapping(*e) for e in expected)


def test_too_many_ports_are_refused_before_any_is_held():
    with pytest.raises(InvalidSpec, match="at most 1000"):
        parse_publish("1-1001")
    with pytest.raises(InvalidSpec, match="publish 1001 ports"):
        parse_all(["1-500", "2001-2501"])
    assert len(parse_all(["1-500", "2001-2500"])) == 1000


def test_ipv6_loopback_is_a_host_address_like_any_other():
    assert parse_publish("[::1]:8080:80")[0].host_ip == "::1"  # carried by a userland proxy (net.proxy)


@pytest.mark.parametrize("spec, needle", [
    ("8080:0", "container port 0"),
    ("70000:80", "host port 70000"),
    ("8080:80/sctp", 'protocol "sctp"'),
    ("abc:80", 'host port "abc"'),
    ("1.2.3:8080:80", 'host address "1.2.3"'),
    ("8080:", "container port is missing"),
    ("a:b:c:d", "malformed"),
    ("8000-8010:80-81", "ranges of different lengths (11 and 2)"),
    ("8000-8010:80", "a host port range for one container port"),
    ("8010-8000:80-90", 'host port range "8010-8000"'),
    ("8000-:80", 'host port "" in'),
    ("8000:80-70000", "container port 70000"),
    ("-80", 'container port ""'),
    ("[::1:8080:80", "malformed"),
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
        check_conflicts(parse_publish("8080:80"), [("web", parse_publish("127.0.0.1:8080:81")[0])])
    with pytest.raises(Conflict, match="given twice"):
        check_conflicts(parse_all(["8080:80", "8080:81"]), [])
    check_conflicts(parse_all(["8080:80", "8080:80/udp"]), [("web", parse_publish("9090:80")[0])])
    # a range that overlaps a taken port: the first taken port of it is the one named
    with pytest.raises(Conflict, match="0.0.0.0:8003/tcp is already published by container web"):
        check_conflicts(parse_publish("8000-8010:80-90"), [("web", PortMapping("", 8003, 80)),
                                                           ("web", PortMapping("", 8007, 80))])
