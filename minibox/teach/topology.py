"""`network show`: what minibox built, read back from the kernel, as text, Mermaid or SVG.

`gather()` asks the kernel (pyroute2 for links, addresses and routes; `nft -j` or
`iptables-save -c` for the rules and their packet counters) and minibox's state (which
container owns which veth). The three renderers are pure functions of that snapshot.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import subprocess
from html import escape

from minibox import store
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


def uplink(routes: list[str]) -> str:
    """The interface of the default route: the way out, and the LAN's way in."""
    for r in routes:
        if r.startswith("default "):
            return r.rsplit(" dev ", 1)[-1]
    return ""


def gather(only: str = "", all_links: bool = False) -> Topology:
    from minibox import lifecycle
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
    nets = []
    for rec_net in store.all_networks():
        if only and rec_net.name != only:
            continue
        ctrs = []
        for rec in store.all_records():
            ep = rec.endpoint
            if ep is None or ep.network != rec_net.name or lifecycle.refresh(rec.id).released:
                continue
            ctrs.append(Ctr(rec.name, rec.short_id, ep.veth, ep.ip, ep.prefixlen, ep.mac,
                            [f"{p.host_ip or '0.0.0.0'}:{p.host_port}->{p.container_port}/{p.proto}"
                             for p in rec.ports], ep.veth in names.values()))
        ctrs.sort(key=lambda c: ipaddress.IPv4Address(c.ip))
        nets.append(Net(rec_net.name, rec_net.bridge, rec_net.subnet, rec_net.gateway, rec_net.mac, rec_net.internal,
                        rec_net.firewall, rec_net.bridge in names.values(), tuple(ctrs)))
    ours = {n.bridge for n in store.all_networks()} | {c.veth for n in nets for c in n.containers}
    host_links = [(name, link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or "", addrs.get(name, []))
                  for link in links.values() for name in [link.get("ifname")]
                  if name not in ours and not name.startswith(("mbx", "mbc"))]
    # What a packet of ours can cross: lo and the uplink. Another engine's veths and a host's
    # ifb devices are noise here (8 of 11 boxes on a busy host), counted instead.
    shown = [h for h in host_links if all_links or h[0] in ("lo", uplink(routes))]
    fw = nets[0].firewall if nets else "nftables"
    return Topology(shown, routes, nets, _nft_hooks() if fw == "nftables" else _ipt_hooks(), fw,
                    hidden=len(host_links) - len(shown))


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
    res = subprocess.run(["nft", "-j", "list", "table", "ip", rules.TABLE], capture_output=True, text=True)
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
    """A short, readable form of an nft JSON rule (the full one: `nft list table ip minibox`)."""
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


# --- renderers ------------------------------------------------------------------------------

WIDTH = 100


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def text(t: Topology) -> str:
    out = ["host"]
    for name, kind, addrs in t.host_links:
        out.append(_clip(f"  {name:<16} {kind or 'device':<8} {' '.join(addrs)}", WIDTH))
    if t.hidden:
        out.append(f"  ({t.hidden} other interface{'s' if t.hidden > 1 else ''} not shown: `--all` lists them)")
    for n in t.nets:
        flags = ", internal" if n.internal else ""
        state = "" if n.present else "  [bridge missing: `minibox network reconcile`]"
        out.append(_clip(f"  {n.bridge:<16} bridge   {n.gateway}/{n.subnet.split('/')[1]}  network {n.name!r}, "
                         f"{n.subnet}{flags}{state}", WIDTH))
        out.append(f"  {'':<16} mac      {n.mac}")  # a line of its own: never cut mid-address
        for i, c in enumerate(n.containers):
            last = i == len(n.containers) - 1
            branch, cont = ("└─", "   ") if last else ("├─", "│  ")
            out.append(_clip(f"    {branch} {c.veth} ══veth══ eth0 {c.ip}/{c.prefixlen} {c.mac}  "
                             f"[{c.name} {c.short_id}]", WIDTH))
            for p in c.ports:
                out.append(f"    {cont}   publishes {p}")
        if not n.containers:
            out.append("    (no containers)")
    out.append("")
    out.append("routes (main table)")
    out += [f"  {r}" for r in t.routes]
    out.append("")
    out.append(f"firewall ({t.firewall}); packets counted since the rules were last written")
    if not t.hooks:
        out.append("  (no minibox rules)")
    for h in t.hooks:
        out.append(f"  {h.title}")
        for r in h.rules:
            pk = f"{r.packets:>7}" if r.packets is not None else "      -"
            note = f"  # {r.comment}" if r.comment else ""
            out.append(_clip(f"  {pk}  {r.text}{note}", WIDTH))
    return "\n".join(out) + "\n"


def mermaid(t: Topology) -> str:
    def nid(s: str) -> str:
        return re.sub(r"[^A-Za-z0-9_]", "_", s)

    out = ["flowchart LR", '  subgraph host["host (root network namespace)"]']
    for name, kind, addrs in t.host_links:
        out.append(f'    {nid("if_" + name)}["{name}<br/>{" ".join(addrs) or kind}"]')
    for n in t.nets:
        out.append(f'    {nid("br_" + n.bridge)}{{{{"{n.bridge}<br/>bridge {n.gateway}<br/>network {n.name}"}}}}')
    out.append("  end")
    for n in t.nets:
        for c in n.containers:
            cid = nid("ctr_" + c.short_id)
            out.append(f'  subgraph {cid}["container {c.name}"]')
            out.append(f'    {cid}_eth0["eth0<br/>{c.ip}/{c.prefixlen}<br/>{c.mac}"]')
            out.append("  end")
            out.append(f'  {nid("br_" + n.bridge)} ---|"{c.veth} (veth)"| {cid}_eth0')
            for p in c.ports:
                host_side = p.split("->")[0]
                out.append(f'  {nid("if_lo")} -. "DNAT {host_side}" .-> {cid}_eth0')
    return "\n".join(out) + "\n"


def svg(t: Topology) -> str:
    """A picture: host interfaces on the left, bridges in the middle, containers on the right,
    one line per veth pair, published ports on the container boxes, rules underneath."""
    box_h, gap, left_x, mid_x, right_x = 46, 16, 20, 300, 760
    w = 1100
    ctrs = [(n, c) for n in t.nets for c in n.containers]
    rows = max(len(t.host_links), len(t.nets), len(ctrs), 1)
    top = 70
    height_boxes = top + rows * (box_h + gap) + 40
    rule_lines = []
    for h in t.hooks:
        rule_lines.append((h.title, None))
        rule_lines += [("", r) for r in h.rules]
    routes_y = top + len(t.host_links) * (box_h + gap) + 10
    height_boxes = max(height_boxes, routes_y + 16 * (len(t.routes) + 1) + 20)
    h_total = height_boxes + 30 + 16 * len(rule_lines) + 20
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h_total}" xml:space="preserve" '
         f'font-family="DejaVu Sans Mono, monospace" font-size="12">',
         f'<rect width="{w}" height="{h_total}" fill="#ffffff"/>',
         '<text x="20" y="28" font-size="18" font-weight="bold">minibox network topology</text>',
         '<text x="20" y="50" fill="#555">host (root network namespace) on the left; each container '
         'is a network namespace of its own on the right</text>']

    def box(x, y, bw, lines, fill, stroke):
        o.append(f'<rect x="{x}" y="{y}" width="{bw}" height="{box_h}" rx="6" fill="{fill}" stroke="{stroke}"/>')
        for i, line in enumerate(lines[:3]):
            weight = ' font-weight="bold"' if i == 0 else ""
            o.append(f'<text x="{x + 8}" y="{y + 17 + i * 14}"{weight}>{escape(line)}</text>')

    for i, (name, kind, addrs) in enumerate(t.host_links):
        box(left_x, top + i * (box_h + gap), 240, [name, " ".join(addrs) or kind or "device"], "#eef3fb", "#5b7db8")
    o.append(f'<text x="{left_x}" y="{routes_y}" font-weight="bold" fill="#333">host routes</text>')
    for i, r in enumerate(t.routes):
        o.append(f'<text x="{left_x}" y="{routes_y + 16 * (i + 1)}" fill="#333">{escape(_clip(r, 38))}</text>')
    bridge_y = {}
    for i, n in enumerate(t.nets):
        y = top + i * (box_h + gap)
        bridge_y[n.bridge] = y + box_h / 2
        box(mid_x, y, 250, [f"{n.bridge} (bridge)", f"{n.gateway}  net {n.name}", n.subnet],
            "#fdf3e3", "#c08a2b")
    for i, (n, c) in enumerate(ctrs):
        y = top + i * (box_h + gap)
        box(right_x, y, 320, [f"container {c.name}", f"eth0 {c.ip}/{c.prefixlen} {c.mac}",
                              ", ".join(c.ports) or "no published ports"], "#eaf6ea", "#3f8f3f")
        by = bridge_y.get(n.bridge, y)
        o.append(f'<line x1="{mid_x + 250}" y1="{by}" x2="{right_x}" y2="{y + box_h / 2}" '
                 f'stroke="#3f8f3f" stroke-width="2"/>')
        # the veth pair's host end, named next to the container it leads to
        o.append(f'<text x="{right_x - 8}" y="{y + box_h / 2 - 5}" fill="#3f8f3f" font-size="11" '
                 f'text-anchor="end">{escape(c.veth)} ⇄ eth0</text>')
    y = height_boxes + 10
    o.append(f'<text x="20" y="{y}" font-size="14" font-weight="bold">firewall ({escape(t.firewall)}), '
             f'packet counters</text>')
    for title, r in rule_lines:
        y += 16
        if r is None:
            o.append(f'<text x="20" y="{y}" font-weight="bold" fill="#333">{escape(title)}</text>')
        else:
            pk = "-" if r.packets is None else str(r.packets)
            o.append(f'<text x="40" y="{y}"><tspan fill="#b03030">{escape(pk):>8}</tspan>  '
                     f'{escape(_clip(r.text, 70))}<tspan fill="#777">  {escape(r.comment)}</tspan></text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"
