"""Parsing `-p` specs into PortMappings and finding host-port conflicts between them.

Docker's forms: `8080:80`, `127.0.0.1:8080:80`, `HOSTIP:8080:80`, `HOSTIP::80`, `80`
(ephemeral host port), each optionally with `/tcp` or `/udp`; and a range in place of a
port, `8000-8010:8000-8010` or `80-82` (one mapping per port: each port is one element of
the firewall's maps, never a rule of its own).
"""

from __future__ import annotations

import ipaddress

from minibox.errors import Conflict, InvalidSpec
from minibox.model import PortMapping

PROTOS = ("tcp", "udp")
FORMS = "[IP:]HOST_PORT[-END]:CONTAINER_PORT[-END][/tcp|/udp] or CONTAINER_PORT[-END]"


MAX_PORTS = 1000  # per container: each published port is a socket its shim holds open


def _port(text: str, spec: str, what: str, allow_zero: bool = False) -> int:
    if not text.isdigit():
        raise InvalidSpec(f'invalid {what} "{text}" in -p "{spec}": expected a number 1-65535 or a range like '
                          f"8000-8010 ({FORMS})")
    n = int(text)
    if not (1 <= n <= 65535) and not (allow_zero and n == 0):
        raise InvalidSpec(f'{what} {n} in -p "{spec}" is out of range: use 1-65535')
    return n


def _range(text: str, spec: str, what: str, allow_zero: bool = False) -> tuple[int, int]:
    """A port or a range of them, "8000-8010", as (first, last)."""
    first, dash, last = text.partition("-")
    lo = _port(first, spec, what, allow_zero)
    hi = _port(last, spec, what) if dash else lo
    if hi < lo:
        raise InvalidSpec(f'invalid {what} range "{text}" in -p "{spec}": it ends before it starts')
    return lo, hi


def _host_address(text: str, spec: str) -> str:
    """-p's host address: "" for 0.0.0.0 (every address), "::" for [::] (every IPv6 one)."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidSpec(f'invalid host address "{text}" in -p "{spec}": expected an IPv4 address or an IPv6 one '
                          f"in brackets ({FORMS})") from None
    return "" if str(addr) == "0.0.0.0" else str(addr)


def parse_publish(spec: str) -> tuple[PortMapping, ...]:
    """One -p as its mappings, a port each: a range ("8000-8002:80-82") pairs its ports in
    order, and a container range alone ("80-82") gets an ephemeral host port each."""
    body, slash, proto = spec.partition("/")
    proto = proto.lower() if slash else "tcp"
    if proto not in PROTOS:
        raise InvalidSpec(f'invalid protocol "{proto}" in -p "{spec}": use tcp or udp')
    host_ip, v6 = "", ""
    if body.startswith("["):  # [IPV6]:HOST_PORT:CONTAINER_PORT
        v6, close, body = body[1:].partition("]")
        if not close or body.count(":") != 2 or not body.startswith(":"):
            raise InvalidSpec(f'malformed -p "{spec}": expected [IPV6]:HOST_PORT:CONTAINER_PORT')
    parts = body.split(":")
    if len(parts) == 1:
        host_port, ctr = "0", parts[0]
    elif len(parts) == 2:
        host_port, ctr = parts
    elif len(parts) == 3:
        addr, host_port, ctr = parts
        host_port = host_port or "0"
        host_ip = _host_address(v6 or addr, spec)
    else:
        raise InvalidSpec(f'malformed -p "{spec}": expected {FORMS}')
    if not ctr:
        raise InvalidSpec(f'malformed -p "{spec}": the container port is missing ({FORMS})')
    c_lo, c_hi = _range(ctr, spec, "container port")
    h_lo, h_hi = _range(host_port, spec, "host port", allow_zero=True)
    if h_lo and h_hi > h_lo and c_hi == c_lo:
        raise InvalidSpec(f'invalid -p "{spec}": a host port range for one container port (Docker then picks one '
                          f"free port of the range) is not supported here: give {h_lo}:{c_lo}, or ranges of one "
                          "length")
    if h_lo and h_hi - h_lo != c_hi - c_lo:
        raise InvalidSpec(f'invalid -p "{spec}": the host ports {host_port} and the container ports {ctr} are '
                          f"ranges of different lengths ({h_hi - h_lo + 1} and {c_hi - c_lo + 1}): give two of "
                          "one length, or a container range alone for ephemeral host ports")
    if c_hi - c_lo >= MAX_PORTS:
        raise InvalidSpec(f'-p "{spec}" publishes {c_hi - c_lo + 1} ports: at most {MAX_PORTS} per container '
                          "(each is a socket held open)")
    return tuple(PortMapping(host_ip=host_ip, host_port=h_lo + i if h_lo else 0, container_port=c_lo + i,
                             proto=proto) for i in range(c_hi - c_lo + 1))


def parse_all(specs) -> tuple[PortMapping, ...]:
    """Every -p of a command, each port a mapping of its own (at most MAX_PORTS)."""
    out = tuple(m for spec in specs for m in parse_publish(spec))
    if len(out) > MAX_PORTS:
        raise InvalidSpec(f"the -p options publish {len(out)} ports: at most {MAX_PORTS} per container "
                          "(each is a socket held open)")
    return out


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
