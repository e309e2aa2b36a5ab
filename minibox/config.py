"""Where minibox keeps things and the defaults it uses, each overridable from the environment.

| variable                 | default             | what                                            |
|--------------------------|---------------------|-------------------------------------------------|
| MINIBOX_ROOT             | /var/lib/minibox    | state: images, containers, networks, ipam       |
| MINIBOX_CGROUP_PARENT    | minibox             | cgroup directory that holds one group per container |
| MINIBOX_FIREWALL_BACKEND | nftables            | nftables or iptables, used when a network is created |
| MINIBOX_DEFAULT_NETWORK  | minibox             | network a container joins without --network     |
"""

from __future__ import annotations

import os
from pathlib import Path

from minibox.value import Value

DEFAULT_ROOT = "/var/lib/minibox"
DEFAULT_NETWORK = "minibox"
DEFAULT_BRIDGE = "minibox0"
# Subnets minibox picks from when a network is created without --subnet: /24s of this
# pool, skipping any that overlap a host route. Docker uses 172.17/16, Podman 10.88/16;
# a different pool keeps the three out of each other's way on one host.
DEFAULT_POOL = "10.222.0.0/16"
DEFAULT_POOL_PREFIX = 24
FIREWALL_BACKENDS = ("nftables", "iptables")
STOP_TIMEOUT = 10
# The seccomp profile in Docker's format that Debian ships for Docker and Podman
# (package golang-github-containers-common); see plan.seccomp.
DEFAULT_SECCOMP_PROFILE = "/usr/share/containers/seccomp.json"
# Docker's default PATH for a container whose image sets none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# argv[0] of a container's userland proxy (net.proxy), before its directory: how /proc names it.
PROXY_ARGV0 = "minibox-proxy:"


class Paths(Value):
    """Every on-disk location below the state root."""

    root: Path

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    @property
    def networks(self) -> Path:
        return self.root / "networks"

    @property
    def ipam(self) -> Path:
        return self.root / "ipam"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    @property
    def cni(self) -> Path:
        """minibox-cni's attachments, one file each: cni/ID.json (ID from container id + ifname)."""
        return self.root / "cni"

    @property
    def dns(self) -> Path:
        """aardvark-dns's directory: a file per user network with containers, and its pid file."""
        return self.root / "dns"

    @property
    def libexec(self) -> Path:
        return self.root / "libexec"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def container(self, cid: str) -> Path:
        return self.containers / cid


_paths: tuple[str, Paths] | None = None  # the last root asked for, and its Paths


def paths() -> Paths:
    global _paths
    root = os.environ.get("MINIBOX_ROOT", DEFAULT_ROOT)
    if _paths is None or _paths[0] != root:  # the environment decides, each call (tests change it)
        _paths = (root, Paths(Path(root)))
    return _paths[1]


def container_file(cid: str, name: str) -> str:
    """containers/ID/NAME as a string: ps builds thousands, and a pathlib join costs ~5 µs."""
    return f"{os.environ.get('MINIBOX_ROOT', DEFAULT_ROOT)}/containers/{cid}/{name}"


def cgroup_parent() -> str:
    return os.environ.get("MINIBOX_CGROUP_PARENT", "minibox")


def firewall_backend() -> str:
    return os.environ.get("MINIBOX_FIREWALL_BACKEND", "nftables")


def default_network() -> str:
    return os.environ.get("MINIBOX_DEFAULT_NETWORK", DEFAULT_NETWORK)
