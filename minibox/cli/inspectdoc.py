"""A container as `docker inspect` shapes it (the keys scripts read), plus a Minibox section of what it built."""

from __future__ import annotations

from minibox.cli.present import iso
from minibox.model import RUNNING, ContainerRecord, ContainerState


def inspect(rec: ContainerRecord, state: ContainerState, paths: dict, cgroup_dirs: list[str]) -> dict:
    """A container as `docker inspect` shapes it, plus a Minibox section of what it built."""
    from minibox.plan import restart

    policy = restart.parse(rec.spec.restart)
    ep = rec.endpoint
    ports: dict[str, list[dict]] = {}
    for p in rec.ports:
        ports.setdefault(f"{p.container_port}/{p.proto}", []).append(
            {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)})
        if not p.host_ip and ep and ep.ip6:  # published on IPv6 too, as Docker lists it
            ports[f"{p.container_port}/{p.proto}"].append({"HostIp": "::", "HostPort": str(p.host_port)})
    networks = {}
    from minibox import config

    for e in rec.endpoints():
        user = e.network != config.default_network()  # Docker: no aliases on the default bridge
        aliases = rec.spec.aliases if e is ep else e.aliases
        networks[e.network] = {"IPAddress": e.ip, "IPPrefixLen": e.prefixlen, "Gateway": e.gateway,
                               "GlobalIPv6Address": e.ip6, "GlobalIPv6PrefixLen": e.prefixlen6,
                               "IPv6Gateway": e.gateway6, "MacAddress": e.mac, "NetworkID": e.network,
                               "Aliases": [*aliases, rec.id[:12]] if user else None}
    return {
        "Id": rec.id,
        "Created": iso(rec.created),
        "Path": rec.argv[0] if rec.argv else "",
        "Args": list(rec.argv[1:]),
        "State": {
            "Status": "paused" if state.paused else state.status,
            "Running": state.status == RUNNING, "Paused": state.paused,
            "Pid": state.pid if state.status == RUNNING else 0,
            "ExitCode": state.exit_code,
            "Error": state.error,
            "StartedAt": iso(state.started_at),
            "FinishedAt": iso(state.finished_at),
            **({"Health": _health(rec)} if rec.healthcheck else {}),
        },
        "Image": rec.image_id,
        "Name": "/" + rec.name,
        "RestartCount": state.restart_count,
        "LogPath": paths["log"],
        "HostConfig": {
            "NetworkMode": rec.spec.network or "default",  # Docker's word when --network was not given
            "AutoRemove": rec.spec.remove,
            # as asked: HostIp "" for every address (NetworkSettings.Ports shows 0.0.0.0), as Docker's
            "PortBindings": {k: [{**b, "HostIp": "" if b["HostIp"] == "0.0.0.0" else b["HostIp"]} for b in v]
                             for k, v in ports.items()},
            "Memory": rec.spec.memory,
            "MemorySwap": rec.spec.memory_swap, "MemoryReservation": rec.spec.memory_reservation,
            "NanoCpus": round(rec.spec.cpus * 1e9), "CpuShares": rec.spec.cpu_shares,
            "OomKillDisable": rec.spec.oom_kill_disable,
            "CpusetCpus": rec.spec.cpuset_cpus, "CpusetMems": rec.spec.cpuset_mems,
            "BlkioWeight": rec.spec.blkio_weight,
            "PidsLimit": rec.spec.pids_limit,
            "ReadonlyRootfs": rec.spec.read_only,
            "Binds": [f"{m.source}:{m.target}" + (":ro" if m.readonly else "") for m in rec.mounts
                      if m.kind == "bind" and m.create_source],
            "Tmpfs": {m.target: m.options for m in rec.mounts if m.kind == "tmpfs"},
            "PublishAllPorts": rec.spec.publish_all,
            "RestartPolicy": {"Name": policy.name, "MaximumRetryCount": policy.max_retries},
            "ExtraHosts": list(rec.spec.add_hosts) or None,
            "CapAdd": [c.upper() for c in rec.spec.cap_add] or None,
            "CapDrop": [c.upper() for c in rec.spec.cap_drop] or None,
            "Privileged": rec.spec.privileged,
            "Init": rec.spec.init or None,
            "ShmSize": rec.spec.shm_size or 64 << 20,
            "Sysctls": dict(x.split("=", 1) for x in rec.spec.sysctls) or None,
            "Ulimits": [{"Name": u.split("=")[0], "Soft": s, "Hard": h}
                        for u, (_, s, h) in zip(rec.spec.ulimits, map(_ulimit, rec.spec.ulimits))] or None,
            "Devices": [dict(zip(("PathOnHost", "PathInContainer", "CgroupPermissions"), d.split(":")))
                        for d in rec.spec.devices] or None,
            "SecurityOpt": ["no-new-privileges"] if rec.spec.no_new_privs else None,
            "Dns": list(rec.spec.dns),
            "DnsSearch": list(rec.spec.dns_search),
            "DnsOptions": list(rec.spec.dns_options),
        },
        "GraphDriver": {"Name": "overlay", "Data": {
            "LowerDir": ":".join(rec.image_layers), "UpperDir": paths["upper"], "WorkDir": paths["work"],
            "MergedDir": paths["merged"]}},
        "Mounts": [mount_json(m, paths.get("volumes", "")) for m in rec.mounts if m.kind != "tmpfs"],
        "Config": {
            "Hostname": rec.hostname,
            "Domainname": rec.spec.domainname,
            "User": user_text(rec),
            "Env": list(rec.env),
            "Cmd": list(rec.spec.cmd) if rec.spec.cmd or rec.spec.entrypoint is not None else None,
            "Entrypoint": list(rec.spec.entrypoint) if rec.spec.entrypoint is not None else None,
            "Image": rec.spec.image,
            "WorkingDir": rec.workdir,
            "Tty": rec.spec.tty,
            "OpenStdin": rec.spec.interactive,
            "StopSignal": rec.stop_signal or "SIGTERM",
            **({"Healthcheck": {"Test": rec.healthcheck["Test"], "Retries": rec.healthcheck["Retries"],
                                **{k: int(rec.healthcheck[k] * 1e9) for k in ("Interval", "Timeout", "StartPeriod")}}}
               if rec.healthcheck else {}),
            **({"StopTimeout": rec.spec.stop_timeout} if rec.spec.stop_timeout >= 0 else {}),
            "Labels": dict(item.partition("=")[::2] for item in rec.labels),
        },
        "NetworkSettings": {
            "IPAddress": ep.ip if ep else "",
            "IPPrefixLen": ep.prefixlen if ep else 0,
            "Gateway": ep.gateway if ep else "",
            "GlobalIPv6Address": ep.ip6 if ep else "",
            "GlobalIPv6PrefixLen": ep.prefixlen6 if ep else 0,
            "IPv6Gateway": ep.gateway6 if ep else "",
            "MacAddress": ep.mac if ep else "",
            "Ports": ports,
            "Networks": networks,
        },
        "Minibox": {
            "ShimPid": state.shim_pid if state.status == RUNNING else 0,
            "Cgroups": cgroup_dirs,
            "HostVeth": ep.veth if ep else "",
            "Bridge": ep.bridge if ep else "",
            "FirewallBackend": rec.firewall,
        },
    }


def mount_json(m, volume_root: str) -> dict:
    """One entry of inspect's Mounts, as Docker shapes it."""
    if m.kind == "volume":
        return {"Type": "volume", "Name": m.source, "Source": f"{volume_root}/{m.source}/_data",
                "Destination": m.target, "Driver": "local", "Mode": "ro" if m.readonly else "z", "RW": not m.readonly,
                "Propagation": ""}
    return {"Type": "bind", "Source": m.source, "Destination": m.target, "Mode": "ro" if m.readonly else "",
            "RW": not m.readonly, "Propagation": "rprivate"}


def user_text(rec: ContainerRecord) -> str:
    """Config.User: what was asked (-u, or the image's USER); "" for root by default."""
    return rec.spec.user or ""


def _ulimit(text: str) -> tuple[str, int, int]:
    from minibox.plan import procflags

    return procflags.ulimit(text)


def _health(rec: ContainerRecord) -> dict:
    from minibox.engine import health

    return health.read(rec.id) or {"Status": "starting", "FailingStreak": 0, "Log": []}
