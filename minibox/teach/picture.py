"""`network show --format svg`: the topology as a picture, with the ways a packet travels drawn on it.

Four columns, left to right: the host's interfaces (lo and the uplink), the NAT steps
(one DNAT box per published port with its map element's counter, one MASQUERADE box per
network), the bridges, and the containers, each a network namespace of its own joined to
its bridge by a veth pair. Thin grey lines are what is connected; coloured arrows are the
four paths of each published port (teach.paths), or of the one `--port P` picks. The
rules with their counters are listed underneath.

Every box is a `<g class="node" data-node=ID>` and every arrow a `<line class="path KIND"
data-from=ID data-to=ID>`, so a test can read the picture's structure without pixels.
Pure: a Topology in, SVG text out.
"""

from __future__ import annotations

from html import escape

from minibox.teach import paths as pathmod
from minibox.teach.topology import Topology, clip, uplink

BOX_H, GAP, TOP = 50, 18, 96
COLUMNS = {"if": (20, 180), "nat": (280, 260), "br": (640, 210), "ctr": (1020, 260)}  # x, width
WIDTH = 1300
COLOURS = {pathmod.LAN_IN: "#1f6fd1", pathmod.HOST_IN: "#8a3ffc", pathmod.CTR_IN: "#d97706",
           pathmod.OUT: "#c0392b"}
STYLE = {"if": ("#eef3fb", "#5b7db8"), "nat": ("#fbeaea", "#b03030"), "br": ("#fdf3e3", "#c08a2b"),
         "ctr": ("#eaf6ea", "#3f8f3f")}


class Box:
    def __init__(self, node: str, lines: list[str], col: str, row: int, strong: bool = False):
        self.node, self.lines, self.col, self.strong = node, lines, col, strong
        self.x, self.w = COLUMNS[col]
        self.y = TOP + row * (BOX_H + GAP)

    @property
    def mid(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + BOX_H / 2


def boxes(t: Topology, shown: list[pathmod.Published]) -> dict[str, Box]:
    """Every box of the picture, by node id, placed in its column."""
    out: dict[str, Box] = {}
    rows = {col: 0 for col in COLUMNS}

    def add(node, lines, col, strong=False):
        out[node] = Box(node, lines, col, rows[col], strong)
        rows[col] += 1

    for name, kind, addrs in t.host_links:
        add(f"if:{name}", [name, " ".join(addrs) or kind or "device"], "if")
    if not uplink(t.routes):  # where the LAN would come in and egress go out, were there a route
        add(f"if:{pathmod.NO_UPLINK}", [pathmod.NO_UPLINK, "no default route here"], "if")
    picked = {p.nat_id for p in shown}
    for p in pathmod.published(t):
        pk = pathmod.dnat_packets(t, p)
        add(p.nat_id, [f"DNAT {p.proto} :{p.host_port} → {p.ctr}:{p.ctr_port}",
                       f"{p.host_ip}:{p.host_port} → {p.ctr_ip}:{p.ctr_port}",
                       f"{pathmod.pkts(pk)} since {p.since or 'published'}"], "nat", p.nat_id in picked)
    up = uplink(t.routes) or pathmod.NO_UPLINK
    for n in t.nets:
        if not n.internal:
            pk = pathmod.masq_packets(t, n.subnet, n.bridge, pathmod.OUT)
            since = f" since {t.rules_since}" if t.rules_since else ""
            add(f"masq:{n.bridge}", ["MASQUERADE (postrouting)", f"{n.subnet} → {up}",
                                     f"{pathmod.pkts(pk)} out{since}"], "nat")
    for n in t.nets:
        add(f"br:{n.bridge}", [f"{n.bridge} (bridge)", f"{n.gateway}  net {n.name}",
                               f"{n.subnet}  {n.ipv6}" if n.ipv6 else n.subnet], "br")
    for n in t.nets:
        for c in n.containers:
            # three lines to a box: a dual-stack container's IPv6 address takes the MAC's place
            add(f"ctr:{c.short_id}", [f"container {c.name}", f"{c.ifname} {c.ip}/{c.prefixlen}", c.ip6 or c.mac],
                "ctr")
    return out


def edges(t: Topology, placed: dict[str, Box]) -> list[tuple[str, str, str]]:
    """What is wired to what, (from, to, label): the grey lines under the paths."""
    up = f"if:{uplink(t.routes) or pathmod.NO_UPLINK}"
    out = []
    for p in pathmod.published(t):
        for src in (up, "if:lo") if p.host_ip == "0.0.0.0" else (up,):
            out.append((src, p.nat_id, ""))
        out.append((p.nat_id, f"br:{p.bridge}", ""))
    for n in t.nets:
        if not n.internal:
            out += [(f"br:{n.bridge}", f"masq:{n.bridge}", ""), (f"masq:{n.bridge}", up, "")]
        out += [(f"br:{n.bridge}", f"ctr:{c.short_id}", f"{c.veth} ⇄ {c.ifname}") for c in n.containers]
    return [e for e in out if e[0] in placed and e[1] in placed]


def _ends(a: Box, b: Box, shift: float) -> tuple[float, float, float, float]:
    """A segment from box a's edge to box b's, moved `shift` px across so paths sharing
    a wire run side by side."""
    (ax, ay), (bx, by) = a.mid, b.mid
    if a.col == b.col:  # one above the other
        down = by > ay
        return (ax + shift, a.y + (BOX_H if down else 0), bx + shift, b.y + (0 if down else BOX_H))
    right = bx > ax
    return (a.x + (a.w if right else 0), ay + shift, b.x + (0 if right else b.w), by + shift)


def svg(t: Topology, port: str = "") -> str:
    shown = pathmod.select(pathmod.published(t), port)
    placed = boxes(t, shown)
    rows = max([0] + [int((b.y - TOP) / (BOX_H + GAP)) + 1 for b in placed.values()])
    routes_y = TOP + rows * (BOX_H + GAP) + 16
    rule_lines: list = []
    for h in t.hooks:
        rule_lines.append((h.title, None))
        rule_lines += [("", r) for r in h.rules]
    rules_y = routes_y + 16 * (len(t.routes) + 1) + 30
    height = rules_y + 16 * (len(rule_lines) + 1) + 20
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" xml:space="preserve" '
         f'font-family="DejaVu Sans Mono, monospace" font-size="12">',
         f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>', "<defs>"]
    for kind, colour in COLOURS.items():
        o.append(f'<marker id="arrow-{kind}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
                 f'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>')
    o += ["</defs>", '<text x="20" y="28" font-size="18" font-weight="bold">minibox network topology</text>',
          '<text x="20" y="48" fill="#555">the host (root network namespace) on the left; each container is a '
          'network namespace of its own on the right</text>']
    legend_x = 20
    for kind, colour in COLOURS.items():
        o.append(f'<line x1="{legend_x}" y1="66" x2="{legend_x + 26}" y2="66" stroke="{colour}" stroke-width="3"/>'
                 f'<text x="{legend_x + 32}" y="70" fill="{colour}">{pathmod.TITLES[kind]}</text>')
        legend_x += 190
    if shown:
        o.append(f'<text x="{legend_x}" y="70" fill="#555">paths of '
                 f'{escape(", ".join(p.label for p in shown))}</text>')
    elif port:
        o.append(f'<text x="{legend_x}" y="70" fill="#555">no published port {escape(port)}</text>')
    for a, b, label in edges(t, placed):
        x1, y1, x2, y2 = _ends(placed[a], placed[b], 0)
        green = a.startswith("br:") and b.startswith("ctr:")
        o.append(f'<line class="wire" data-from="{escape(a)}" data-to="{escape(b)}" x1="{x1}" y1="{y1}" '
                 f'x2="{x2}" y2="{y2}" stroke="{"#3f8f3f" if green else "#bbbbbb"}" stroke-width="2"/>')
        if label:
            o.append(f'<text x="{(x1 + x2) / 2}" y="{(y1 + y2) / 2 - 12}" fill="#3f8f3f" font-size="11" '
                     f'text-anchor="middle">{escape(label)}</text>')
    for p in shown:
        for i, path in enumerate(pathmod.paths(t, p)):
            drawn = [h.node for h in path.hops if h.node in placed]
            for a, b in zip(drawn, drawn[1:]):
                if a == b:
                    continue
                x1, y1, x2, y2 = _ends(placed[a], placed[b], (i - 1.5) * 5)
                o.append(f'<line class="path {path.kind}" data-port="{escape(p.label)}" data-from="{escape(a)}" '
                         f'data-to="{escape(b)}" x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" '
                         f'stroke="{COLOURS[path.kind]}" stroke-width="2" marker-end="url(#arrow-{path.kind})"/>')
    for b in placed.values():
        fill, stroke = STYLE[b.col]
        width = 3 if b.strong else 1
        o.append(f'<g class="node" data-node="{escape(b.node)}">'
                 f'<rect x="{b.x}" y="{b.y}" width="{b.w}" height="{BOX_H}" rx="6" fill="{fill}" stroke="{stroke}" '
                 f'stroke-width="{width}"/>')
        for i, line in enumerate(b.lines[:3]):
            weight = ' font-weight="bold"' if i == 0 else ""
            o.append(f'<text x="{b.x + 8}" y="{b.y + 16 + i * 14}"{weight}>{escape(clip(line, b.w // 7 - 1))}'
                     f'</text>')
        o.append("</g>")
    o.append(f'<text x="20" y="{routes_y}" font-weight="bold" fill="#333">host routes</text>')
    for i, r in enumerate(t.routes):
        o.append(f'<text x="20" y="{routes_y + 16 * (i + 1)}" fill="#333">{escape(clip(r, 60))}</text>')
    since = f"rule counters since {t.rules_since}" if t.rules_since else "rule counters since the rules were written"
    o.append(f'<text x="20" y="{rules_y}" font-size="14" font-weight="bold">firewall ({escape(t.firewall)}): '
             f'{since}; a map element counts from when its port was published</text>')
    y = rules_y
    for title, r in rule_lines:
        y += 16
        if r is None:
            o.append(f'<text x="20" y="{y}" font-weight="bold" fill="#333">{escape(title)}</text>')
        else:
            pk = "-" if r.packets is None else str(r.packets)
            o.append(f'<text x="40" y="{y}"><tspan fill="#b03030">{escape(pk):>8}</tspan>  '
                     f'{escape(clip(r.text, 80))}<tspan fill="#777">  {escape(r.comment)}</tspan></text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"
