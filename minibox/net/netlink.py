"""Access to pyroute2 at a bearable start-up cost, and netlink sockets inside a container's netns.

`import pyroute2` runs a package __init__ that imports every feature it has (NDB, IPDB,
ethtool, wireguard, ...): ~130 ms on this machine kind, more than a whole container start.
minibox needs IPRoute and Conntrack only. `_pyroute2_submodule` imports those submodules
without running the package __init__ (~50 ms saved, measured); if that ever fails (a
different pyroute2 layout), it falls back to the ordinary import.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
import sys
import types

from minibox import linux

NETLINK_ROUTE = 0


def _pyroute2_submodule(name: str):
    if "pyroute2" not in sys.modules:
        spec = importlib.util.find_spec("pyroute2")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("pyroute2 is not installed: run scripts/setup")
        pkg = types.ModuleType("pyroute2")
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__spec__ = spec
        pkg.__file__ = spec.origin
        sys.modules["pyroute2"] = pkg
    try:
        return importlib.import_module(f"pyroute2.{name}")
    except ImportError:
        sys.modules.pop("pyroute2", None)
        import pyroute2  # noqa: F401 - the slow, always-working way

        return importlib.import_module(f"pyroute2.{name}")


def iproute_module():
    """pyroute2's IPRoute module, imported (the slow part of any netlink work)."""
    return _pyroute2_submodule("iproute.linux")


def iproute():
    """A pyroute2 IPRoute on the host's (this process's) network namespace."""
    return iproute_module().IPRoute()


def conntrack():
    """pyroute2's Conntrack, for tests and tools (minibox itself uses net.nfnetlink)."""
    return _pyroute2_submodule("conntrack").Conntrack()


def netlink_error():
    return _pyroute2_submodule("netlink.exceptions").NetlinkError


def route_socket_in(pid: int | str) -> socket.socket:
    """A NETLINK_ROUTE socket in the network namespace of process `pid` (or at the path a
    CNI runtime passes as CNI_NETNS).

    A netlink socket stays in the namespace it was created in: step in with setns, open
    the socket, step back out. No fork and no thread, unlike IPRoute(netns=...), which
    forks a helper (~10 ms, measured)."""
    me = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(pid if isinstance(pid, str) else f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.setns(target, linux.CLONE_NEWNET)
        try:
            return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        finally:
            linux.setns(me, linux.CLONE_NEWNET)
    finally:
        os.close(me)
        os.close(target)

