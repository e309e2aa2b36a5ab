"""Address planning: subnets that overlap no host route, gateways, the lowest free address, MACs.

Like Docker's default IPAM: the network address and broadcast are never handed out, the
gateway (the bridge's own address) defaults to the first host address, and a container
gets the lowest free address, so a released one is reused at once.
"""

from __future__ import annotations

import hashlib
import ipaddress

from minibox.errors import Conflict, InvalidSpec
from minibox.value import Value

IPv4Net = ipaddress.IPv4Network


class Route(Value):
    """A host route, as far as overlap checks care."""

    dst: str  # CIDR; "0.0.0.0/0" for the default route
    dev: str


def parse_subnet(cidr: str) -> IPv4Net:
    try:
        iface = ipaddress.IPv4Interface(cidr.strip())
    except ValueError:
        raise InvalidSpec(f'invalid subnet "{cidr}": expected an IPv4 CIDR such as 192.168.15.0/24') from None
    net = iface.network
    if "/" not in cidr:
        raise InvalidSpec(f'invalid subnet "{cidr}": give the prefix length too, e.g. {net.network_address}/24')
    if iface.ip != net.network_address:
        raise InvalidSpec(f'invalid subnet "{cidr}": host bits are set; did you mean {net}?')
    if net.prefixlen > 29:
        raise InvalidSpec(f'subnet "{cidr}" is too small: use a prefix of /29 or shorter (/24 holds 253 containers)')
    if net.is_loopback or net.is_multicast or net.is_link_local or net.prefixlen < 8:
        raise InvalidSpec(f'subnet "{cidr}" is a loopback, link-local, multicast or huge range: use a private range')
    return net


def parse_subnet6(cidr: str) -> ipaddress.IPv6Network:
    """An IPv6 subnet for `network create --ipv6 --subnet`: a /48 to /120 of unicast space."""
    try:
        iface = ipaddress.IPv6Interface(cidr.strip())
    except ValueError:
        raise InvalidSpec(f'invalid subnet "{cidr}": expected a CIDR such as 192.168.15.0/24 or '
                          'fd42:10:20::/64') from None
    net = iface.network
    if "/" not in cidr:
        raise InvalidSpec(f'invalid subnet "{cidr}": give the prefix length too, e.g. {net.network_address}/64')
    if iface.ip != net.network_address:
        raise InvalidSpec(f'invalid subnet "{cidr}": host bits are set; did you mean {net}?')
    if not 48 <= net.prefixlen <= 120:
        raise InvalidSpec(f'IPv6 subnet "{cidr}": use a prefix between /48 and /120 (/64 is usual)')
    if net.is_loopback or net.is_multicast or net.is_link_local or net.is_unspecified:
        raise InvalidSpec(f'IPv6 subnet "{cidr}" is loopback, link-local or multicast: use a unique local '
                          'range (fd00::/8) or one routed to this host')
    return net


def parse_any(cidr: str) -> IPv4Net | ipaddress.IPv6Network:
    """A stored subnet of either family (validated already at `network create`)."""
    return parse_subnet6(cidr) if ":" in cidr else parse_subnet(cidr)


def pick_subnet6(network_id: str, taken: list[str]) -> ipaddress.IPv6Network:
    """A /64 for `--ipv6` without a v6 --subnet: from a unique local /48 of minibox's (the
    RFC 4193 way: fd, then 40 bits of a hash, here of the network's id, not of a clock)."""
    used = [ipaddress.IPv6Network(t) for t in taken]
    h = hashlib.sha256(network_id.encode()).digest()
    for i in range(256):
        cand = ipaddress.IPv6Network((bytes([0xfd]) + h[:5] + bytes([0, i]) + bytes(8), 64))
        if not any(cand.overlaps(u) for u in used):
            return cand
    raise Conflict("no free IPv6 /64 found: give one with --subnet")


def gateway_for(net: IPv4Net, gateway: str = "") -> str:
    if not gateway:
        return str(net.network_address + 1)
    try:
        gw = ipaddress.ip_address(gateway)
    except ValueError:
        raise InvalidSpec(f'invalid gateway "{gateway}": expected an address inside {net}') from None
    if gw.version != net.version or gw not in net or gw in (net.network_address, net.broadcast_address):
        raise InvalidSpec(f"gateway {gateway} is not a usable address of subnet {net}: pick one between "
                          f"{net.network_address + 1} and {net.broadcast_address - 1}")
    return str(gw)


def conflicting_route(net: IPv4Net, routes: list[Route], own_dev: str = "") -> Route | None:
    """The first host route that overlaps `net` (the default route and our own bridge excepted)."""
    for r in routes:
        if r.dst == "0.0.0.0/0" or (own_dev and r.dev == own_dev):
            continue
        if net.overlaps(ipaddress.IPv4Network(r.dst, strict=False)):
            return r
    return None


def pick_subnet(pool: str, prefix: int, routes: list[Route], taken: list[str]) -> IPv4Net:
    """The first /prefix of `pool` that overlaps neither a route nor another minibox network."""
    used = [ipaddress.IPv4Network(t) for t in taken]
    for cand in ipaddress.IPv4Network(pool).subnets(new_prefix=prefix):
        if conflicting_route(cand, routes) is None and not any(cand.overlaps(u) for u in used):
            return cand
    raise Conflict(f"every /{prefix} of {pool} overlaps a host route or a network: give one with --subnet")


def lowest_free(net: IPv4Net | ipaddress.IPv6Network, gateway: str, taken: set[str]) -> str:
    skip = taken | {gateway}
    for host in net.hosts():  # lazy: a free one comes within len(skip) + 1, even in a /64
        if str(host) not in skip:
            return str(host)
    raise Conflict(f"no free address left in {net} ({len(taken)} in use): remove a container or use a bigger subnet")


def check_requested(net: IPv4Net | ipaddress.IPv6Network, gateway: str, ip: str, taken: set[str]) -> str:
    flag = "--ip6" if net.version == 6 else "--ip"
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidSpec(f'invalid {flag} "{ip}": expected an IPv{net.version} address inside {net}') from None
    if addr.version != net.version or addr not in net or addr in (net.network_address, net.broadcast_address):
        raise InvalidSpec(f"{flag} {ip} is not a usable address of {net}")
    ip = str(addr)  # one spelling per address: its file's name
    if ip == gateway:
        raise Conflict(f"{flag} {ip} is the network's gateway (the bridge's own address): pick another")
    if ip in taken:
        raise Conflict(f"{flag} {ip} is already in use on this network: pick another")
    return ip


def contains(subnet: str, ip: str) -> bool:
    """Is `ip` an address of `subnet` (an address an ipam plugin gave, say)?"""
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(subnet, strict=False)
    except ValueError:
        return False


def container_mac(ip: str) -> str:
    """Docker's classic scheme (<= 27): 02:42 then the four address bytes, so the MAC tells
    the address and a reused address keeps its MAC (no stale ARP entries)."""
    b = ipaddress.IPv4Address(ip).packed
    return "02:42:" + ":".join(f"{x:02x}" for x in b)


def bridge_mac(network_id: str) -> str:
    """A fixed, locally administered MAC for a bridge: without one, a bridge adopts the
    lowest MAC among its ports and changes it as containers come and go (measured)."""
    h = hashlib.sha256(network_id.encode()).digest()
    return "02:" + ":".join(f"{x:02x}" for x in h[:5])
