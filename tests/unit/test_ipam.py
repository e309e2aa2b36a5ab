"""Subnets, gateways, lowest-free allocation, route overlap, MACs."""

import ipaddress

import pytest

from minibox.errors import Conflict, InvalidSpec
from minibox.plan import ipam
from minibox.plan.ipam import Route


def test_parse_subnet_and_errors():
    assert str(ipam.parse_subnet("192.168.15.0/24")) == "192.168.15.0/24"
    with pytest.raises(InvalidSpec, match="host bits are set; did you mean 192.168.15.0/24"):
        ipam.parse_subnet("192.168.15.7/24")
    with pytest.raises(InvalidSpec, match="expected an IPv4 CIDR"):
        ipam.parse_subnet("300.1.1.0/24")
    with pytest.raises(InvalidSpec, match="prefix length"):
        ipam.parse_subnet("10.0.0.0")
    with pytest.raises(InvalidSpec, match="too small"):
        ipam.parse_subnet("10.0.0.0/30")


def test_gateway():
    net = ipam.parse_subnet("192.168.15.0/24")
    assert ipam.gateway_for(net) == "192.168.15.1"
    assert ipam.gateway_for(net, "192.168.15.5") == "192.168.15.5"  # the lecture's v-net-0
    with pytest.raises(InvalidSpec, match="not a usable address"):
        ipam.gateway_for(net, "192.168.16.1")
    with pytest.raises(InvalidSpec, match="not a usable address"):
        ipam.gateway_for(net, "192.168.15.255")


def test_lowest_free_skips_gateway_and_reuses_released():
    net = ipam.parse_subnet("10.1.0.0/29")
    assert ipam.lowest_free(net, "10.1.0.1", set()) == "10.1.0.2"
    assert ipam.lowest_free(net, "10.1.0.1", {"10.1.0.2", "10.1.0.4"}) == "10.1.0.3"
    gw_in_middle = ipam.lowest_free(net, "10.1.0.5", {"10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4"})
    assert gw_in_middle == "10.1.0.6"
    with pytest.raises(Conflict, match="no free address"):
        ipam.lowest_free(net, "10.1.0.1", {f"10.1.0.{i}" for i in range(2, 7)})


def test_requested_address():
    net = ipam.parse_subnet("10.1.0.0/24")
    assert ipam.check_requested(net, "10.1.0.1", "10.1.0.9", set()) == "10.1.0.9"
    with pytest.raises(Conflict, match="already in use"):
        ipam.check_requested(net, "10.1.0.1", "10.1.0.9", {"10.1.0.9"})
    with pytest.raises(Conflict, match="gateway"):
        ipam.check_requested(net, "10.1.0.1", "10.1.0.1", set())
    with pytest.raises(InvalidSpec, match="not a usable address"):
        ipam.check_requested(net, "10.1.0.1", "10.2.0.9", set())


def test_route_overlap_and_pick():
    routes = [Route("0.0.0.0/0", "eth0"), Route("10.222.0.0/23", "tun0"), Route("192.0.2.0/24", "eth0")]
    assert ipam.conflicting_route(ipam.parse_subnet("10.222.1.0/24"), routes) == routes[1]
    assert ipam.conflicting_route(ipam.parse_subnet("10.222.1.0/24"), routes, own_dev="tun0") is None
    picked = ipam.pick_subnet("10.222.0.0/16", 24, routes, ["10.222.2.0/24"])
    assert picked == ipaddress.IPv4Network("10.222.3.0/24")


def test_macs():
    assert ipam.container_mac("10.222.0.2") == "02:42:0a:de:00:02"
    m = ipam.bridge_mac("abc")
    assert m.startswith("02:") and m == ipam.bridge_mac("abc") and m != ipam.bridge_mac("abd")


def test_contains_tells_an_address_of_the_subnet():
    assert ipam.contains("10.223.7.0/24", "10.223.7.50")
    assert not ipam.contains("10.223.7.0/24", "10.99.7.5")
    assert not ipam.contains("10.223.7.0/24", "not-an-ip")
