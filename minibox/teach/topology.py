"""`network show`'s snapshot: what minibox built, read back from the kernel, for the renderers to draw.

`gather()` asks the kernel (pyroute2 for links, addresses and routes; `nft -j` or
`iptables-save -c` for the rules and their packet counters) and minibox's state (which
container owns which veth, when the counters were last reset). The renderers (teach.topotext,
teach.picture) are pure functions of that snapshot.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import subprocess
import time

from minibox import store
from minibox.net.firewall import generation
from minibox.plan import rules
from minibox.value import Value


class Ctr(Value):
    name: str
    short_id: str
    veth: str
    ip: str
    prefixlen: int
    mac: str
    ports: list[str]
    up: bool
    counted_since: str = ""  # HH:MM:SS its published ports' DNAT counters count from
    ifname: str = "eth0"  # its interface on this network (eth1, ... for `network connect`)
    ip6: str = ""  # on an --ipv6 network: its IPv6 address, with the prefix


class Net(Value):
    name: str
    bridge: str
    subnet: str
    gateway: str
    mac: str
    internal: bool
    firewall: str
    present: bool  # the bridge exists in the kernel
    containers: tuple[Ctr, ...] = ()
    dns: str = ""  # its DNS server, when it answers for this network ("aardvark-dns on GW:53, PID N")
    ipv6: str = ""  # --ipv6: the bridge's IPv6 address, with the prefix


class Rule(Value):
    packets: int | None
    text: str
    comment: str


class Hook(Value):
    title: str
    rules: list[Rule]


class Topology(Value):
    host_links: list[tuple[str, str, list[str]]]  # name, kind, addresses
    routes: list[str]
    nets: list[Net]
    hooks: list[Hook]
    firewall: str
    hidden: int = 0  # host interfaces left out (not lo, not the uplink, not ours): --all shows them
    rules_since: str = ""  # HH:MM:SS minibox last rewrote its rules, which reset their counters


def uplink(routes: list[str]) -> str:
    """The interface of the default route: the way out, and the LAN's way in."""
    for r in routes:
        if r.startswith("default "):
            return r.rsplit(" dev ", 1)[-1]
    return ""


def gather(only: str = "", all_links: bool = False) -> Topology:
    from minibox.engine import lifecycle
    from minibox.net import netlink

    with netlink.iproute() as ipr:
        links = {link["index"]: link for link in ipr.get_links()}
        names = {i: link.get("ifname") for i, link in links.items()}
        addrs: dict[str, list[str]] = {}
        for a in ipr.get_addr(family=socket.AF_INET):
            addrs.setdefault(names.get(a["index"], "?"), []).append(f"{a.get('address')}/{a['prefixlen']}")
        routes = []
        for r in ipr.get_routes(family=socket.AF_INET, table=254):
            dst = f"{r.get('dst')}/{r['dst_len']}" if r.get("dst") else "default"
            via = f" via {r.get('gateway')}" if r.get("gateway") else ""
            routes.append(f"{dst}{via} dev {names.get(r.get('oif'), '?')}")
    rules_at, table_at = generation.counters_reset()
    nets = []
    for rec_net in store.all_networks():
        if only and rec_net.name != only:
            continue
        ctrs = []
        for rec in store.all_records():
            ep = next((e for e in rec.endpoints() if e.network == rec_net.name), None)
            if ep is None:
                continue
            state = lifecycle.refresh(rec.id)
            if state.released:
                continue
            # nftables: a map element counts from when it was added, unless the table was
            # rebuilt since; iptables rewrites the DNAT rules (and their counters) every time.
            since = max(state.started_at, table_at or 0) if rec_net.firewall == "nftables" else rules_at
            ports = rec.ports if ep is rec.endpoint else ()  # published through its first network
            ctrs.append(Ctr(rec.name, rec.short_id, ep.veth, ep.ip, ep.prefixlen, ep.mac,
                            [f"{p.host_ip or '0.0.0.0'}:{p.host_port}->{p.container_port}/{p.proto}"
                             for p in ports], ep.veth in names.values(), _hhmmss(since), ep.ifname,
                            f"{ep.ip6}/{ep.prefixlen6}" if ep.ip6 else ""))
        ctrs.sort(key=lambda c: ipaddress.IPv4Address(c.ip))
        nets.append(Net(rec_net.name, rec_net.bridge, rec_net.subnet, rec_net.gateway, rec_net.mac, rec_net.internal,
                        rec_net.firewall, rec_net.bridge in names.values(), tuple(ctrs), _dns(rec_net),
                        f"{rec_net.gateway6}/{rec_net.prefixlen6}" if rec_net.subnet6 else ""))
    ours = {n.bridge for n in store.all_networks()} | {c.veth for n in nets for c in n.containers}
    host_links = [(name, link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or "", addrs.get(name, []))
                  for link in links.values() for name in [link.get("ifname")]
                  if name not in ours and not name.startswith(("mbx", "mbc"))]
    # What a packet of ours can cross: lo and the uplink. Another engine's veths and a host's
    # ifb devices are noise here (8 of 11 boxes on a busy host), counted instead.
    shown = [h for h in host_links if all_links or h[0] in ("lo", uplink(routes))]
    fw = nets[0].firewall if nets else "nftables"
    hooks = _nft_hooks() if fw == "nftables" else _ipt_hooks()
    if only:
        hooks = own_rules(hooks, nets)
    return Topology(shown, routes, nets, hooks, fw, hidden=len(host_links) - len(shown),
                    rules_since=_hhmmss(rules_at))


def own_rules(hooks: list[Hook], nets: list[Net]) -> list[Hook]:
    """`network show NET`: the rules and map elements tagged for another network, or for a
    container on another network, left out; the fixed rules every network shares stay."""
    ids = {c.short_id for n in nets for c in n.containers}
    tags = {f"minibox net {n.name}" for n in nets}

    def mine(r: Rule) -> bool:
        if r.comment.startswith("minibox ctr "):
            return r.comment.split()[2] in ids
        if r.comment.startswith("minibox net "):
            return r.comment in tags
        return True

    kept = [Hook(h.title, [r for r in h.rules if mine(r)]) for h in hooks]
    return [h for h in kept if h.rules]


def _hhmmss(epoch: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch)) if epoch else ""


def _plain(value):
    """Values as JSON objects, all the way down."""
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def as_json(t: Topology) -> str:
    return json.dumps(_plain(t), indent=2) + "\n"


def _nft_hooks() -> list[Hook]:
    res = subprocess.run(["nft", "-j", "list", "table", "inet", rules.TABLE], capture_output=True, text=True)
    if res.returncode != 0:
        return []
    objs = json.loads(res.stdout)["nftables"]
    chains = {o["chain"]["name"]: o["chain"] for o in objs if "chain" in o}
    by_chain: dict[str, list[Rule]] = {}
    for o in objs:
        if "rule" not in o:
            continue
        r = o["rule"]
        packets = next((e["counter"]["packets"] for e in r["expr"] if "counter" in e), None)
        by_chain.setdefault(r["chain"], []).append(Rule(packets, _nft_text(r["expr"]), r.get("comment", "")))
    hooks = []
    for name, rule_list in by_chain.items():
        c = chains.get(name, {})
        where = f"hook {c['hook']}, {c['type']}, priority {c['prio']}" if "hook" in c else "regular chain"
        hooks.append(Hook(f"chain {name} ({where})", rule_list))
    for o in objs:
        m = o.get("map")
        if m and m.get("elem"):
            els = []
            for key, val in m["elem"]:
                e = key["elem"]
                k = " . ".join(str(x) for x in e["val"]["concat"])
                v = " . ".join(str(x) for x in val["concat"])
                els.append(Rule(e.get("counter", {}).get("packets"), f"{k} -> {v}", e.get("comment", "")))
            hooks.append(Hook(f"map {m['name']} (published ports)", els))
    return hooks


def _nft_operand(x) -> str:
    """One side of an nft JSON match, written as `nft list` would."""
    if isinstance(x, (str, int)):
        return str(x)
    if isinstance(x, list):
        return ",".join(_nft_operand(i) for i in x)
    if "meta" in x:
        return x["meta"]["key"]
    if "payload" in x:
        p = x["payload"]
        return f"{p.get('protocol', 'th')} {p['field']}"
    if "fib" in x:
        return "fib " + " ".join(x["fib"].get("flags", [])) + " " + x["fib"]["result"]
    if "ct" in x:
        return f"ct {x['ct']['key']}"
    if "concat" in x:
        return " . ".join(_nft_operand(i) for i in x["concat"])
    if "prefix" in x:
        return f"{x['prefix']['addr']}/{x['prefix']['len']}"
    if "set" in x:
        return "{ " + ", ".join(_nft_operand(i) for i in x["set"]) + " }"
    return json.dumps(x)


def _nft_text(expr: list) -> str:
    """A short, readable form of an nft JSON rule (the full one: `nft list table inet minibox`)."""
    parts = []
    for e in expr:
        if "match" in e:
            m = e["match"]
            op = "" if m["op"] in ("==", "in") else m["op"] + " "
            parts.append(f"{_nft_operand(m['left'])} {op}{_nft_operand(m['right'])}")
        elif "jump" in e:
            parts.append(f"jump {e['jump']['target']}")
        elif "dnat" in e:
            parts.append("dnat to (map lookup)")
        elif "masquerade" in e:
            parts.append("masquerade")
        elif "accept" in e or "drop" in e:
            parts.append(next(iter(e)))
    return " ".join(parts)


def _ipt_hooks() -> list[Hook]:
    res = subprocess.run(["iptables-save", "-c"], capture_output=True, text=True)
    hooks: dict[str, Hook] = {}
    table = ""
    for line in res.stdout.splitlines():
        if line.startswith("*"):
            table = line[1:]
        m = re.match(r"\[(\d+):\d+\] -A (\S+) (.*)", line)
        if m and ("MINIBOX" in m.group(2) or "MINIBOX" in m.group(3)):
            chain = m.group(2)
            comment = re.search(r'--comment "?([^"]*?)"? -j', m.group(3))
            text = re.sub(r' -m comment --comment ("[^"]*"|\S+)', "", m.group(3))
            hooks.setdefault(f"{table} {chain}", Hook(f"iptables -t {table} {chain}", [])).rules.append(
                Rule(int(m.group(1)), text, comment.group(1) if comment else ""))
    return list(hooks.values())


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _dns(net) -> str:
    """Its DNS server, if it answers for this network now (net.dns: a file per network)."""
    from minibox.net import dns

    pid = dns.server_pid()
    if not pid or not (dns.directory() / net.name).exists():
        return ""
    return f"aardvark-dns on {net.gateway}:53 (PID {pid})"
