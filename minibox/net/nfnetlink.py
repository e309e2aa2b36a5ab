"""Two netfilter netlink exchanges written with struct: nftables' generation id, and conntrack's filtered dump and delete.

pyroute2 does all of minibox's link, address and route work. These two are not that: they
run on every `run` and every `rm`, and pyroute2's netfilter classes sit on its asyncio
core, which costs ~105 ms to import and ~15 ms per conntrack dump (measured here) — more
than the rest of `rm` together. A request here is a header, a 4-byte nfgenmsg and a few
attributes; the kernel does the filtering (ctnetlink's CTA_FILTER, Linux 5.8+).
"""

from __future__ import annotations

import errno
import socket
import struct

NETLINK_NETFILTER = 12
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLA_F_NESTED = 0x8000

NFNL_SUBSYS_CTNETLINK, NFNL_SUBSYS_NFTABLES = 1, 10
IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 0, 1, 2
NFT_MSG_GETGEN, NFTA_GEN_ID = 16, 1

# ctnetlink attributes (linux/netfilter/nfnetlink_conntrack.h)
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_FILTER = 1, 2, 25
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST = 1, 2
CTA_PROTO_NUM, CTA_PROTO_DST_PORT = 1, 3
CTA_FILTER_ORIG_FLAGS, CTA_FILTER_REPLY_FLAGS = 1, 2
FILTER_IP_SRC, FILTER_IP_DST, FILTER_PROTO_NUM, FILTER_PROTO_DST_PORT = 1 << 0, 1 << 1, 1 << 3, 1 << 5


def attr(kind: int, payload: bytes, nested: bool = False) -> bytes:
    data = struct.pack("=HH", 4 + len(payload), kind | (NLA_F_NESTED if nested else 0)) + payload
    return data + b"\0" * (-len(data) % 4)


def attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """type -> payload of the attributes in data[offset:] (the first of each type)."""
    out: dict[int, bytes] = {}
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        out.setdefault(kind & 0x7FFF, data[offset + 4:offset + length])
        offset += (length + 3) & ~3
    return out


def raw_attr(data: bytes, want: int, offset: int = 0) -> bytes:
    """The whole attribute (header included) of type `want`, to send back verbatim."""
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        if kind & 0x7FFF == want:
            return data[offset:offset + length]
        offset += (length + 3) & ~3
    return b""


def _message(subsys: int, cmd: int, flags: int, seq: int, family: int, body: bytes) -> bytes:
    payload = struct.pack("=BBH", family, 0, 0) + body  # struct nfgenmsg: family, version, res_id
    return struct.pack("=IHHII", 16 + len(payload), (subsys << 8) | cmd, flags, seq, 0) + payload


def _messages(data: bytes):
    offset = 0
    while offset + 16 <= len(data):
        length, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", data, offset)
        if length < 16:
            return
        yield kind, seq, data[offset + 16:offset + length]
        offset += (length + 3) & ~3


class Socket:
    """One NETLINK_NETFILTER socket; requests are answered in order."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER)
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request(self, subsys: int, cmd: int, flags: int, family: int = socket.AF_UNSPEC,
                body: bytes = b"") -> list[bytes]:
        """Send one request; every answer's payload (after nlmsghdr) until done. An error
        answer raises OSError (ENOENT for a conntrack entry already gone, say)."""
        self.seq += 1
        seq = self.seq
        self.sock.send(_message(subsys, cmd, flags | NLM_F_REQUEST, seq, family, body))
        out = []
        while True:
            for kind, s, payload in _messages(self.sock.recv(65536)):
                if s != seq:
                    continue
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise OSError(code, errno.errorcode.get(code, str(code)))
                    return out  # the ACK of a request without a reply
                out.append(payload)
                if not flags & NLM_F_DUMP:
                    return out


def nft_generation() -> int | None:
    """The kernel's nftables generation id (NFT_MSG_GETGEN); None if it cannot be read."""
    try:
        with Socket() as s:
            replies = s.request(NFNL_SUBSYS_NFTABLES, NFT_MSG_GETGEN, 0)
    except OSError:
        return None
    for payload in replies:
        gen = attrs(payload, 4).get(NFTA_GEN_ID)
        if gen and len(gen) >= 4:
            return struct.unpack(">I", gen[:4])[0]
    return None


def _addr(ip: str, v4_kind: int) -> tuple[int, bytes]:
    """(attribute, bytes) of an address: CTA_IP_V6_* are the CTA_IP_V4_* ones plus 2."""
    if ":" in ip:
        return v4_kind + 2, socket.inet_pton(socket.AF_INET6, ip)
    return v4_kind, socket.inet_aton(ip)


def _tuple(src: str = "", dst: str = "", proto: int = 0, dport: int = 0,
           kind: int = CTA_TUPLE_ORIG) -> tuple[bytes, int]:
    """A partial tuple (original or reply direction) and the CTA_FILTER flags naming its parts."""
    ip, flags = b"", 0
    if src:
        ip += attr(*_addr(src, CTA_IP_V4_SRC))
        flags |= FILTER_IP_SRC
    if dst:
        ip += attr(*_addr(dst, CTA_IP_V4_DST))
        flags |= FILTER_IP_DST
    l4 = b""
    if proto:
        l4 += attr(CTA_PROTO_NUM, struct.pack("B", proto))
        flags |= FILTER_PROTO_NUM
    if dport:
        l4 += attr(CTA_PROTO_DST_PORT, struct.pack(">H", dport))
        flags |= FILTER_PROTO_DST_PORT
    body = (attr(CTA_TUPLE_IP, ip, nested=True) if ip else b"") + (attr(CTA_TUPLE_PROTO, l4, nested=True) if l4 else b"")
    return attr(kind, body, nested=True), flags


def conntrack_delete(src: str = "", dst: str = "", proto: int = 0, dport: int = 0, reply: bool = False,
                     family: int = socket.AF_INET) -> int:
    """Delete every conntrack entry of `family` (that of `src`/`dst` if given) whose original
    (or, `reply`, reply) tuple matches:
    the kernel filters the dump, each match is deleted by its exact original tuple.
    Returns how many went. Each dump walks the kernel's whole hash table (262,144 buckets
    here: ~11 ms, whatever the table holds), so callers ask for as few as they can."""
    tup, flags = _tuple(src, dst, proto, dport, CTA_TUPLE_REPLY if reply else CTA_TUPLE_ORIG)
    which = CTA_FILTER_REPLY_FLAGS if reply else CTA_FILTER_ORIG_FLAGS
    body = tup + attr(CTA_FILTER, attr(which, struct.pack("=I", flags)), nested=True)
    if ":" in src + dst:
        family = socket.AF_INET6
    return _delete_dumped(family, body, lambda payload: True)


def conntrack_delete_sources(addrs: set[str], family: int) -> int:
    """Delete every entry of `family` whose original or reply source is one of `addrs`,
    from one dump the kernel does not filter: one walk of its table for any number of
    addresses (two filtered walks each otherwise), but every entry decoded here."""
    want = {socket.inet_pton(family, a) for a in addrs}
    src = _addr("::" if family == socket.AF_INET6 else "0.0.0.0", CTA_IP_V4_SRC)[0]

    def match(payload: bytes) -> bool:
        top = attrs(payload, 4)
        return any(attrs(attrs(top.get(kind, b"")).get(CTA_TUPLE_IP, b"")).get(src) in want
                   for kind in (CTA_TUPLE_ORIG, CTA_TUPLE_REPLY))

    return _delete_dumped(family, b"", match)


def _delete_dumped(family: int, body: bytes, match) -> int:
    """Dump the entries of `family` (`body`: the kernel's filter) and delete each that
    `match`es by its exact original tuple; how many went."""
    deleted = 0
    with Socket() as s:
        for payload in s.request(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_GET, NLM_F_DUMP, family, body):
            exact = raw_attr(payload, CTA_TUPLE_ORIG, 4)
            if not exact or not match(payload):
                continue
            try:
                s.request(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_DELETE, NLM_F_ACK, family, exact)
                deleted += 1
            except OSError as e:
                if e.errno != errno.ENOENT:  # expired meanwhile: fine
                    raise
    return deleted
