"""What `run` reads before it plans: the image, the host's cgroups and resolv.conf, the network, the firewall.

Reading only: nothing here changes the host, except that a real run creates the default
network on first use, as Docker creates docker0 (a dry run plans that creation instead),
and pulls an image that is not here, as `docker run` does.
`minibox run` and `run --dry-run` read the same facts and hand them to plan.run.plan_run.
"""

from __future__ import annotations

import contextlib
import os
import time

from minibox import notes
from minibox import config, store
from minibox.errors import InvalidSpec
from minibox.image import store as images
from minibox.model import ContainerRecord, ContainerSpec, NetworkRecord
from minibox.plan.run import RunFacts
from minibox.plan.steps import LoadSeccomp
from minibox.runtime import caps, cgroups, seccomp
from minibox.value import Value


class Basics(Value):
    spec: ContainerSpec  # as asked, with what the image adds (-P: its exposed ports)
    image: images.Image
    caps: tuple[str, ...]
    seccomp: LoadSeccomp | None
    cgroups: cgroups.Layout
    host_resolv: str
    network: NetworkRecord | None
    network_is_new: bool
    passwd: str = ""  # the image's /etc/passwd and /etc/group: who -u names, and root's groups
    group: str = ""
    record: ContainerRecord | None = None  # the new container's record, built once here (new_record)
    peer: ContainerRecord | None = None  # --network container:NAME: NAME, running
    peer_pid: int = 0  # its PID 1, whose network namespace is joined
    host_hosts: str = ""  # the host's /etc/hosts (--network host starts from it, as Docker)
    devices: tuple = ()  # linux.devices entries: --device's, or all the host's with --privileged
    init: str = ""  # --init: the host's tini-static


def container_caps(device_control: str, quiet: bool = False) -> tuple[str, ...]:
    """Docker's 14 capabilities; without a device cgroup, CAP_MKNOD goes too (said once)."""
    if device_control:
        return caps.DEFAULT_CAPS
    marker = config.paths().root / "cache" / "warned-no-device-cgroup"
    if not quiet and not marker.exists():
        notes.say("note: no device cgroup here (neither the v1 devices controller nor cgroup v2): containers get "
                  "no CAP_MKNOD, and their root is mounted nodev, so they cannot open host devices")
        with contextlib.suppress(OSError):
            marker.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            marker.touch()
    return tuple(c for c in caps.DEFAULT_CAPS if c != "mknod")


def image_for(ref: str, policy: str = "missing", dry: bool = False) -> images.Image:
    """The image `ref` names; pulled first if it is not here (as `docker run` does, and
    always with --pull always), except for a dry run or --pull never."""
    img = images.find(ref)
    if img is not None and policy != "always":
        return img
    if dry or policy == "never":
        return images.get(ref)  # or NotFound
    from minibox.image import ref as refs
    from minibox.image import registry

    if img is None:
        notes.stream().write(f"Unable to find image '{refs.parse(ref).familiar}' locally\n")  # (Docker's words)
    return registry.pull(ref, out=notes.stream())


def layer_file(img: images.Image, path: str) -> str:
    """A file of the image, read from the topmost layer that has it (or deletes it), each
    layer's symlinks resolved inside that layer only; "" if none has it."""
    from minibox.image import WHITEOUT
    from minibox.fs import inroot

    name = path.lstrip("/")
    for d in images.lowerdirs(img):
        whiteout = os.path.join(d, os.path.dirname(name), WHITEOUT + os.path.basename(name))
        if os.path.lexists(whiteout):
            return ""
        try:
            root = inroot.Root(d)
        except OSError:
            continue
        try:
            fd = root.open(name, os.O_RDONLY)
        except OSError:
            continue
        finally:
            root.close()
        with os.fdopen(fd) as f:
            try:
                return f.read(1 << 20)
            except (OSError, UnicodeDecodeError):
                return ""
    return ""


def check_mounts(spec: ContainerSpec) -> None:
    """What only the host can tell: a --mount bind source must exist (-v makes it)."""
    for m in spec.mounts:
        if m.kind == "bind" and not m.create_source and not os.path.exists(m.source):
            raise InvalidSpec(f'invalid mount config for type "bind": bind source path does not exist: {m.source}')
        if m.kind == "bind" and m.create_source and os.path.exists(m.source) and not os.path.isdir(m.source) \
                and not os.path.isfile(m.source):
            raise InvalidSpec(f"-v source {m.source} is neither a directory nor a file")


def read(spec: ContainerSpec, dry: bool = False, cid: str = "", name: str = "") -> Basics:
    """What a run reads before it plans, and the new container's record (`cid` and `name`
    its id and name: a fresh id and a generated name when not given). Building the record
    here is what checks that the command and the user resolve, before anything is made."""
    from minibox.plan import ports as portplan

    check_mounts(spec)
    image = image_for(spec.image, spec.pull, dry)
    if spec.publish_all and spec.mode.bridged:
        spec = spec._replace(ports=portplan.publish_exposed(spec.ports, image.config.exposed + spec.expose))
    passwd, group = layer_file(image, "/etc/passwd"), layer_file(image, "/etc/group")
    lay = cgroups.layout()
    cgroups.check_limits(lay, limits_asked(spec._asdict()))
    keep = container_caps(cgroups.device_control(lay), quiet=dry)
    if spec.privileged or spec.cap_add or spec.cap_drop:
        keep = granted_caps(spec, keep)
    # --privileged: no seccomp filter, unless a profile is named (as Docker)
    filter_step = None if spec.privileged and not spec.seccomp else seccomp.step_for(spec.seccomp, keep,
                                                                                     cache_it=not dry)
    try:
        with open("/etc/resolv.conf") as f:
            resolv = f.read()
    except OSError:
        resolv = ""
    net, new = None, False
    peer, peer_pid, hosts = None, 0, ""
    if spec.mode.kind == "container":
        peer, peer_pid = running_peer(spec.mode.name)
        spec = spec._replace(network=f"container:{peer.id}")  # as Docker records it: by full id
    elif spec.mode.kind == "host":
        with contextlib.suppress(OSError), open("/etc/hosts") as f:
            hosts = f.read(1 << 20)
    if spec.mode.bridged:
        from minibox.net import (
            endpoint,  # the network modules are paid for by bridged containers only
        )

        if dry and spec.mode.kind == "default":
            new = store.load_network(config.default_network()) is None
        net = endpoint.resolve_network(spec.mode, spec.ports, create=not dry)
    basics = Basics(spec, image, keep, filter_step, lay, resolv, net, new, passwd, group, peer=peer,
                    peer_pid=peer_pid, host_hosts=hosts, devices=host_devices(spec), init=init_program(spec))
    from minibox.plan import spec as specs

    cid = cid or new_id()
    return basics._replace(record=new_record(spec, basics, cid, name or spec.name or
                                             specs.generate_name(store.name_taken)))


def granted_caps(spec: ContainerSpec, default: tuple[str, ...]) -> tuple[str, ...]:
    """--privileged (every capability) or --cap-add/--cap-drop, within what this runtime
    holds itself: it cannot grant more (this machine kind's bounding set lacks some)."""
    from minibox import linux
    from minibox.plan import procflags
    from minibox.plan.procsteps import CAP_NUMBERS

    _, permitted, _ = linux.capget()
    top = caps.last_cap()
    held = tuple(n for n, i in CAP_NUMBERS.items() if i <= top and permitted & (1 << i))
    if spec.privileged:
        return held
    missing = [c for c in spec.cap_add if c != "all" and c not in held]
    if missing:
        raise InvalidSpec(f"--cap-add {missing[0].upper()}: this runtime does not hold that capability itself "
                          "(its bounding set), so it cannot grant it")
    return procflags.capabilities(default, spec.cap_add, spec.cap_drop, held)


SKIP_DEVICES = ("pts", "shm", "mqueue", "fd", "console", "ptmx")  # the container's own, or not devices


def host_devices(spec: ContainerSpec) -> tuple:
    """linux.devices entries: every device node of the host's /dev with --privileged, as
    Docker's; then each --device, which must be a device node."""
    out = {}
    if spec.privileged:
        for top, dirs, files in os.walk("/dev"):
            dirs[:] = [d for d in dirs if os.path.join(top, d)[5:] not in SKIP_DEVICES]
            for f in files:
                path = os.path.join(top, f)
                with contextlib.suppress(OSError):
                    entry = _device(os.stat(path), path, "rwm") if path[5:] not in SKIP_DEVICES else None
                    if entry:
                        out[path] = entry
    for d in spec.devices:
        host, ctr, perms = d.split(":")
        try:
            entry = _device(os.stat(host), ctr, perms)
        except OSError as e:
            raise InvalidSpec(f"--device {host}: {e.strerror}") from None
        if entry is None:
            raise InvalidSpec(f"--device {host}: not a device node (a character or block device is needed)")
        out[ctr] = entry
    return tuple(out.values())


def _device(st: os.stat_result, path: str, perms: str) -> dict | None:
    import stat

    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        return None
    return {"path": path, "type": "c" if stat.S_ISCHR(st.st_mode) else "b", "major": os.major(st.st_rdev),
            "minor": os.minor(st.st_rdev), "fileMode": st.st_mode & 0o777, "uid": 0, "gid": 0, "perms": perms}


def init_program(spec: ContainerSpec) -> str:
    """--init: Debian's tini-static (what Docker ships as docker-init), static so it runs in
    any image."""
    if not spec.init:
        return ""
    import shutil

    found = shutil.which("tini-static") or ("/usr/bin/tini-static" if os.path.exists("/usr/bin/tini-static") else "")
    if not found:
        raise InvalidSpec("--init needs tini (apt-get install tini, or scripts/setup)")
    return found


def running_peer(ref: str) -> tuple[ContainerRecord, int]:
    """--network container:REF: REF's record and PID 1, if it runs (Docker refuses the rest)."""
    from minibox.engine import lifecycle
    from minibox.errors import NotRunning
    from minibox.model import RUNNING

    rec = store.resolve(ref)
    state = lifecycle.refresh(rec.id)
    if state.status != RUNNING or not state.pid:
        raise NotRunning(f"cannot join the network of container {rec.name}: it is {state.status}, not running "
                         f"(`minibox start {rec.name}` first)")
    if rec.spec.mode.kind == "container":
        raise InvalidSpec(f"cannot join the network of container {rec.name}: it shares another's "
                          f"({rec.spec.network}); name that one instead")
    return rec, state.pid


def new_record(spec: ContainerSpec, basics: Basics, cid: str, name: str) -> ContainerRecord:
    """The record of a new container: what the spec asks, completed by the image's config
    with docker run's rules. Pure but for the anonymous volumes' new names."""
    from minibox.image.config import command
    from minibox.plan import spec as specs
    from minibox.plan import users

    cfg = basics.image.config
    if basics.peer is not None:
        hostname = basics.peer.hostname  # it shares that one's names too, as in Docker
    elif spec.mode.kind == "host" and not spec.hostname:
        import socket

        hostname = socket.gethostname()  # Docker's, for --network host
    else:
        hostname = spec.hostname or cid[:12]
    user = users.resolve(spec.user or cfg.user, spec.group_add, basics.passwd, basics.group)
    # The image's VOLUMEs that no -v/--mount/--tmpfs covers: an anonymous volume each, as Docker's.
    covered = {os.path.normpath(m.target) for m in spec.mounts}
    from minibox.model import MountSpec

    wanted = spec.mounts + tuple(MountSpec("volume", "", v) for v in cfg.volumes if v not in covered)
    mounts = tuple(m._replace(source=os.urandom(32).hex(), anonymous=True) if m.kind == "volume" and not m.source
                   else m for m in wanted)
    return ContainerRecord(
        id=cid, name=name, created=time.time(), spec=spec, image_layers=images.lowerdirs(basics.image),
        image_id=basics.image.id, hostname=hostname,
        env=specs.container_env(spec.env, hostname, spec.tty, image_env=cfg.env, home=user.home),
        caps=basics.caps, argv=command(cfg, spec.cmd, spec.entrypoint), workdir=spec.workdir or cfg.workdir or "/",
        user=user._asdict(), mounts=mounts, stop_signal=spec.stop_signal or cfg.stop_signal,
        labels=tuple(f"{k}={v}" for k, v in cfg.labels) + spec.labels, healthcheck=healthcheck(spec, cfg.healthcheck))


def healthcheck(spec: ContainerSpec, image: dict | None) -> dict | None:
    """The check a container runs: --health-* over the image's HEALTHCHECK, Docker's
    defaults (30 s interval and timeout, 3 retries) for what neither says."""
    if spec.no_healthcheck:
        return None
    base = image or {}
    test = ["CMD-SHELL", spec.health_cmd] if spec.health_cmd else base.get("Test")
    if not test or test[0] == "NONE":
        return None
    return {"Test": list(test), "Interval": spec.health_interval or base.get("Interval") or 30.0,
            "Timeout": spec.health_timeout or base.get("Timeout") or 30.0,
            "Retries": spec.health_retries or base.get("Retries") or 3,
            "StartPeriod": spec.health_start_period or base.get("StartPeriod") or 0.0}


LIMIT_FLAGS = {"memory": (("memory", "-m"), ("memory_swap", "--memory-swap"),
                          ("memory_reservation", "--memory-reservation"), ("oom_kill_disable", "--oom-kill-disable")),
               "pids": (("pids_limit", "--pids-limit"),), "cpu": (("cpus", "--cpus"), ("cpu_shares", "--cpu-shares")),
               "cpuset": (("cpuset_cpus", "--cpuset-cpus"), ("cpuset_mems", "--cpuset-mems"))}


def limits_asked(values: dict) -> dict[str, str]:
    """The cgroup controllers that limits need (`values`: ContainerSpec fields, as run or
    update has them), each with the flags that ask for it."""
    asked = {ctl: " and ".join(flag for field, flag in pairs if values.get(field)) for ctl, pairs in LIMIT_FLAGS.items()}
    return {ctl: flags for ctl, flags in asked.items() if flags}


def for_run(spec: ContainerSpec, basics: Basics, rec: ContainerRecord, ff=None) -> RunFacts:
    """RunFacts for a record whose address and ports are chosen (held, or, dry, as they would
    be); `ff`: the firewall's facts, as `run` read them under the firewall lock (a dry run
    reads them here, without it)."""
    if basics.network is not None and ff is None:
        from minibox.net import firewall

        ff = firewall.facts(basics.network.firewall, networks_change=basics.network_is_new)
    extra = (("cpuset",) if spec.cpuset_cpus or spec.cpuset_mems else ()) + (("blkio",) if spec.blkio_weight else ())
    dirs = tuple(cgroups.group_dirs(config.cgroup_parent(), rec.id, basics.cgroups, extra))
    present = tuple(m.source for m in rec.mounts if m.kind == "bind" and os.path.exists(m.source))
    return RunFacts(record=rec, container_dir=str(config.paths().container(rec.id)), host_resolv=basics.host_resolv,
                    seccomp=basics.seccomp, cgroup_dirs=dirs, cgroup_v2=basics.cgroups.version == "v2",
                    network=basics.network, network_is_new=basics.network_is_new, firewall=ff,
                    volume_root=str(config.paths().volumes), present=present,
                    netns=f"/proc/{basics.peer_pid}/ns/net" if basics.peer is not None else "",
                    etc_dir=str(config.paths().container(basics.peer.id)) if basics.peer is not None else "",
                    host_hosts=basics.host_hosts, host_gateway=host_gateway(spec, basics),
                    dns_dir=str(config.paths().dns) if basics.network is not None and
                    basics.network.name != config.default_network() else "", devices=basics.devices,
                    init=basics.init)


def host_gateway(spec: ContainerSpec, basics: Basics) -> str:
    """--add-host NAME:host-gateway: its network's gateway, or the default network's (a host
    address, as Docker's docker0 address); "" when no --add-host asks."""
    if not any(h.endswith(":host-gateway") for h in spec.add_hosts):
        return ""
    net = basics.network or store.load_network(config.default_network())
    if net is None:
        raise InvalidSpec("--add-host NAME:host-gateway: there is no bridge network yet whose gateway it could name "
                          "(run a container on the default network once)")
    return net.gateway


def new_id() -> str:
    return os.urandom(32).hex()
