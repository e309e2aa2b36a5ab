"""What `run` reads before it plans: the image, the host's cgroups and resolv.conf, the network, the firewall.

Reading only: nothing here changes the host, except that a real run creates the default
network on first use, as Docker creates docker0 (a dry run plans that creation instead).
`minibox run` and `run --dry-run` read the same facts and hand them to plan.run.plan_run.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from minibox import config, images, store
from minibox.errors import InvalidSpec
from minibox.model import ContainerRecord, ContainerSpec, NetworkRecord
from minibox.plan.run import RunFacts
from minibox.plan.steps import LoadSeccomp
from minibox.runtime import caps, cgroups, seccomp
from minibox.value import Value


class Basics(Value):
    image: images.Image
    caps: tuple[str, ...]
    seccomp: LoadSeccomp | None
    cgroups: cgroups.Layout
    host_resolv: str
    network: NetworkRecord | None
    network_is_new: bool


def check_cmd(cmd: tuple[str, ...]) -> None:
    if not cmd:
        raise InvalidSpec("no command given: the busybox image has no default command; e.g. `minibox run busybox sh`")


def container_caps(device_control: str, quiet: bool = False) -> tuple[str, ...]:
    """Docker's 14 capabilities; without a device cgroup, CAP_MKNOD goes too (said once)."""
    if device_control:
        return caps.DEFAULT_CAPS
    marker = config.paths().root / "cache" / "warned-no-device-cgroup"
    if not quiet and not marker.exists():
        print("minibox: note: no device cgroup here (neither the v1 devices controller nor cgroup v2): containers "
              "get no CAP_MKNOD, and their root is mounted nodev, so they cannot open host devices",
              file=sys.stderr)
        with contextlib.suppress(OSError):
            marker.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            marker.touch()
    return tuple(c for c in caps.DEFAULT_CAPS if c != "mknod")


def read(spec: ContainerSpec, dry: bool = False) -> Basics:
    image = images.get(spec.image)
    check_cmd(spec.cmd)
    lay = cgroups.layout()
    cgroups.check_limits(lay, spec.memory, spec.pids_limit)
    keep = container_caps(cgroups.device_control(lay), quiet=dry)
    filter_step = seccomp.step_for(spec.seccomp, keep)
    try:
        with open("/etc/resolv.conf") as f:
            resolv = f.read()
    except OSError:
        resolv = ""
    net, new = None, False
    mode = spec.network or "bridge"
    if mode not in ("none", "host"):
        from minibox.net import (
            endpoint,  # the network modules are paid for by bridged containers only
        )

        if dry and mode in ("bridge", config.default_network()):
            new = store.load_network(config.default_network()) is None
        net = endpoint.resolve_network(mode, spec.ports, create=not dry)
    return Basics(image, keep, filter_step, lay, resolv, net, new)


def new_record(spec: ContainerSpec, basics: Basics, cid: str, name: str) -> ContainerRecord:
    from minibox.plan import spec as specs

    hostname = spec.hostname or cid[:12]
    return ContainerRecord(id=cid, name=name, created=time.time(), spec=spec, image_dir=str(basics.image.rootfs),
                           hostname=hostname, env=specs.container_env(spec.env, hostname, spec.tty), caps=basics.caps)


def for_run(spec: ContainerSpec, basics: Basics, rec: ContainerRecord) -> RunFacts:
    """RunFacts for a record whose address and ports are chosen (held, or, dry, as they would be)."""
    ff = peers = None
    if basics.network is not None:
        from minibox.net import endpoint, firewall

        ff = firewall.facts(basics.network.firewall, networks_change=basics.network_is_new)
        peers = endpoint.peers(rec)
    dirs = tuple(cgroups.group_dirs(config.cgroup_parent(), rec.id, basics.cgroups))
    return RunFacts(record=rec, container_dir=str(config.paths().container(rec.id)), host_resolv=basics.host_resolv,
                    seccomp=basics.seccomp, cgroup_dirs=dirs, cgroup_v2=basics.cgroups.version == "v2",
                    network=basics.network, network_is_new=basics.network_is_new, firewall=ff, peers=peers or ())


def new_id() -> str:
    return os.urandom(32).hex()
