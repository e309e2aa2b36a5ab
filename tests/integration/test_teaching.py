"""The teaching layer: --explain, --dry-run (and its script, run for real), explain, show, doctor."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path

import pytest
from conftest import ROOT, inspect, links, mb, sh, wait_for

HERE = Path(__file__).parent
SPEC = ["-d", "-p", "8080:80", "--name", "web", "busybox", "httpd", "-f", "-p", "80"]
BACKEND = os.environ.get("MINIBOX_FIREWALL_BACKEND", "nftables")


def _rules() -> str:
    """Both firewalls' rules, without packet counters (traffic of earlier tests moves them)."""
    text = sh("nft list ruleset; iptables-save", check=False).stdout
    text = re.sub(r"counter packets \d+ bytes \d+", "counter", text)
    return re.sub(r"\[\d+:\d+\]|^#.*$", "", text, flags=re.M)


def test_dry_run_changes_nothing():
    before = (links(), _rules(), sorted(os.listdir(ROOT)))
    res = mb("run", "--dry-run", *SPEC, check=True)
    assert res.stdout.startswith("#!/bin/sh\n")
    for needle in ("unshare --pid --mount --net --uts --ipc --fork", "mount -t overlay", "pivot_root . .",
                   "type veth peer name eth0", "master minibox0", "ip route add default via 10.222.0.1",
                   "sysctl -w net.ipv4.ip_forward=1"):
        assert needle in res.stdout
    assert ("hostport-any { tcp . 8080" in res.stdout) if BACKEND == "nftables" else \
        ("--dport 8080" in res.stdout and "DNAT --to-destination 10.222.0.2:80" in res.stdout)
    after = (links(), _rules(), sorted(os.listdir(ROOT)))
    assert after == before
    assert mb("ps", "-aq").stdout == ""


def _build(how: str, tmp_path: Path) -> dict:
    """Build the container in a throwaway host of its own (fresh network namespace, fresh
    state root holding only the image), then dump its network structure."""
    root = tmp_path / f"root-{how}"
    root.mkdir()
    sh(f"cp -a {ROOT}/images {root}/")
    mbx = f"MINIBOX_ROOT={root} {sys.executable} -m minibox"
    if how == "script":
        # generated inside the fresh host too: the plan depends on that host's routes
        script = tmp_path / "dry.sh"
        build = (f"{mbx} run --dry-run {' '.join(SPEC)} > {script}\n"
                 f"sh {script} > {tmp_path}/script.log 2>&1\n"
                 f"cdir=$(grep '^export C=' {script} | cut -d= -f2 | cut -d' ' -f1)\n"
                 "pid=$(cat $cdir/pid)")
        # PID 1 ignores SIGTERM without a handler; then wait for the namespace to empty
        stop = ("kill -9 $pid\nwhile [ -e /proc/$pid ]; do sleep 0.05; done\nrm -rf $cdir\n"
                "for d in /sys/fs/cgroup/*/$MINIBOX_CGROUP_PARENT/*/; do rmdir $d; done")
    else:
        build = f"{mbx} run {' '.join(SPEC)} >/dev/null\npid=$({mbx} inspect web | sed -n 's/.*\"Pid\": \\([0-9]*\\).*/\\1/p')"
        stop = f"{mbx} rm -f web >/dev/null"
    job = tmp_path / f"{how}.sh"
    ready = "for i in $(seq 100); do curl -s -m 1 -o /dev/null 127.0.0.1:8080 && break; sleep 0.1; done"
    job.write_text(f"set -e\nip link set lo up\n{build}\n{ready}\n"
                   f"curl -s -m 5 127.0.0.1:8080 > {tmp_path}/{how}.page\n"
                   f"{sys.executable} {HERE}/netdump.py $pid > {tmp_path}/{how}.json\n{stop}\n")
    sh(f"unshare --net --mount sh {job}", timeout=60)
    return {"dump": json.loads((tmp_path / f"{how}.json").read_text()),
            "page": (tmp_path / f"{how}.page").read_text()}


def test_dry_run_script_builds_what_minibox_builds(tmp_path):
    by_hand = _build("script", tmp_path)
    by_minibox = _build("minibox", tmp_path)
    assert "Hello from minibox" in by_hand["page"] and by_hand["page"] == by_minibox["page"]
    a, b = by_hand["dump"], by_minibox["dump"]
    for part in ("host", "container"):
        for what in a[part]:
            assert a[part][what] == b[part][what], f"{part} {what} differ"
    assert a["nft_rules"] == b["nft_rules"]
    assert a["nft_elements"] == b["nft_elements"]
    assert a["iptables"] == b["iptables"]
    # and they are not trivially equal: the structures are there
    assert any(link["kind"] == "veth" and link["master"] == "minibox0" for link in a["host"]["links"])
    assert "eth0 10.222.0.2/24" in a["container"]["addrs"]
    assert "default via 10.222.0.1 dev eth0" in a["container"]["routes"]


def test_run_explain_lists_every_kind_of_step():
    res = mb("run", "--explain", *SPEC, check=True)
    out = res.stderr
    for needle in ("unshare --pid --mount --net --uts --ipc --fork",
                   "mount -t overlay -o nodev,lowerdir=",
                   ": seccomp filter from /usr/share/containers/seccomp.json tightened to Docker's default",
                   "echo a > ",  # the device allowlist: deny all...
                   "echo 'c 1:3 rwm' > ",  # ...then allow Docker's list
                   "pivot_root . .",
                   "setpriv --bounding-set=-all,+chown",
                   "type veth peer name eth0 address 02:42:0a:de:00:02",
                   "master minibox0",
                   "ip addr add 10.222.0.2/24 dev eth0",
                   "ip route add default via 10.222.0.1",
                   "sysctl -w net.ipv4.conf.minibox0.route_localnet=1"):
        assert needle in out, needle
    pid = str(inspect("web")["State"]["Pid"])
    assert f"netns /proc/{pid}/ns/net" in out  # the real PID, not a placeholder
    if BACKEND == "nftables":
        assert "add element inet minibox hostport-any { tcp . 8080" in out
    else:
        assert "-A MINIBOX -p tcp -m tcp --dport 8080" in out
    assert res.stdout.strip() == inspect("web")["Id"]  # stdout stays just the id
    mb("rm", "-f", "web", check=True)


def test_rm_exec_and_network_create_explain():
    mb("run", *SPEC, check=True)
    ex = mb("exec", "--explain", "web", "true", check=True).stderr
    pid = inspect("web")["State"]["Pid"]
    assert f"nsenter --target {pid} --ipc --uts --net --pid --mount --root" in ex
    assert "exec env -i" in ex and "cgroup.procs" in ex
    rm = mb("rm", "-f", "--explain", "web", check=True).stderr
    assert f"kill -KILL {pid}" in rm and "rm -rf $C" in rm and "rm -f " in rm and "/ipam/minibox/10.222.0.2" in rm
    assert ("delete element inet minibox hostport-any { tcp . 8080 }" in rm) if BACKEND == "nftables" \
        else ("iptables-restore --noflush" in rm)
    net = mb("network", "create", "--explain", "--subnet", "192.168.15.0/24", "--gateway", "192.168.15.5",
             "v-net-0", check=True).stderr
    try:
        assert "type bridge" in net and "ip addr add 192.168.15.5/24 dev mbx-" in net
    finally:
        mb("network", "rm", "v-net-0", check=True)


def test_explain_container_shows_its_kernel_objects():
    mb("run", *SPEC, check=True)
    sh("curl -s -m 5 127.0.0.1:8080")
    doc = inspect("web")
    out = mb("explain", "web", check=True).stdout
    pid = doc["State"]["Pid"]
    assert f"$ ls -l /proc/{pid}/ns" in out and "net -> net:[" in out
    assert f"NSpid:\t{pid}\t1" in out
    assert "overlay" in out and "upperdir=" in out
    assert f"ip -d link show mbx{doc['Id'][:12]}" in out and "hairpin on" in out
    assert "inet 10.222.0.2/24" in out and "default via 10.222.0.1" in out
    if BACKEND == "nftables":
        assert "tcp . 8080 counter packets 1" in out  # the one request above
    mb("rm", "-f", "web", check=True)


def test_top_shows_namespaces_and_cgroup():
    mb("run", *SPEC, check=True)
    out = mb("top", "web", check=True).stdout
    assert "httpd -f -p 80" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] and
            line.split()[0] in ("pid", "net", "mnt", "uts", "ipc", "user")}
    assert rows["net"][1] != rows["net"][2] and rows["user"][1] == rows["user"][2]
    # the cgroup table names each group's directory on the host, and it is there
    dirs = [line.split()[-1] for line in out.splitlines() if line.split()[-1:] and
            line.split()[-1].startswith("/sys/fs/cgroup/")]
    assert dirs and all(os.path.isdir(d) and inspect("web")["Id"] in d for d in dirs), out
    doc = json.loads(mb("top", "web", "--format", "json", check=True).stdout)
    assert doc["processes"][0]["ctr_pid"] == 1
    assert any(inspect("web")["Id"] in line for line in doc["cgroup"])
    mb("rm", "-f", "web", check=True)


def test_network_show_text_svg_mermaid():
    import xml.etree.ElementTree as ET

    mb("run", *SPEC, check=True)
    cid = inspect("web")["Id"][:12]
    text = mb("network", "show", check=True).stdout
    assert all(len(line) <= 100 for line in text.splitlines())
    assert f"mbx{cid} ══veth══ eth0 10.222.0.2/24 02:42:0a:de:00:02" in text
    assert "publishes 0.0.0.0:8080->80/tcp" in text and "10.222.0.0/24 dev minibox0" in text
    assert "masquerade" in text.lower()
    svg = mb("network", "show", "--format", "svg", check=True).stdout
    root = ET.fromstring(svg)
    labels = " ".join("".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert "container web" in labels and "minibox0 (bridge)" in labels and f"mbx{cid}" in labels
    mer = mb("network", "show", "--format", "mermaid", check=True).stdout
    assert mer.startswith("flowchart LR") and f"mbx{cid} (veth)" in mer
    mb("rm", "-f", "web", check=True)


def test_network_show_draws_the_paths_a_request_took(outside):
    """A LAN host's request, then the picture: the way in through the uplink's DNAT (its
    counter moved), the way out through MASQUERADE to the uplink, for the chosen port only."""
    sys.path.insert(0, str(HERE.parent / "unit"))
    from test_teach import svg_structure

    sh(f"ip route add default via {outside.addr} dev uplink0")  # the sandbox host's uplink
    try:
        mb("run", *SPEC, check=True)
        mb("run", "-d", "-p", "9090:80", "--name", "other", "busybox", "httpd", "-f", "-p", "80", check=True)
        url = f"http://{outside.host_addr}:8080/"
        assert wait_for(lambda: outside.run(f"curl -s -m 2 -o /dev/null -w '%{{http_code}}' {url}",
                                            check=False).stdout in ("200", "404"))
        text = mb("network", "show", "minibox", "--port", "8080", check=True).stdout
        assert all(len(line) <= 100 for line in text.splitlines())
        assert "packet paths of 0.0.0.0:8080->80/tcp (web)" in text and "9090->80" not in text.split("routes")[1]
        lan = text.split("  in from the LAN\n")[1].split("  in from this host")[0]
        assert "uplink0: a LAN host asks for any host address:8080" in lan
        if BACKEND == "nftables":
            hit = re.search(r"prerouting: DNAT tcp :8080 → 10.222.0.2:80 \[(\d+) pkts? since \d\d:\d\d:\d\d\]", lan)
            assert hit and int(hit.group(1)) >= 1, lan
        out = text.split("  out to the world\n")[1]
        assert "MASQUERADE to uplink0's address" in out and "rule counters since" in text
        _nodes, wires, hops = svg_structure(mb("network", "show", "--format", "svg", "--port", "8080/tcp",
                                               check=True).stdout)
        dnat = "dnat:0.0.0.0:8080/tcp"
        assert {("if:uplink0", dnat), ("if:lo", dnat), ("masq:minibox0", "if:uplink0")} <= wires
        assert ("lan-in", "if:uplink0", dnat) in hops and ("out", "masq:minibox0", "if:uplink0") in hops
        assert not any("9090" in a + b for _, a, b in hops)
        for bad, code, message in (("http", 125, 'invalid --port "http": give a published host port'),
                                   ("7777", 1, "no container publishes port 7777 on network minibox (published: "
                                               "8080/tcp, 9090/tcp)")):
            res = mb("network", "show", "minibox", "--port", bad)
            assert res.returncode == code and res.stderr.count("\n") == 1 and message in res.stderr, res.stderr
    finally:
        sh(f"ip route del default via {outside.addr} dev uplink0", check=False)
        mb("rm", "-f", "web", "other")


def test_doctor_passes_then_names_a_missing_jump():
    mb("run", *SPEC, check=True)
    ok = mb("doctor")
    assert ok.returncode == 0, ok.stdout
    sh("iptables -P FORWARD DROP")
    try:
        jump = sh("iptables -S FORWARD | grep MINIBOX-FORWARD || true").stdout.strip()
        if jump:
            sh(f"iptables {jump.replace('-A', '-D', 1)}")
        bad = mb("doctor")
        assert bad.returncode == 1
        assert any(line.startswith("[ERROR] FORWARD policy") for line in bad.stdout.splitlines())
        assert "minibox network reconcile" in bad.stdout
        mb("network", "reconcile", check=True)
        assert mb("doctor").returncode == 0
    finally:
        sh("iptables -P FORWARD ACCEPT")
        mb("rm", "-f", "web", check=True)


@pytest.mark.parametrize("blocker", ["iptables", "nftables"])
def test_doctor_names_a_forward_blocker_and_the_fix_it_prints_works(blocker, outside):
    """#24 item 8: a DROP above minibox's jump in iptables' FORWARD, or another nftables table
    whose forward chain has policy drop (firewalld's and ufw's shape), cut a published port
    off from the LAN while doctor said every line was ok. doctor names it and prints the
    commands that let minibox's traffic through; run after it warns."""
    mb("run", *SPEC, check=True)
    url = f"http://{outside.host_addr}:8080/"
    try:
        assert outside.run(f"curl -s -m 3 -o /dev/null -w %{{http_code}} {url}", check=False).stdout == "200"
        if blocker == "iptables":
            sh("iptables -I FORWARD 1 -j DROP")
        else:
            sh("printf 'table inet blocker {\\n chain forward_drop {\\n type filter hook forward priority 0; "
               "policy drop;\\n }\\n}\\n' | nft -f -")
        assert outside.run(f"curl -s -m 2 {url}", check=False).returncode != 0  # cut off
        doc = mb("doctor")
        assert doc.returncode == 1
        line = next(x for x in doc.stdout.splitlines() if x.startswith("[ERROR] forward blocker"))
        assert ("-A FORWARD -j DROP" if blocker == "iptables" else "inet blocker forward_drop") in line
        (found,) = [f for f in json.loads(mb("doctor", "--format", "json").stdout) if f["check"] == "forward blocker"]
        fix = found["fix"]
        other = mb("run", "-d", "--name", "other", "busybox", "sleep", "60")  # the ruleset changed: run warns
        assert "drops containers' forwarded traffic" in other.stderr, other.stderr
        for cmd in fix.split(";"):
            sh(cmd.strip())
        assert outside.run(f"curl -s -m 3 -o /dev/null -w %{{http_code}} {url}", check=False).stdout == "200"
    finally:
        sh("iptables -D FORWARD -j DROP; nft delete table inet blocker", check=False)
        mb("rm", "-f", "web", "other")


@pytest.mark.parametrize("path", ["localhost", "outside", "container", "host"])
def test_trace_shows_the_dnat_on_each_path(path, outside):
    mb("run", *SPEC, check=True)
    args = ["trace", "web", "--port", "8080", "--from", path]
    if path == "host":
        args += ["--to", outside.host_addr]
    before = links()
    out = mb(*args, check=True).stdout
    assert "answer: HTTP/1.1 200 OK" in out
    assert "dport=8080 src=10.222.0.2" in out  # conntrack: the reply comes from the container
    assert ("hostport-any" in out) if BACKEND == "nftables" else ("DNAT" in out)
    if path == "localhost":
        assert "127.0.0.1" in out and "masquerade" in out.lower()
    assert links() == before  # the probe's namespace and helper are gone
    mb("rm", "-f", "web", check=True)


def test_dry_run_carries_every_step_run_applies():
    """One plan: each command `run --explain` prints as applied is in the `--dry-run` script for
    the same spec (ids, PIDs and the container's directory aside; the steps no shell command
    inside busybox performs appear as the script's notes or in its exec line instead)."""
    mb("run", "--rm", "busybox", "true", check=True)  # the network exists for both, as it will for run
    spec = ["-d", "-p", "8084:80", "--ip", "10.222.0.77", "--name", "same", "busybox", "httpd", "-f", "-p", "80"]
    script = mb("run", "--dry-run", *spec, check=True).stdout
    applied = mb("run", "--explain", *spec, check=True)
    pid = str(inspect("same")["State"]["Pid"])
    cid = applied.stdout.strip()

    def norm(text: str, ident: str) -> str:
        text = text.replace(ident, "$ID").replace(ident[:12], "<id12>")
        return re.sub(rf"(?<![0-9]){pid}(?![0-9])", "$CTR_PID", text)

    dry_id = re.search(r"^ID=([0-9a-f]{64})$", script, re.M).group(1)
    words = shlex.split(script[script.index("\nunshare ") + 1:script.index("\nwhile [ -z")])
    inner = words[words.index("-ec") + 1]  # PID 1's own script, unquoted
    dry = norm(script + "\n" + inner, dry_id)
    notes = {"setpriv --bounding-set": "# minibox limits the capability bounding set",
             ": seccomp filter from": "# seccomp filter from",
             "exec env -i": "exec setpriv nsenter -F -S 0 -G 0 env -i",  # no --nnp: Docker's default
             "setpriv --reuid=0 --regid=0 --clear-groups": "# become 0:0 with no other groups",
             "nsenter --net=/proc/$CTR_PID/ns/net ip link set lo up": "ip link set lo up"}  # PID 1 does it itself
    checked = 0
    try:
        for line in norm(applied.stderr, cid).splitlines():
            if not line or line.startswith(("#", "C=", "ID=")):
                continue
            for applied_form, script_form in notes.items():
                if applied_form in line:
                    line = script_form
            assert line in dry, f"applied but not in the dry run: {line}"
            checked += 1
        assert checked > 40
    finally:
        mb("rm", "-f", "same", check=True)


def test_explain_on_an_existing_network_shows_what_it_relies_on_as_in_place():
    """The lesson of one `run` is the whole path: on a network an earlier command made, the
    MASQUERADE and forward rules it goes through are shown, marked as already in place (and
    not applied again), on either backend."""
    mb("run", "--rm", "busybox", "true", check=True)  # the default network exists now
    out = mb("run", "--rm", "--explain", "busybox", "true", check=True).stderr
    after = out.split("# already in place", 1)[1].splitlines()[1:]
    shown = "\n".join(line for line in after[:next((i for i, x in enumerate(after) if not x.startswith("#   ")),
                                                    len(after))])
    word = "masquerade" if BACKEND == "nftables" else "-j MASQUERADE"
    assert word in shown and ("forward" if BACKEND == "nftables" else "MINIBOX-FORWARD") in shown
    assert all(line.startswith("#") for line in out.splitlines() if word in line)  # shown, not applied again
