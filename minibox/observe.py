"""Reading what exists, for `explain CTR` and `top`: a container's namespaces, cgroup and network
objects as the commands that show them, run for real.

Nothing here changes anything; it asks the kernel (through /proc and the same tools a
learner would use) and prints what it answers.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from minibox.model import ContainerRecord, ContainerState

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


@dataclass(frozen=True)
class Probe:
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
                                 "nft list map ip minibox hostport-any; nft list map ip minibox hostport-addr"))
        out.append(Probe("connections conntrack tracks to or from its address (DNAT/SNAT in the reply tuple)",
                         f"conntrack -L -d {ep.ip} 2>/dev/null; conntrack -L -s {ep.ip} 2>/dev/null"))
    elif rec.spec.network == "host":
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

