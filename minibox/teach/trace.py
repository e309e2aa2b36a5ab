"""`minibox trace`: send one probe to a published port along one path, and show the rules it met.

Paths, as in the lecture and docker-networking.md: `outside` (a machine on the LAN: a
throwaway network namespace on a TEST-NET range, linked to the host; with `ipv6`, on a
unique local /64 of its own too), `host` (a host
process to a host address), `localhost` (to 127.0.0.1), `container` (another container,
to the host's address on its bridge: the hairpin).

How: a table of our own, `inet minibox-trace-PID`, sets `meta nftrace` on the probe's packets
only (they come from a source port chosen for the probe), `nft monitor trace` reports every
rule each packet meets in every table (iptables-nft's included), and conntrack tells how the
flow was rewritten (DNAT, SNAT). The table, the namespace and the helper are removed after.
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
import subprocess
import sys
import time

from minibox.errors import InvalidSpec, MiniboxError
from minibox.model import ContainerRecord
from minibox.value import Value

PATHS = ("outside", "host", "localhost", "container")
PROBE = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.settimeout(3)
try:
    s.bind(("", int(sys.argv[3])))
    s.connect((sys.argv[1], int(sys.argv[2])))
    s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
    print(s.recv(200).decode(errors="replace").splitlines()[0])
except OSError as e:
    print(f"no answer: {e}")
"""


class Result(Value):
    path: str
    target: str  # address:port probed
    answer: str
    packets: dict[str, list[str]]  # trace id -> hops
    conntrack: list[str]


def _sh(cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise MiniboxError(f"trace: `{cmd}` failed: {res.stderr.strip()}")
    return res


def _host_address() -> str:
    """An address of this host other than loopback and minibox's bridges (Docker's HOST_ADDR)."""
    from minibox import store

    bridges = {n.bridge for n in store.all_networks()}
    out = _sh("ip -o -4 addr show", check=False).stdout
    for line in out.splitlines():
        parts = line.split()
        dev, addr = parts[1], parts[3].split("/")[0]
        if dev != "lo" and dev not in bridges and not dev.startswith("mbx"):
            return addr
    return ""


def _free_testnet() -> ipaddress.IPv4Network:
    """A /30 of 198.18.0.0/15 (benchmarking TEST-NET) that nothing here routes to yet."""
    cands = list(ipaddress.IPv4Network("198.18.0.0/15").subnets(new_prefix=30))
    start = random.randrange(len(cands))
    for cand in cands[start:start + 64] + cands[:64]:
        if _sh(f"ip route get {list(cand.hosts())[1]}", check=False).returncode != 0:
            return cand
    raise MiniboxError("trace: no free TEST-NET range for the outside host")


def _free_ula() -> ipaddress.IPv6Network:
    """A unique local /64 (RFC 4193: fd00::/8 and a random 40-bit id) that no route of this
    host's covers but a default one."""
    for _ in range(16):
        cand = ipaddress.IPv6Network(((0xFD << 120) | (random.getrandbits(56) << 64), 64))
        routes = _sh(f"ip -6 -o route show to match {cand[2]}", check=False).stdout.split("\n")
        if all(not line.strip() or line.startswith("default") for line in routes):
            return cand
    raise MiniboxError("trace: no free unique local /64 for the outside host")


def run(rec: ContainerRecord, port: int, path: str, to: str = "", ipv6: bool = False) -> Result:
    if path not in PATHS:
        raise InvalidSpec(f'unknown --from "{path}": use one of {", ".join(PATHS)}')
    if ipv6 and path != "outside":
        raise InvalidSpec(f"-6 is for --from outside; on the {path} path give the IPv6 address with --to [ADDR]")
    if ipv6 and not (rec.endpoint and rec.endpoint.ip6):
        raise InvalidSpec(f"container {rec.name} has no IPv6 address (its network was not created with --ipv6)")
    mapping = next((p for p in rec.ports if p.host_port == port and p.proto == "tcp"), None)
    if mapping is None:
        published = ", ".join(p.docker_str() for p in rec.ports) or "none"
        raise InvalidSpec(f"container {rec.name} does not publish tcp port {port} (it publishes: {published})")
    sport = _free_source_port()
    tag = f"minibox-trace-{os.getpid()}"
    cleanup: list[str] = [f"nft delete table inet {tag}"]
    prefix = ""
    try:
        if path == "localhost":
            dst = "127.0.0.1"
        elif path == "host":
            dst = to.strip("[]") or mapping.host_ip or _host_address()
            if not dst:
                raise MiniboxError("trace: this host has no address but loopback and minibox's bridges; "
                                   "use --from localhost, or give one with --to")
        elif path == "container":
            net = rec.endpoint.network if rec.endpoint else "bridge"
            cid = _sh(f"{sys.executable} -m minibox run -d --network {net} busybox sleep 60").stdout.strip()
            cleanup.insert(0, f"{sys.executable} -m minibox rm -f {cid}")
            pid = _sh(f"{sys.executable} -m minibox inspect {cid}").stdout.split('"Pid": ')[1].split(",")[0]
            prefix = f"nsenter --net=/proc/{pid}/ns/net "
            dst = to or (mapping.host_ip or (rec.endpoint.gateway if rec.endpoint else _host_address()))
        else:  # outside
            net = _free_testnet()
            host_side, lan_side = (str(h) for h in net.hosts())
            holder = subprocess.Popen(["unshare", "--net", "sleep", "60"])
            time.sleep(0.1)
            veth = f"mbxt{os.getpid() % 100000}"
            cleanup.insert(0, f"kill {holder.pid}; ip link del {veth} 2>/dev/null")
            _sh(f"ip link add {veth} type veth peer name eth0 netns /proc/{holder.pid}/ns/net")
            _sh(f"ip addr add {host_side}/30 dev {veth} && ip link set {veth} up")
            prefix = f"nsenter --net=/proc/{holder.pid}/ns/net "
            _sh(f"{prefix}ip link set lo up && {prefix}ip addr add {lan_side}/30 dev eth0 && "
                f"{prefix}ip link set eth0 up")
            dst = to or host_side
            if ipv6:  # the same link, on a unique local /64 of its own (nodad: usable at once)
                ula = _free_ula()
                _sh(f"ip -6 addr add {ula[1]}/64 dev {veth} nodad && "
                    f"{prefix}ip -6 addr add {ula[2]}/64 dev eth0 nodad")
                dst = to.strip("[]") or str(ula[1])
        # Trace only this probe's packets: the ones from, or back to, its source port.
        # (inet: an IPv6 probe, `--to [V6]` on a dual-stack container, is traced as well)
        _sh(f"nft -f - <<'EOF'\nadd table inet {tag}\n"
            f"add chain inet {tag} pre {{ type filter hook prerouting priority -350; }}\n"
            f"add chain inet {tag} out {{ type filter hook output priority -350; }}\n"
            f"add rule inet {tag} pre tcp sport {sport} meta nftrace set 1\n"
            f"add rule inet {tag} pre tcp dport {sport} meta nftrace set 1\n"
            f"add rule inet {tag} out tcp sport {sport} meta nftrace set 1\n"
            f"add rule inet {tag} out tcp dport {sport} meta nftrace set 1\nEOF")
        monitor = subprocess.Popen(["nft", "monitor", "trace"], stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        answer = _sh(f"{prefix}{sys.executable} -c '{PROBE}' {dst} {port} {sport}", check=False).stdout.strip()
        time.sleep(0.5)
        monitor.terminate()
        trace_out = monitor.communicate(timeout=5)[0]
        fam = "-f ipv6 " if ":" in dst else ""
        ct = _sh(f"conntrack -L {fam}-p tcp --sport {sport} 2>/dev/null; "
                 f"conntrack -L {fam}-p tcp --dport {sport} 2>/dev/null", check=False).stdout
        return Result(path, f"{dst}:{port}", answer or "no answer", _hops(trace_out),
                      [line for line in ct.splitlines() if line.strip()])
    finally:
        for cmd in cleanup:
            _sh(cmd, check=False)


def _free_source_port() -> int:
    """A source port for the probe that no socket here holds, on IPv4 or IPv6: a random one
    can be a busy host's (from the host, the probe shares this network namespace; the other
    paths probe from a new one)."""
    import socket

    for _ in range(100):
        port = random.randint(40000, 59999)
        with socket.socket(socket.AF_INET6) as s:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # both families' ports
            try:
                s.bind(("::", port))
            except OSError:
                continue
        return port
    raise MiniboxError("trace: found no free source port for the probe between 40000 and 59999")


def _packet(text: str) -> str:
    """`nft monitor trace`'s packet dump, cut to what tells the story: interfaces, addresses,
    ports, TCP flags."""
    want = []
    for pattern in (r'iif "[^"]+"', r'oif "[^"]+"'):
        m = re.search(pattern, text)
        if m:
            want.append(m.group(0).replace('"', ""))
    a = re.search(r"ip6? saddr (\S+) ip6? daddr (\S+)", text)
    p = re.search(r"tcp sport (\d+) tcp dport (\d+)", text)
    f = re.search(r"tcp flags == (\S+)", text)
    if a and p:
        want.append(f"{a.group(1)}:{p.group(1)} -> {a.group(2)}:{p.group(2)}")
    if f:
        want.append({"syn": "[SYN]", "0x12": "[SYN,ACK]", "ack": "[ACK]", "0x18": "[PSH,ACK]",
                     "0x11": "[FIN,ACK]", "0x14": "[RST,ACK]"}.get(f.group(1), f"[{f.group(1)}]"))
    return " ".join(want)


def _hops(trace_out: str) -> dict[str, list[str]]:
    """Group `nft monitor trace` lines by packet, keeping the packet as first seen, then
    every rule, policy and verdict it met outside our own marking table. The kernel may
    reuse a trace id for a later packet; a packet entering our marking chain starts a new
    group."""
    packets: dict[str, list[str]] = {}
    current: dict[str, str] = {}  # trace id -> key of its group now
    for line in trace_out.splitlines():
        m = re.match(r"trace id (\w+) (\w+) (\S+) (\S+) (.*)", line)
        if not m:
            continue
        tid, _family, table, chain, rest = m.groups()
        ours = table.startswith("minibox-trace")
        if ours and rest.startswith("packet:"):
            key = f"{tid}#{len(packets)}"
            current[tid] = key
            packets[key] = [f"packet {_packet(rest)}"]
            continue
        hops = packets.setdefault(current.setdefault(tid, f"{tid}#{len(packets)}"), [])
        if ours:
            continue  # our own marking rule
        if rest.startswith("packet:"):
            hops.append(f"  {table} {chain:<12} sees {_packet(rest)}")
            continue
        rest = re.sub(r" counter packets \d+ bytes \d+", "", rest)
        hops.append(f"  {table} {chain:<12} {rest}")
    return packets


def render(r: Result, limit: int = 4) -> str:
    out = [f"probe: {r.path} -> {r.target}", f"answer: {r.answer}", ""]
    shown = 0
    for hops in r.packets.values():
        if len(hops) < 2:
            continue  # a packet that met no rule of interest (bridged straight through)
        if shown == limit:
            out.append("... and more packets of the same exchange, all accepted as established")
            break
        shown += 1
        out.append(f"{hops[0]}")
        out += hops[1:]
        out.append("")
    if not r.packets:
        out.append("no packet was traced (is nftables tracing available?)")
    out.append("conntrack: the flow as sent (first tuple) and as answered (second tuple); "
               "an address that differs is the DNAT or the SNAT")
    out += [f"  {line}" for line in r.conntrack] or ["  (no entry)"]
    return "\n".join(out) + "\n"
