"""The flags of `run` and `create`, validated, as one ContainerSpec: every refusal of bad input before anything is made."""

from __future__ import annotations

import os

from minibox.errors import InvalidSpec
from minibox.model import ContainerSpec, NetworkMode


def build_spec(*, image: str, command: list[str], detach: bool, rm: bool, name: str, env: list[str],
               workdir: str, hostname: str, interactive: bool, tty: bool, network: str, publish: list[str],
               ip: str, memory: str, pids_limit: int, security_opt: list[str], log_opt: list[str],
               env_file: list[str] = (), user: str = "", group_add: list[str] = (), entrypoint: str | None = None,
               publish_all: bool = False, volume: list[str] = (), mount: list[str] = (), tmpfs: list[str] = (),
               read_only: bool = False, label: list[str] = (), pull: str = "missing", restart: str = "no",
               create: bool = False, expose: list[str] = (), add_host: list[str] = (), dns: list[str] = (),
               dns_search: list[str] = (), dns_option: list[str] = (), domainname: str = "",
               network_alias: list[str] = (), cap_add: list[str] = (), cap_drop: list[str] = (),
               privileged: bool = False, ulimit: list[str] = (), sysctl: list[str] = (), device: list[str] = (),
               shm_size: str = "", stop_signal: str = "", stop_timeout: int = -1, init: bool = False,
               cpus: str = "", cpu_shares: int = 0, memory_swap: str = "", memory_reservation: str = "",
               oom_kill_disable: bool = False, health: tuple = ("", "", "", 0, "", False),
               ip6: str = "", cpuset_cpus: str = "", cpuset_mems: str = "", blkio_weight: int = 0) -> ContainerSpec:
    """The command line, validated, as a ContainerSpec (keyword-only: there are many)."""
    from minibox.image import ref as refs
    from minibox.plan import procflags
    from minibox.plan import restart as policy
    from minibox.plan import spec as specs

    refs.parse(image)  # a bad reference is refused before anything else
    detach = detach or create  # `create`: the command runs in the background once started
    if pull not in ("missing", "always", "never"):
        raise InvalidSpec(f'invalid --pull "{pull}": use missing, always or never')
    if name:
        specs.validate_name(name)
    if hostname:
        specs.validate_hostname(hostname)
    if domainname:
        specs.validate_hostname(domainname, "domainname")
    mode = NetworkMode.parse(network)
    if mode.kind == "container" and not mode.name:
        raise InvalidSpec('invalid --network "container:": name the container whose network to share '
                          "(container:NAME or container:ID)")
    if mode.kind == "container" and (hostname or domainname):
        raise InvalidSpec(f"conflicting options: --{'hostname' if hostname else 'domainname'} and --network "
                          f"{network}: the container takes the names of the one whose network it shares")
    for alias in network_alias:
        specs.validate_hostname(alias, "--network-alias")
    if network_alias and mode.kind != "named":
        raise InvalidSpec(f"--network-alias {network_alias[0]}: network-scoped aliases need a user-defined network "
                          f"(network create), not --network {network or 'bridge'}")
    if mode.kind == "container" and (publish_all or expose):
        raise InvalidSpec(f"conflicting options: {'-P' if publish_all else '--expose'} and --network {network}: "
                          "expose and publish the ports of the container whose network it shares")
    if mode.kind == "container" and (add_host or dns or dns_search or dns_option):
        raise InvalidSpec(f"conflicting options: --add-host, --dns, --dns-search and --dns-option cannot be used "
                          f"with --network {network}: the container shares that one's /etc/hosts and resolv.conf")
    if tty and interactive and not detach and not os.isatty(0):
        raise InvalidSpec("the input device is not a TTY: drop -t, or run from a terminal")
    ports = ()
    if publish:
        from minibox.plan import ports as portplan

        ports = portplan.parse_all(publish)
        if mode.kind == "container":
            raise InvalidSpec(f"conflicting options: port publishing and --network {network}: publish the ports "
                              "of the container whose network it shares")
        if not mode.bridged:
            raise InvalidSpec(f"-p has no effect with --network {network}: use the default bridge network")
    if ip and not mode.bridged:
        raise InvalidSpec(f"--ip needs a bridge network, not --network {network}")
    if ip6 and mode.kind != "named":
        raise InvalidSpec(f"--ip6 needs a network created with --ipv6, not --network {network or 'bridge'}")
    mounts = ()
    if volume or mount or tmpfs:
        from minibox.plan import volumes

        mounts = volumes.parse_all(list(volume), list(mount), list(tmpfs))
    if user:
        from minibox.plan import users

        users.validate(user)
    profile, nnp = specs.parse_security_opt(security_opt)
    if profile not in ("", "unconfined"):
        profile = os.path.abspath(profile)
    max_size, max_files = specs.parse_log_opts(log_opt)
    env_items = [item for f in env_file for item in specs.parse_env_file(f)] + list(env)
    return ContainerSpec(
        image=image, cmd=tuple(command), name=name,
        env=specs.parse_env(env_items, dict(os.environ)), workdir=specs.validate_workdir(workdir) if workdir else "",
        hostname=hostname, interactive=interactive, tty=tty, detach=detach, remove=rm,
        network=network, ports=ports, ip=ip, ip6=ip6, memory=specs.parse_memory(memory) if memory else 0,
        pids_limit=specs.validate_pids_limit(pids_limit), seccomp=profile, log_max_size=max_size,
        log_max_files=max_files, entrypoint=((entrypoint,) if entrypoint else ()) if entrypoint is not None else None,
        user=user,
        group_add=tuple(group_add), mounts=mounts, read_only=read_only, publish_all=publish_all,
        labels=specs.parse_labels(label), pull=pull, restart=policy.check(restart, rm, detach),
        expose=tuple(specs.validate_expose(e) for e in expose),
        add_hosts=tuple(specs.validate_add_host(h) for h in add_host), dns=tuple(specs.validate_dns(d) for d in dns),
        dns_search=tuple(specs.validate_search(d) for d in dns_search), dns_options=tuple(dns_option),
        domainname=domainname, aliases=tuple(network_alias),
        cap_add=tuple(procflags.capability(c, "--cap-add") for c in cap_add),
        cap_drop=tuple(procflags.capability(c, "--cap-drop") for c in cap_drop), privileged=privileged,
        no_new_privs=nnp, ulimits=checked(ulimit, procflags.ulimit),
        sysctls=checked(sysctl, lambda x: procflags.sysctl(x, mode.own_netns)),
        devices=tuple(":".join(procflags.device(d)) for d in device),
        shm_size=specs.parse_size(shm_size, "--shm-size") if shm_size else 0,
        stop_signal=procflags.stop_signal(stop_signal) if stop_signal else "", stop_timeout=check_timeout(stop_timeout),
        init=init, **resources(memory, cpus, cpu_shares, memory_swap, memory_reservation, oom_kill_disable,
                               cpuset_cpus, cpuset_mems, blkio_weight),
        **health_flags(*health))


def health_flags(cmd: str, interval: str, timeout: str, retries: int, start_period: str, none: bool) -> dict:
    from minibox.plan import procflags

    if retries < 0:
        raise InvalidSpec(f"invalid --health-retries {retries}: give a count (0 or more)")
    if none and cmd:
        raise InvalidSpec("conflicting options: --no-healthcheck and --health-cmd")
    out = {"health_cmd": cmd, "health_retries": retries, "no_healthcheck": none}
    for key, text, flag in (("health_interval", interval, "--health-interval"),
                            ("health_timeout", timeout, "--health-timeout"),
                            ("health_start_period", start_period, "--health-start-period")):
        if text:
            out[key] = procflags.duration(text, flag)
            if key != "health_start_period" and out[key] < 0.001:
                raise InvalidSpec(f'invalid {flag} "{text}": it must be at least 1ms')
    return out


def resources(memory: str, cpus: str, shares: int, swap: str, reservation: str, no_oom_kill: bool,
              cpuset_cpus: str = "", cpuset_mems: str = "", blkio_weight: int = 0) -> dict:
    """--cpus, --cpu-shares, --memory-swap, --memory-reservation, --oom-kill-disable,
    --cpuset-cpus, --cpuset-mems, --blkio-weight, with Docker's checks."""
    from minibox.plan import spec as specs
    from minibox.runtime import cgroups

    out: dict = {"cpu_shares": shares, "oom_kill_disable": no_oom_kill}
    for flag, value, kind in (("--cpuset-cpus", cpuset_cpus, "cpus"), ("--cpuset-mems", cpuset_mems, "mems")):
        if value:
            out[f"cpuset_{kind}"] = specs.cpu_list(value, flag, cgroups.available(kind))
    if blkio_weight and not 10 <= blkio_weight <= 1000:
        raise InvalidSpec(f"invalid --blkio-weight {blkio_weight}: the range is 10 to 1000")
    if blkio_weight and not cgroups.has_io_weight():
        from minibox import notes

        notes.say("warning: this kernel does not support Block I/O weight (no BFQ scheduler) or the cgroup is not "
                  "mounted: --blkio-weight discarded")  # Docker's warning, and Docker's choice
    elif blkio_weight:
        out["blkio_weight"] = blkio_weight
    if shares < 0:
        raise InvalidSpec(f"invalid --cpu-shares {shares}: give a positive weight (Docker's default is 1024)")
    if cpus:
        try:
            n = float(cpus)
        except ValueError:
            n = -1.0
        if not 0.01 <= n <= (os.cpu_count() or 1):
            raise InvalidSpec(f'invalid --cpus "{cpus}": the range here is 0.01 to {os.cpu_count()} (this host\'s CPUs)')
        out["cpus"] = n
    if swap:
        if not memory:
            raise InvalidSpec("--memory-swap needs -m: it is memory plus swap, so the memory limit must be set too")
        total = -1 if swap.strip() == "-1" else specs.parse_size(swap, "--memory-swap")
        if total != -1 and total < specs.parse_memory(memory):
            raise InvalidSpec(f"--memory-swap {swap} is less than -m {memory}: it counts memory plus swap, so it must "
                              "be at least the memory limit")
        out["memory_swap"] = total
    if reservation:
        out["memory_reservation"] = specs.parse_size(reservation, "--memory-reservation")
    return out


def checked(values, check) -> tuple[str, ...]:
    """Values kept as typed once `check` (which raises on a bad one) has read each."""
    for v in values:
        check(v)
    return tuple(values)


def check_timeout(seconds: int) -> int:
    if seconds < -1:
        raise InvalidSpec(f"invalid --stop-timeout {seconds}: give seconds (0 or more), or -1 for stop's 10")
    return seconds
