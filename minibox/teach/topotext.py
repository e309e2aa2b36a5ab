"""`network show` as text and as Mermaid: the same snapshot and the same packet paths as the picture.

The text form is what a terminal shows: host interfaces, each bridge with its veth pairs
and containers, routes, the four paths of each published port (teach.paths), then every
rule with its counter. No line is longer than 100 columns. Pure: a Topology in, text out.
"""

from __future__ import annotations

import re
import textwrap

from minibox.teach import paths as pathmod
from minibox.teach.topology import Topology, clip, uplink

WIDTH = 100


def text(t: Topology, port: str = "") -> str:
    out = ["host"]
    for name, kind, addrs in t.host_links:
        out.append(clip(f"  {name:<16} {kind or 'device':<8} {' '.join(addrs)}", WIDTH))
    if t.hidden:
        out.append(f"  ({t.hidden} other interface{'s' if t.hidden > 1 else ''} not shown: `--all` lists them)")
    for n in t.nets:
        flags = ", internal" if n.internal else ""
        state = "" if n.present else "  [bridge missing: `minibox network reconcile`]"
        out.append(clip(f"  {n.bridge:<16} bridge   {n.gateway}/{n.subnet.split('/')[1]}  network {n.name!r}, "
                         f"{n.subnet}{flags}{state}", WIDTH))
        out.append(f"  {'':<16} mac      {n.mac}")  # a line of its own: never cut mid-address
        if n.ipv6:
            out.append(f"  {'':<16} ipv6     {n.ipv6}")
        if n.dns:
            out.append(clip(f"  {'':<16} dns      {n.dns}", WIDTH))
        for i, c in enumerate(n.containers):
            last = i == len(n.containers) - 1
            branch, cont = ("└─", "   ") if last else ("├─", "│  ")
            out.append(clip(f"    {branch} {c.veth} ══veth══ {c.ifname} {c.ip}/{c.prefixlen} {c.mac}  "
                             f"[{c.name} {c.short_id}]", WIDTH))
            if c.ip6:
                out.append(f"    {cont}   ipv6 {c.ip6}")
            for p in c.ports:
                out.append(f"    {cont}   publishes {p}")
        if not n.containers:
            out.append("    (no containers)")
    out.append("")
    out.append("routes (main table)")
    out += [f"  {r}" for r in t.routes]
    out.append("")
    out += _paths(t, port)
    since = t.rules_since or "the rules were last written"
    elements = ", a map element's since its port was published" if t.firewall == "nftables" else ""
    out.append(f"firewall ({t.firewall}); rule counters since {since}{elements}")
    if not t.hooks:
        out.append("  (no minibox rules)")
    for h in t.hooks:
        out.append(f"  {h.title}")
        for r in h.rules:
            pk = f"{r.packets:>7}" if r.packets is not None else "      -"
            note = f"  # {r.comment}" if r.comment else ""
            out.append(clip(f"  {pk}  {r.text}{note}", WIDTH))
    return "\n".join(out) + "\n"


def mermaid(t: Topology, port: str = "") -> str:
    """The picture's boxes and wires as a Mermaid flowchart: lo and the uplink reach each
    bridge through a DNAT node per published port, and leave through its MASQUERADE node."""
    def nid(s: str) -> str:
        return re.sub(r"[^A-Za-z0-9_]", "_", s)

    up = nid("if_" + (uplink(t.routes) or "uplink"))
    out = ["flowchart LR", '  subgraph host["host (root network namespace)"]']
    for name, kind, addrs in t.host_links:
        out.append(f'    {nid("if_" + name)}["{name}<br/>{" ".join(addrs) or kind}"]')
    for p in pathmod.select(pathmod.published(t), port):
        out.append(f'    {nid(p.nat_id)}[/"DNAT {p.proto} {p.host_ip}:{p.host_port}<br/>→ {p.ctr_ip}:{p.ctr_port}"/]')
    for n in t.nets:
        out.append(f'    {nid("br_" + n.bridge)}{{{{"{n.bridge}<br/>bridge {n.gateway}<br/>network {n.name}"}}}}')
        if not n.internal:
            out.append(f'    {nid("masq_" + n.bridge)}[\\"MASQUERADE<br/>{n.subnet}"\\]')
    out.append("  end")
    for p in pathmod.select(pathmod.published(t), port):
        for src in (up, nid("if_lo")) if p.host_ip == "0.0.0.0" else (up,):
            out.append(f"  {src} --> {nid(p.nat_id)}")
        out.append(f'  {nid(p.nat_id)} --> {nid("br_" + p.bridge)}')
    for n in t.nets:
        if not n.internal:
            out.append(f'  {nid("br_" + n.bridge)} --> {nid("masq_" + n.bridge)} --> {up}')
        for c in n.containers:
            cid = nid("ctr_" + c.short_id)
            out.append(f'  subgraph {cid}["container {c.name}"]')
            out.append(f'    {cid}_{c.ifname}["{c.ifname}<br/>{c.ip}/{c.prefixlen}<br/>{c.mac}"]')
            out.append("  end")
            out.append(f'  {nid("br_" + n.bridge)} ---|"{c.veth} (veth)"| {cid}_{c.ifname}')
    return "\n".join(out) + "\n"


def _paths(t: Topology, port: str) -> list[str]:
    """Each published port's four paths, hop by hop, wrapped at WIDTH."""
    shown = pathmod.select(pathmod.published(t), port)
    out = []
    for p in shown:
        out.append(f"packet paths of {p.label} ({p.ctr}){'' if port else '; `--port P` shows one port'}")
        for path in pathmod.paths(t, p):
            out.append(f"  {path.title}")
            for i, hop in enumerate(path.hops):
                lead = "      " if i == 0 else "    → "
                out += textwrap.wrap(hop.text, WIDTH, initial_indent=lead, subsequent_indent="        ")
        out.append("")
    if port and not shown:
        out += [f"packet paths: no published port {port}", ""]
    return out
