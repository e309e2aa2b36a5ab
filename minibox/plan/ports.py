"""Parsing `-p` specs into PortMappings and finding host-port conflicts between them.

Docker's forms: `8080:80`, `127.0.0.1:8080:80`, `HOSTIP:8080:80`, `HOSTIP::80`, `80`
(ephemeral host port), each optionally with `/tcp` or `/udp`.
"""

from __future__ import annotations

import ipaddress

from minibox.errors import Conflict, InvalidSpec
from minibox.model import PortMapping

PROTOS = ("tcp", "udp")
FORMS = "[IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp] or CONTAINER_PORT"


def _port(text: str, spec: str, what: str, allow_zero: bool = False) -> int:
    if not text.isdigit():
        if "-" in text:
            raise InvalidSpec(f'port ranges are not supported in -p "{spec}": publish each port with its own -p')
        raise InvalidSpec(f'invalid {what} "{text}" in -p "{spec}": expected a number 1-65535 ({FORMS})')
    n = int(text)
    if not (1 <= n <= 65535) and not (allow_zero and n == 0):
        raise InvalidSpec(f'{what} {n} in -p "{spec}" is out of range: use 1-65535')
    return n


def parse_publish(spec: str) -> PortMapping:
    body, slash, proto = spec.partition("/")
    proto = proto.lower() if slash else "tcp"
    if proto not in PROTOS:
        raise InvalidSpec(f'invalid protocol "{proto}" in -p "{spec}": use tcp or udp')
    host_ip = ""
    if body.startswith("["):
        raise InvalidSpec(f'IPv6 host addresses are not supported in -p "{spec}": minibox publishes on IPv4')
    parts = body.split(":")
    if len(parts) == 1:
        host_port, ctr = "0", parts[0]
    elif len(parts) == 2:
        host_port, ctr = parts
    elif len(parts) == 3:
        host_ip, host_port, ctr = parts
        host_port = host_port or "0"
        try:
            addr = ipaddress.IPv4Address(host_ip)
        except ValueError:
            raise InvalidSpec(f'invalid host address "{host_ip}" in -p "{spec}": expected an IPv4 address '
                              f"({FORMS})") from None
        host_ip = "" if addr == ipaddress.IPv4Address("0.0.0.0") else str(addr)
    else:
        raise InvalidSpec(f'malformed -p "{spec}": expected {FORMS}')
    if not ctr:
        raise InvalidSpec(f'malformed -p "{spec}": the container port is missing ({FORMS})')
    return PortMapping(host_ip=host_ip, host_port=_port(host_port, spec, "host port", allow_zero=True),
                       container_port=_port(ctr, spec, "container port"), proto=proto)


def overlaps(a: PortMapping, b: PortMapping) -> bool:
    """Two bindings collide when protocol and port match and either covers the other's address."""
    return (a.proto == b.proto and a.host_port == b.host_port and a.host_port != 0
            and (not a.host_ip or not b.host_ip or a.host_ip == b.host_ip))


def check_conflicts(wanted: tuple[PortMapping, ...], published: list[tuple[str, PortMapping]]) -> None:
    """Refuse a port that another -p of this run, or another container (name, mapping), holds."""
    for i, p in enumerate(wanted):
        for q in wanted[:i]:
            if overlaps(p, q):
                raise Conflict(f"host port {p.host_port}/{p.proto} is given twice in this command's -p")
        for owner, q in published:
            if overlaps(p, q):
                raise Conflict(f"host port {q.host_ip or '0.0.0.0'}:{q.host_port}/{q.proto} is already published "
                               f"by container {owner}: pick another host port")


def publish_exposed(ports: tuple[PortMapping, ...], exposed: tuple[str, ...]) -> tuple[PortMapping, ...]:
    """-P: each port the image exposes ("80/tcp") and no -p publishes, on an ephemeral host port."""
    taken = {(p.container_port, p.proto) for p in ports}
    extra = []
    for item in exposed:
        numbers, _, proto = item.partition("/")
        first, _, last = numbers.partition("-")  # a range, 8000-8010: each port of it
        if not (first.isdigit() and (last or first).isdigit()) or (proto or "tcp") not in ("tcp", "udp"):
            continue  # (image.config checked the form; sctp is not published here)
        for number in range(int(first), int(last or first) + 1):
            key = (number, proto or "tcp")
            if key not in taken:
                extra.append(PortMapping("", 0, key[0], key[1]))
                taken.add(key)
    return tuple(ports) + tuple(extra)
