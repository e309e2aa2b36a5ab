"""Reading what exists, for `explain CTR` and `top`: namespaces, cgroups, network objects and defences.

A container's kernel objects as the commands that show them, run for real.

Nothing here changes anything; it asks the kernel (through /proc and the same tools a
learner would use) and prints what it answers.
"""

from __future__ import annotations

import os
import subprocess

from minibox.model import ContainerRecord, ContainerState
from minibox.value import Value

NS_KINDS = ("pid", "mnt", "net", "uts", "ipc", "cgroup", "user")


def ns_table(pid: int) -> list[list[str]]:
    """[kind, the container's namespace, the host's] for each namespace kind."""
    rows = []
    for kind in NS_KINDS:
        try:
            mine = os.readlink(f"/proc/{pid}/ns/{kind}")
            host = os.readlink(f"/proc/self/ns/{kind}")
        except OSError:
            continue
        rows.append([kind, mine, host, "shared with the host" if mine == host else "its own"])
    return rows


def cgroup_lines(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return [line.strip() for line in f if line.strip()]
    except OSError:
        return []


class Probe(Value):
    why: str
    command: str


def probes(rec: ContainerRecord, state: ContainerState) -> list[Probe]:
    """The commands that show a running container's kernel objects."""
    pid = state.pid
    inside = f"nsenter --net=/proc/{pid}/ns/net "
    out = [
        Probe(f"PID 1 of {rec.name} is host PID {pid}; its namespaces (same inode as the host's = shared)",
              f"ls -l /proc/{pid}/ns"),
        Probe("the same process seen from both PID namespaces: host PID first, container PID last",
              f"grep NSpid /proc/{pid}/status"),
        Probe("its root: an overlay of the image (lowerdir) and its own writable layer (upperdir)",
              f"awk '$5 == \"/\"' /proc/{pid}/mountinfo"),
        Probe("its cgroups", f"cat /proc/{pid}/cgroup"),
    ]
    ep = rec.endpoint
    if ep is not None:
        out += [
            Probe(f"the host end of its veth pair, plugged into {ep.bridge} (hairpin on)",
                  f"ip -d link show {ep.veth}"),
            Probe("the other end, eth0, inside its network namespace", f"{inside}ip addr show eth0"),
            Probe("its routes: everything off the subnet goes to the gateway, the bridge's address",
                  f"{inside}ip route"),
            Probe("its neighbours (ARP): who it has talked to on the bridge", f"{inside}ip neigh"),
        ]
        if rec.ports:
            if rec.firewall == "iptables":
                out.append(Probe("its DNAT rules, with packet counters",
                                 f"iptables -t nat -L MINIBOX -v -n | grep -e pkts -e {rec.short_id}"))
            else:
                out.append(Probe("its published ports: elements of minibox's DNAT maps, with packet counters",
                                 "nft list map inet minibox hostport-any; nft list map inet minibox hostport-addr"))
        out.append(Probe("connections conntrack tracks to or from its address (DNAT/SNAT in the reply tuple)",
                         f"conntrack -L -d {ep.ip} 2>/dev/null; conntrack -L -s {ep.ip} 2>/dev/null"))
    elif rec.spec.mode.kind == "host":
        out.append(Probe("it shares the host's network namespace (--network host)", f"{inside}ip -br addr"))
    else:
        out.append(Probe("its own network namespace, with nothing but lo (--network none)", f"{inside}ip -br addr"))
    return out


def run_probe(probe: Probe, rec: ContainerRecord) -> str:
    res = subprocess.run(probe.command, shell=True, capture_output=True, text=True)
    text = res.stdout.rstrip()
    if "hostport" in probe.command:  # keep the map headers and this container's elements only
        keep = []
        for line in text.splitlines():
            if rec.short_id in line or "map hostport" in line or "type " in line:
                keep.append(line)
        text = "\n".join(keep)
    return text



# --- what keeps a container in ----------------------------------------------------------------


class Defence(Value):
    name: str
    now: str  # as the kernel reports it right now
    stops: str  # the attack it stops


def _status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def cap_names(mask_hex: str) -> list[str]:
    import prctl

    mask = int(mask_hex, 16)
    by_number = {getattr(prctl, "CAP_" + n.upper()): n for n in prctl.ALL_CAP_NAMES}
    return [by_number.get(bit, f"cap{bit}") for bit in range(64) if mask >> bit & 1]


def _mount_points(pid: int) -> set[str]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return {line.split()[4] for line in f}


def security(rec: ContainerRecord, state: ContainerState) -> list[Defence]:
    """Each defence of a running container, read back from the kernel, and what it stops."""
    from minibox import config
    from minibox.plan import devices
    from minibox.plan.mounts import MASKED_PATHS, READONLY_PATHS
    from minibox.runtime import cgroups

    pid = state.pid
    st = _status(pid)
    caps = sorted(cap_names(st.get("CapBnd", "0")))
    mode = {"0": "off", "1": "strict", "2": "filter"}.get(st.get("Seccomp", "0"), st.get("Seccomp", "?"))
    points = _mount_points(pid)
    masked = [p for p in MASKED_PATHS if p in points]
    readonly = [p for p in READONLY_PATHS if p in points]
    dirs = cgroups.existing_dirs(config.cgroup_parent(), rec.id)
    dev_dir = next((d for d in dirs if "/devices/" in d), "")
    v2_dir = next((d for d in dirs if cgroups.is_cgroup2(d)), "")
    if dev_dir:
        with open(f"{dev_dir}/devices.list") as f:
            allowed = ", ".join(line.strip() for line in f)
        devs = f"v1 devices controller ({dev_dir}): {allowed}"
    elif v2_dir:
        devs = (f"v2: an eBPF program on {v2_dir} allowing "
                + ", ".join(r.line() for r in devices.DEFAULT_RULES))
    else:
        devs = "no device cgroup here: CAP_MKNOD dropped and the root mounted nodev instead"
    out = [
        Defence("capabilities", f"{len(caps)}: {', '.join(caps)}",
                "without sys_admin, sys_module, sys_rawio, sys_ptrace, net_admin: no mounts, kernel modules, "
                "raw memory, tracing host processes or changing the host's network"),
        Defence("no_new_privs", st.get("NoNewPrivs", "?"),
                "a setuid-root program in the image cannot raise privileges (nor a file capability)"
                if st.get("NoNewPrivs") != "0" else
                "off, as Docker's default (--security-opt no-new-privileges sets it): a setuid-root program may "
                "raise privileges, but never past the bounding set above"),
        Defence("seccomp", f"mode {mode}, {st.get('Seccomp_filters', '0')} filter(s)",
                "unshare/clone of new namespaces (a user namespace grants every capability), mount, keyctl, "
                "io_uring, perf_event_open, bpf: refused before the kernel runs them"),
        Defence("masked paths", f"{len(masked)} of {len(MASKED_PATHS)} present here masked: {', '.join(masked)}",
                "reading the host's memory (/proc/kcore), keys, timers and interrupts"),
        Defence("read-only paths", f"{len(readonly)} of {len(READONLY_PATHS)}: {', '.join(readonly)}",
                "writing host-global sysctls and core_pattern (which would run a program as host root), "
                "or sysrq-trigger"),
        Defence("devices", devs,
                "opening /dev/kmsg, the host's disks or its console through a node made with mknod or shipped "
                "in the image"),
    ]
    if rec.endpoint is not None:
        guard = "ct status ! dnat" in _guard_listing(rec.firewall)
        out.append(Defence("127.0.0.0/8 guard",
                           "in place: from a minibox bridge to 127.0.0.0/8 only replies DNAT made" if guard
                           else "MISSING (run `minibox network reconcile`)",
                           "a container with CAP_NET_RAW sending a frame to 127.0.0.1 through the bridge, "
                           "reaching services bound only to the host's loopback (CVE-2020-8558)"))
    return out


def _guard_listing(backend: str) -> str:
    if backend == "iptables":
        text = subprocess.run(["iptables-save", "-t", "filter"], capture_output=True, text=True).stdout
        return "ct status ! dnat" if "MINIBOX-INPUT" in text and "! --ctstate DNAT" in text else ""
    return subprocess.run(["nft", "list", "chain", "inet", "minibox", "input"], capture_output=True, text=True).stdout


def cgroup_mounts(mountinfo: str) -> dict[str, str]:
    """Where each hierarchy is mounted: {"memory": "/sys/fs/cgroup/memory", "": cgroup2's, ...}."""
    out: dict[str, str] = {}
    for line in mountinfo.splitlines():
        head, _, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if len(rest) < 3 or rest[0] not in ("cgroup", "cgroup2"):
            continue
        keys = [""] if rest[0] == "cgroup2" else [o for o in rest[2].split(",") if o not in ("rw", "ro")]
        for key in keys:
            out.setdefault(key, fields[4])
    return out


def cgroup_table(pid: int) -> list[list[str]]:
    """[hierarchy, the container's group, that group's directory on the host] for each
    hierarchy where the container's group is not the one this minibox command runs in."""
    mine = {line.split(":", 2)[1]: line.split(":", 2)[2] for line in cgroup_lines(pid)}
    asking = {line.split(":", 2)[1]: line.split(":", 2)[2] for line in cgroup_lines(os.getpid())}
    try:
        with open("/proc/self/mountinfo") as f:
            mounts = cgroup_mounts(f.read())
    except OSError:
        mounts = {}
    rows = []
    for k, group in mine.items():
        if group == asking.get(k):
            continue
        mnt = next((mounts[c] for c in (k.split(",") if k else [""]) if c in mounts), "")
        rows.append([k or "(v2)", group, f"{mnt.rstrip('/')}{group}" if mnt else "(not mounted here)"])
    return rows


def ps_rows(options: list[str], pids: set[int]) -> str:
    """`docker top CTR OPTIONS`: the host's `ps OPTIONS`, its header and the rows whose PID
    column names one of `pids` (the container's processes, as the host numbers them)."""
    from minibox.errors import InvalidSpec

    res = subprocess.run(["ps", *options], capture_output=True, text=True)
    if res.returncode != 0:
        raise InvalidSpec(f"ps {' '.join(options)}: {(res.stderr or res.stdout).strip().splitlines()[0]}")
    lines = res.stdout.splitlines()
    header = lines[0].split() if lines else []
    if "PID" not in header:
        raise InvalidSpec(f"ps {' '.join(options)} prints no PID column, so its rows cannot be matched to the "
                          "container's processes: add pid (-o pid,...)")
    col = header.index("PID")
    keep = [line for line in lines[1:] if len(line.split()) > col and line.split()[col].isdigit()
            and int(line.split()[col]) in pids]
    return "\n".join([lines[0], *keep])
