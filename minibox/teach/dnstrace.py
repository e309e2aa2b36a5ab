"""`minibox trace CTR --dns NAME`: one name lookup from inside a container, step by step: its resolv.conf, the query to its network's DNS server, the answer, conntrack's record of the flow.

The query is busybox-style `nslookup` run in the container (its own resolver library,
its own resolv.conf), from a source port of its own choosing; conntrack then shows the
flow to the server's address, port 53, and back. No NAT is involved on this path: the
server (aardvark-dns) listens on the network's gateway, the bridge's own address, which
the container reaches directly.
"""

from __future__ import annotations

import subprocess
import sys

from minibox import config
from minibox.model import ContainerRecord


def run(rec: ContainerRecord, name: str) -> str:
    from minibox.net import dns

    out = [f"lookup: {name!r} from container {rec.name}"]
    me = subprocess.run([sys.executable, "-m", "minibox", "exec", rec.id, "cat", "/etc/resolv.conf"],
                        capture_output=True, text=True)
    servers = [line.split()[1] for line in me.stdout.splitlines() if line.startswith("nameserver ")]
    out.append(f"1. its /etc/resolv.conf names {', '.join(servers) or 'no nameserver'}")
    ep = rec.endpoint
    if ep is not None and servers and servers[0] == ep.gateway:
        pid = dns.server_pid()
        where = f"aardvark-dns (PID {pid})" if pid else "aardvark-dns (not running!)"
        out.append(f"2. {ep.gateway}:53 is the gateway of network {ep.network}: {where} listens there, in the "
                   f"host's network namespace, and answers from {config.paths().dns}/{ep.network}")
        lines = _lines_for(dns.directory(), ep.network, name)
        out += [f"     {line}" for line in lines] or [f"     (no container there is named {name!r}: it asks the "
                                                        "host's resolvers, or the container's --dns servers)"]
    else:
        out.append("2. not a network DNS server of minibox's: the default network keeps the host's resolvers, "
                   "as Docker's default bridge does")
    ans = subprocess.run([sys.executable, "-m", "minibox", "exec", rec.id, "nslookup", name],
                         capture_output=True, text=True)
    text = ans.stdout.split("Name:", 1)
    address = next((x.split()[-1] for x in text[1].splitlines() if x.startswith("Address")), "") if len(text) > 1 \
        else ""
    said = (ans.stdout + ans.stderr).strip().splitlines()
    out.append(f"3. answer: {name} -> {address}" if address else f"3. no answer: {said[-1] if said else '(nothing)'}")
    if ep is not None and servers:
        ct = subprocess.run(["conntrack", "-L", "-p", "udp", "-s", ep.ip, "-d", servers[0], "--dport", "53"],
                            capture_output=True, text=True).stdout.strip().splitlines()
        out.append("4. conntrack: the query's flow, and its reply (no NAT on this path)")
        out += [f"     {line}" for line in ct[-2:]] or ["     (no entry: conntrack is not loaded here)"]
    return "\n".join(out) + "\n"


def _lines_for(directory, network: str, name: str) -> list[str]:
    try:
        with open(directory / network) as f:
            entries = f.read().splitlines()[1:]
    except OSError:
        return []
    return [e for e in entries if name in e.split(" ")[3].split(",")] if entries else []
