"""`minibox doctor`: checks a host for what breaks container networking, and says how to fix it.

Each check reads the kernel or a tool's listing and returns Findings: what was seen, what
it means, and the command that fixes it. An "error" is something that would break
`minibox run -p`; doctor exits non-zero when it finds one. Nothing here changes the host.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import textwrap

from minibox import store
from minibox.plan import ipam, rules
from minibox.value import Value

OK, INFO, WARN, ERROR = "ok", "info", "warn", "error"


class Finding(Value):
    level: str
    check: str
    seen: str
    means: str = ""
    fix: str = ""


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout
    except FileNotFoundError:
        return ""


def check_tools() -> list[Finding]:
    missing = [t for t in ("nft", "iptables", "iptables-restore", "conntrack", "cc") if not shutil.which(t)]
    if missing:
        return [Finding(ERROR, "tools", f"missing: {' '.join(missing)}",
                        "minibox applies rules with nft/iptables, flushes conntrack, builds its shim with cc",
                        "scripts/setup  (or: apt-get install nftables iptables conntrack build-essential)")]
    return [Finding(OK, "tools", "nft, iptables, conntrack and cc are installed")]


def check_forwarding() -> list[Finding]:
    if _read("/proc/sys/net/ipv4/ip_forward") == "1":
        return [Finding(OK, "ip_forward", "net.ipv4.ip_forward = 1: the host routes between interfaces")]
    return [Finding(INFO, "ip_forward", "net.ipv4.ip_forward = 0",
                    "containers cannot leave the bridge, nor be reached through published ports from another "
                    "machine; minibox turns it on (and says so) at the first run on a bridge network",
                    "sysctl -w net.ipv4.ip_forward=1")]


def _saved(table: str) -> list[str]:
    from minibox.net.firewall import iptables

    return iptables.saved(table)


def check_forward_policy() -> list[Finding]:
    lines = _saved("filter")
    exists = any(line.startswith(":FORWARD ") for line in lines)
    drops = any(line.startswith(":FORWARD DROP") for line in lines)
    jumped = any(line.startswith("-A FORWARD") and "MINIBOX-FORWARD" in line for line in lines)
    if not exists:
        return [Finding(OK, "FORWARD policy", "iptables has no filter FORWARD chain: nothing there drops minibox's "
                        "traffic (if Docker creates one later, run `minibox network reconcile`)")]
    if jumped or not store.all_networks():
        policy = "DROP (Docker leaves it so)" if drops else "ACCEPT"
        return [Finding(OK, "FORWARD policy", f"iptables' FORWARD policy is {policy}; minibox's MINIBOX-FORWARD "
                        "accepts its own traffic first, whatever the policy becomes" if jumped else
                        f"iptables' FORWARD policy is {policy}; minibox adds its accepts with its first network")]
    level = ERROR if drops else WARN
    return [Finding(level, "FORWARD policy", f"iptables' FORWARD policy is {'DROP' if drops else 'ACCEPT'} and "
                    "minibox's jump to MINIBOX-FORWARD is missing",
                    "egress, published ports and even traffic between containers are dropped: an accept in "
                    "minibox's nft table cannot overrule a drop in another table's base chain" if drops else
                    "the day the policy becomes DROP (Docker starting), minibox's containers are cut off",
                    "minibox network reconcile")]


def check_forward_blockers() -> list[Finding]:
    """Drops outside minibox's rules that its accepts cannot overrule (net.firewall.blockers)."""
    from minibox.net.firewall import blockers

    nets = store.all_networks()
    if not nets:
        return []
    found = blockers.find([n.bridge for n in nets])
    return [Finding(ERROR, "forward blocker", f"{b.where}: {b.what}",
                    "it drops forwarded packets before or beside minibox's accepts: containers' egress, published "
                    "ports from the LAN, and traffic between networks are cut, while minibox's own rules look fine",
                    "; ".join(b.fix)) for b in found] or \
        [Finding(OK, "forward blockers", "no DROP above minibox's jump, no other forward chain with policy drop")]


def check_ruleset() -> list[Finding]:
    """Did another tool change the ruleset since minibox wrote its rules, and did that break them?"""
    from minibox.net import firewall
    from minibox.net.firewall import generation

    nets = store.all_networks()
    if not nets:
        return []
    missing = []
    for fw in {n.firewall for n in nets}:
        want = firewall.desired(fw)
        have = firewall.backend(fw).listing()
        for n in want.nets:
            if f'"{n.bridge}"' not in have and f"-i {n.bridge}" not in have and f"-o {n.bridge}" not in have:
                missing.append(f"network {n.name} ({fw})")
        for p in want.ports:
            if p.tag not in have:
                missing.append(f"port {p.host_port}/{p.proto} of {p.owner_name} ({fw})")
    if missing:
        return [Finding(ERROR, "ruleset", "minibox's rules are missing for " + ", ".join(missing[:4])
                        + (f" and {len(missing) - 4} more" if len(missing) > 4 else ""),
                        "another tool changed the ruleset (an `nft flush ruleset`, a firewall reload, a reboot): "
                        "those containers are unreachable; the next `minibox run` also re-asserts them",
                        "minibox network reconcile")]
    if not generation.in_sync():
        return [Finding(INFO, "ruleset", "the ruleset changed since minibox last wrote its rules; minibox's own "
                        "rules are all there", "the next minibox change re-asserts them all, in one transaction")]
    return [Finding(OK, "ruleset", "minibox's rules are as it left them")]


def check_iptables_variant() -> list[Finding]:
    version = _run(["iptables", "-V"]).strip()
    legacy_tables = _read("/proc/net/ip_tables_names").split()
    out = [Finding(OK, "iptables", version or "iptables is not installed")]
    if "nf_tables" in version and legacy_tables:
        out.append(Finding(WARN, "iptables split", f"iptables is the nf_tables variant, but legacy tables exist: "
                           f"{', '.join(legacy_tables)}", "rules in the legacy tables are invisible to `iptables` "
                           "and `nft`, yet still filter packets (a legacy FORWARD DROP would drop minibox's traffic)",
                           "iptables-legacy-save   # to see them"))
    return out


def check_other_runtimes() -> list[Finding]:
    saved = _run(["iptables-save"])
    tables = _run(["nft", "list", "tables"])
    seen = []
    for marker, who in (("DOCKER", "Docker"), ("CNI-", "CNI plugins"), ("NETAVARK", "Podman (netavark)")):
        if marker in saved:
            seen.append(f"{who} (iptables)")
    for marker, who in (("docker-bridges", "Docker"), ("netavark", "Podman (netavark)"),
                        ("cni_hostport", "CNI portmap")):
        if marker in tables:
            seen.append(f"{who} (nftables)")
    if not seen:
        return [Finding(OK, "other runtimes", "no Docker, Podman or CNI rules")]
    return [Finding(INFO, "other runtimes", "rules of " + ", ".join(seen),
                    "they coexist with minibox; a host port they publish is refused by minibox (it binds each port "
                    "first), and their subnets are avoided (they are routes)")]


def check_route_localnet() -> list[Finding]:
    out = []
    if _read("/proc/sys/net/ipv4/conf/all/route_localnet") == "1":
        out.append(Finding(WARN, "route_localnet", "net.ipv4.conf.all.route_localnet = 1",
                           "every interface accepts packets for 127.0.0.0/8: a LAN host can reach services bound to "
                           "127.0.0.1 (moby#45610); minibox needs it on its bridges only",
                           "sysctl -w net.ipv4.conf.all.route_localnet=0"))
    for net in store.all_networks():
        value = _read(f"/proc/sys/net/ipv4/conf/{net.bridge}/route_localnet")
        if value == "0":
            out.append(Finding(ERROR, "route_localnet", f"route_localnet is 0 on {net.bridge} (network {net.name})",
                               "`curl 127.0.0.1:PORT` on the host cannot reach a published port",
                               f"sysctl -w net.ipv4.conf.{net.bridge}.route_localnet=1"))
    return out or [Finding(OK, "route_localnet", "set on minibox's bridges only")]


def check_br_netfilter() -> list[Finding]:
    value = _read("/proc/sys/net/bridge/bridge-nf-call-iptables")
    if value == "1":
        return [Finding(INFO, "br_netfilter", "bridge-nf-call-iptables = 1: bridged frames pass the firewall",
                        "a FORWARD policy of DROP also drops traffic between containers of one bridge unless "
                        "accepted; minibox accepts its own")]
    return [Finding(OK, "br_netfilter", "bridge-nf-call-iptables is " + (value or "absent (no br_netfilter)"))]


def check_networks() -> list[Finding]:
    from minibox.net import links

    out = []
    routes = links.host_routes()
    have_nft = subprocess.run(["nft", "list", "table", "inet", rules.TABLE], capture_output=True).returncode == 0
    for net in store.all_networks():
        clash = ipam.conflicting_route(ipaddress.IPv4Network(net.subnet), routes, own_dev=net.bridge)
        if clash:
            out.append(Finding(ERROR, "subnet", f"network {net.name} ({net.subnet}) overlaps the route {clash.dst} "
                               f"dev {clash.dev}", "its containers are unreachable from whatever that route leads to",
                               f"minibox network rm {net.name}; minibox network create --subnet OTHER {net.name}"))
        if not links.exists(net.bridge):
            out.append(Finding(ERROR, "bridge", f"network {net.name}'s bridge {net.bridge} is missing",
                               "deleted by hand or by another tool", "minibox network reconcile"))
        if net.firewall == "nftables" and not have_nft:
            out.append(Finding(ERROR, "rules", "minibox's nft table is missing", "no NAT, no published ports",
                               "minibox network reconcile"))
        if net.firewall == "iptables" and not any("MINIBOX" in line for line in _saved("nat")):
            out.append(Finding(ERROR, "rules", "minibox's iptables chains are missing",
                               "no NAT, no published ports", "minibox network reconcile"))
    if not store.all_networks():
        out.append(Finding(INFO, "networks", "no minibox network yet: the first `minibox run` creates one"))
    elif not out:
        out.append(Finding(OK, "networks", ", ".join(f"{n.name} {n.subnet} on {n.bridge}" for n in
                                                        store.all_networks())))
    return out


def _listeners() -> dict[tuple[str, int], set[str]]:
    """(proto, port) -> the socket inodes listening on it."""
    found: dict[tuple[str, int], set[str]] = {}
    for path, proto in (("/proc/net/tcp", "tcp"), ("/proc/net/tcp6", "tcp")):
        for line in _read(path).splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A":  # LISTEN
                found.setdefault((proto, int(fields[1].rsplit(":", 1)[1], 16)), set()).add(fields[9])
    return found


def _socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process `pid` holds: a shim's are its published ports."""
    out = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                out.add(target[8:-1])
    except OSError:
        pass
    return out


def check_ports() -> list[Finding]:
    from minibox.engine import lifecycle

    out = []
    listening = _listeners()
    for rec in store.all_records():
        if not rec.ports:
            continue
        state = lifecycle.refresh(rec.id)
        if state.status != "running":
            continue
        ours = _socket_inodes(state.shim_pid)  # the shim holds each TCP port as a listener
        for p in rec.ports:
            if listening.get((p.proto, p.host_port), set()) - ours:
                out.append(Finding(ERROR, "host port", f"a host process listens on {p.host_port}/{p.proto}, which "
                                   f"minibox DNATs to container {rec.name}",
                                   "connections to that port reach the container; the host service is shadowed",
                                   f"ss -ltnp 'sport = :{p.host_port}'   # find it, then move one of the two"))
    return out or [Finding(OK, "host ports", "no host service listens on a port minibox publishes")]


def check_resolv() -> list[Finding]:
    text = _read("/etc/resolv.conf")
    servers = [line.split()[1] for line in text.splitlines() if line.startswith("nameserver") and len(line.split()) > 1]
    loopback = [s for s in servers if s.startswith("127.") or s == "::1"]
    if not loopback:
        return [Finding(OK, "resolv.conf", f"nameservers {' '.join(servers) or '(none)'} are reachable from containers")]
    fix = ("point /etc/resolv.conf at /run/systemd/resolve/resolv.conf" if "127.0.0.53" in loopback
           else "add a nameserver that is not on 127.0.0.0/8")
    rest = [s for s in servers if s not in loopback]
    return [Finding(INFO, "resolv.conf", f"loopback nameservers {' '.join(loopback)}",
                    "a container's 127.0.0.1 is its own: minibox drops these from its resolv.conf"
                    + ("" if rest else ", which leaves none, so containers use 8.8.8.8"), fix)]


CHECKS = (check_tools, check_forwarding, check_forward_policy, check_forward_blockers, check_iptables_variant,
          check_other_runtimes,
          check_route_localnet, check_br_netfilter, check_networks, check_ruleset, check_ports, check_resolv)


def run_checks() -> list[Finding]:
    out = []
    for check in CHECKS:
        try:
            out += check()
        except Exception as e:  # noqa: BLE001 - one broken check must not hide the others
            out.append(Finding(WARN, check.__name__.removeprefix("check_"), f"could not check: {e}"))
    return out


def render(findings: list[Finding], color: bool) -> str:
    marks = {OK: ("\033[32m", " ok  "), INFO: ("\033[36m", "info "), WARN: ("\033[33m", "warn "),
             ERROR: ("\033[31m", "ERROR")}
    reset = "\033[0m" if color else ""
    width = max(len(f.check) for f in findings)
    pad = " " * (width + 10)
    out = []
    for f in findings:
        c, label = marks[f.level]
        out += textwrap.wrap(f"[{c if color else ''}{label}{reset}] {f.check:<{width}}  {f.seen}", 100 + len(reset) * 2,
                             subsequent_indent=pad)
        if f.means:
            out += textwrap.wrap(f"means: {f.means}", 100, initial_indent=pad, subsequent_indent=pad + "       ")
        if f.fix:
            out.append(f"{pad}fix:   {f.fix}")
    return "\n".join(out) + "\n"


def as_json(findings: list[Finding]) -> str:
    return json.dumps([f._asdict() for f in findings], indent=2) + "\n"


def failed(findings: list[Finding]) -> bool:
    return any(f.level == ERROR for f in findings)

