"""Deleting conntrack entries, so a (un)published port is not bypassed by flows that predate it.

NAT is decided once per connection, when conntrack creates the entry. A UDP sender that
keeps talking to a port keeps its old entry alive, and the new DNAT rule never sees it
(measured: the reply source stayed the host until the entry was deleted). So minibox
deletes entries by the host port it (un)publishes, and by the address a container leaves.
"""

from __future__ import annotations

import socket

from minibox.net import netlink
from minibox.plan.steps import ConntrackFlush

PROTO = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}


def flush(steps: list[ConntrackFlush]) -> list[str]:
    """Delete matching entries; returns errors instead of raising (teardown goes on)."""
    if not steps:
        return []
    errors = []
    try:
        ct = netlink.conntrack()
    except OSError as e:
        return [f"conntrack: {e}"]
    NFCTAttrTuple = netlink._pyroute2_submodule("netlink.nfnetlink.nfctsocket").NFCTAttrTuple
    try:
        for step in steps:
            if step.addr:
                filters = [NFCTAttrTuple(daddr=step.addr), NFCTAttrTuple(saddr=step.addr)]
            else:
                filters = [NFCTAttrTuple(proto=PROTO[step.proto], dport=step.port)]
            for flt in filters:
                try:
                    for entry in list(ct.dump_entries(tuple_orig=flt)):
                        try:
                            ct.entry("del", tuple_orig=entry.tuple_orig)
                        except Exception:  # noqa: BLE001 - already gone (expired meanwhile)
                            pass
                except Exception as e:  # noqa: BLE001 - pyroute2 raises several kinds
                    errors.append(f"conntrack {step.command()}: {e}")
    finally:
        ct.close()
    return errors
