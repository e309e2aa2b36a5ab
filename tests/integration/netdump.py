"""Print, as JSON, the network structure of the current namespace and of a container's.

    python netdump.py CONTAINER_PID

Links, addresses, routes, nftables rules and set/map elements, iptables rules, and the
sysctls minibox sets, normalised so two builds of the same container compare equal:
interface indexes, handles, counters, random MACs and container ids are left out or
replaced by placeholders. Used to compare `run --dry-run`'s script with minibox itself.
"""

import json
import re
import subprocess
import sys

ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{12}(?![0-9a-f])")


def run(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout


def norm(text):
    return ID.sub("<id>", text)


def links(prefix=""):
    out = []
    for link in json.loads(run(f"{prefix}ip -j -d link show") or "[]"):
        kind = link.get("linkinfo", {}).get("info_kind", "")
        slave = link.get("linkinfo", {}).get("info_slave_data", {})
        mac = link.get("address", "")
        if kind == "bridge":
            # derived from the network's random id: two builds differ in it, never in its form
            # (1 in 256 of them even starts 02:42, as a container's does)
            mac = "02:<from the network id>" if mac.startswith("02:") else mac
        elif link["ifname"] == "eth0":
            mac = mac if mac.startswith("02:42") else "<mac>"  # a container's: 02:42 and its address
        else:
            mac = "<random>"
        out.append({"name": norm(link["ifname"]), "kind": kind, "master": link.get("master", ""),
                    "up": "UP" in link.get("flags", []), "mac": mac, "hairpin": slave.get("hairpin")})
    return sorted(out, key=lambda x: x["name"])


def addrs(prefix=""):
    out = []
    for link in json.loads(run(f"{prefix}ip -j -4 addr show") or "[]"):
        for a in link.get("addr_info", []):
            out.append(f"{norm(link['ifname'])} {a['local']}/{a['prefixlen']}")
    return sorted(out)


def routes(prefix=""):
    return sorted(f"{r['dst']} via {r.get('gateway', '-')} dev {norm(r['dev'])}"
                  for r in json.loads(run(f"{prefix}ip -j -4 route show") or "[]"))


def nft():
    rules, elements = [], []
    for obj in json.loads(run("nft -j list ruleset") or '{"nftables": []}')["nftables"]:
        if "rule" in obj:
            r = obj["rule"]
            expr = [e for e in r["expr"] if "counter" not in e]
            rules.append(norm(f"{r['table']} {r['chain']} {json.dumps(expr, sort_keys=True)} "
                              f"{r.get('comment', '')}"))
        for kind in ("set", "map"):
            if kind in obj:
                for el in obj[kind].get("elem", []):
                    el = dict(el) if isinstance(el, dict) else el
                    elements.append(norm(f"{obj[kind]['name']} {json.dumps(el, sort_keys=True)}"))
    elements = [re.sub(r'"counter": \{[^}]*\}, ?', "", e) for e in elements]
    return sorted(rules), sorted(elements)


def iptables():
    lines = [line for line in run("iptables-save").splitlines()
             if line.startswith(("-A", ":MINIBOX")) and "MINIBOX" in line]
    return sorted(norm(re.sub(r"\[\d+:\d+\]", "", line)) for line in lines)


def sysctls():
    out = {}
    for key in ("net/ipv4/ip_forward", "net/ipv4/conf/minibox0/route_localnet"):
        try:
            out[key] = open(f"/proc/sys/{key}").read().strip()
        except OSError:
            out[key] = None
    return out


if __name__ == "__main__":
    pid = sys.argv[1]
    inside = f"nsenter --net=/proc/{pid}/ns/net "
    nft_rules, nft_elements = nft()
    print(json.dumps({
        "host": {"links": links(), "addrs": addrs(), "routes": routes(), "sysctls": sysctls()},
        "container": {"links": links(inside), "addrs": addrs(inside), "routes": routes(inside)},
        "nft_rules": nft_rules, "nft_elements": nft_elements, "iptables": iptables(),
    }, indent=1, sort_keys=True))
