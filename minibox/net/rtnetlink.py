"""A container's endpoint steps (veth, master, hairpin, up, address, route) and a link's delete, as rtnetlink messages written with struct.

These run on every bridged `run`, every `rm` of one, every CNI ADD and DEL and every
`network connect`. Through pyroute2 each command paid its IPRoute import, ~145 ms here
(IPRoute sits on asyncio and ssl), and ~10 ms per job (measured): more than the rest of a
bridged start, hidden only in part by a helper process that burned the other CPU. A
message here is a header, the fixed struct of its kind and a few attributes (the TLVs of
net.nfnetlink), acknowledged by the kernel: ~2 ms for all of an endpoint. pyroute2 keeps
everything done once per network (bridges, their addresses) and the tests' reading.

Each function applies one plan step, so what `--explain` prints is what is sent; a
refusal raises NetlinkFailed naming that step's `ip` command and the kernel's reason.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

from minibox.errors import MiniboxError
from minibox.net import netlink
from minibox.net.nfnetlink import NLM_F_ACK, NLM_F_REQUEST, NLMSG_ERROR, attr

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 17, 18, 19, 20, 24
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MASTER, IFLA_PROTINFO, IFLA_LINKINFO = 1, 3, 10, 12, 18
IFLA_NET_NS_PID, IFLA_NET_NS_FD = 19, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFLA_BRPORT_MODE = 4  # hairpin
IFA_ADDRESS, IFA_LOCAL, IFA_F_NODAD = 1, 2, 0x02
RTA_GATEWAY, RT_TABLE_MAIN, RTPROT_STATIC, RTN_UNICAST = 5, 254, 4, 1
IFF_UP = 0x1
IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid


class NetlinkFailed(MiniboxError):
    """The kernel refused a step: its `ip` command and the errno's text."""

    def __init__(self, command: str, err: int):
        super().__init__(f"{command}: {os.strerror(err)}")
        self.errno = err


class Rtnl:
    """One NETLINK_ROUTE socket: in this process's network namespace, or in that of process
    `netns` (a PID) or of the namespace file at that path (CNI_NETNS)."""

    def __init__(self, netns: int | str = ""):
        self.sock = netlink.route_socket_in(netns) if netns else \
            socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, netlink.NETLINK_ROUTE)
        self.seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *_exc) -> None:
        self.sock.close()

    def call(self, kind: int, flags: int, body: bytes, command: str) -> bytes:
        """Send one request; the kernel's answer (the ACK, or a GET's reply). Raises
        NetlinkFailed with `command` if the kernel says no."""
        self.seq += 1
        self.sock.send(HEADER.pack(HEADER.size + len(body), kind, NLM_F_REQUEST | flags, self.seq, 0) + body)
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + HEADER.size <= len(data):
                length, mtype, _flags, seq, _pid = HEADER.unpack_from(data, offset)
                if length < HEADER.size:
                    break
                if seq == self.seq:
                    payload = data[offset + HEADER.size:offset + length]
                    if mtype == NLMSG_ERROR:
                        err = -struct.unpack_from("=i", payload)[0]
                        if err:
                            raise NetlinkFailed(command, err)
                    return payload
                offset += (length + 3) & ~3

    def index(self, name: str, command: str) -> int:
        """The index of link `name` in this socket's namespace."""
        reply = self.call(RTM_GETLINK, 0, IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) +
                          attr(IFLA_IFNAME, name.encode() + b"\0"), command)
        return IFINFO.unpack_from(reply)[2]

    def add_veth(self, host: str, peer: str, mac: str, netns: int | str, command: str) -> None:
        """The veth pair: `host` here, `peer` (with `mac`) born in the namespace of PID
        `netns`, or of the namespace file at that path."""
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC) if isinstance(netns, str) else -1
        try:
            where = attr(IFLA_NET_NS_FD, struct.pack("=I", fd)) if fd >= 0 else \
                attr(IFLA_NET_NS_PID, struct.pack("=I", int(netns)))
            peer_msg = (IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr(IFLA_IFNAME, peer.encode() + b"\0") +
                        attr(IFLA_ADDRESS, bytes.fromhex(mac.replace(":", ""))) + where)
            info = attr(IFLA_INFO_KIND, b"veth\0") + \
                attr(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer_msg, nested=True), nested=True)
            body = (IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr(IFLA_IFNAME, host.encode() + b"\0") +
                    attr(IFLA_LINKINFO, info, nested=True))
            self.call(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body, command)
        finally:
            if fd >= 0:
                os.close(fd)

    def set_master(self, index: int, master: int, command: str) -> None:
        body = IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0) + attr(IFLA_MASTER, struct.pack("=I", master))
        self.call(RTM_SETLINK, NLM_F_ACK, body, command)

    def hairpin(self, index: int, command: str) -> None:
        """The bridge port sends a frame back out of the port it came in on (as `bridge
        link set ... hairpin on`: the bridge family's SETLINK with its port attributes)."""
        body = IFINFO.pack(socket.AF_BRIDGE, 0, index, 0, 0) + \
            attr(IFLA_PROTINFO, attr(IFLA_BRPORT_MODE, b"\1"), nested=True)
        self.call(RTM_SETLINK, NLM_F_ACK, body, command)

    def set_up(self, index: int, command: str) -> None:
        self.call(RTM_SETLINK, NLM_F_ACK, IFINFO.pack(socket.AF_UNSPEC, 0, index, IFF_UP, IFF_UP), command)

    def add_addr(self, index: int, cidr: str, command: str) -> None:
        """An address, as pyroute2 and `ip addr add` send it (no broadcast); IPv6 ones
        without duplicate address detection: the subnet is ours alone, and DAD would
        leave the address unusable for ~1 s."""
        net = ipaddress.ip_interface(cidr)
        family = socket.AF_INET6 if net.version == 6 else socket.AF_INET
        packed = net.ip.packed
        body = IFADDR.pack(family, net.network.prefixlen, IFA_F_NODAD if net.version == 6 else 0, 0, index) + \
            attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed)
        self.call(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body, command)

    def add_default_route(self, gateway: str, command: str) -> None:
        gw = ipaddress.ip_address(gateway)
        family = socket.AF_INET6 if gw.version == 6 else socket.AF_INET
        body = RTMSG.pack(family, 0, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, 0, RTN_UNICAST, 0) + \
            attr(RTA_GATEWAY, gw.packed)
        self.call(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body, command)

    def delete(self, index: int, command: str) -> None:
        self.call(RTM_DELLINK, NLM_F_ACK, IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0), command)

