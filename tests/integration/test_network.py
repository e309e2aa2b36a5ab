"""Bridge networking end to end: the four paths of a published port, egress, isolation, teardown.

Runs once per firewall backend (scripts/test sets MINIBOX_FIREWALL_BACKEND), inside a
throwaway host whose "LAN" is the outside-host namespace of conftest.Outside.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import socket
import subprocess
import sys

import pytest
from conftest import ROOT, conntrack_entries, inspect, links, mb, sh, wait_for

BACKEND = os.environ.get("MINIBOX_FIREWALL_BACKEND", "nftables")
PAGE = "Hello from minibox"


def web(name: str = "web", *publish: str, network: str = "") -> str:
    args = ["run", "-d", "--name", name]
    for p in publish or ("8080:80",):
        args += ["-p", p]
    if network:
        args += ["--network", network]
    cid = mb(*args, "busybox", "httpd", "-f", "-p", "80", check=True).stdout.strip()
    return cid


def client(name: str = "cli", network: str = "") -> None:
    args = ["run", "-d", "--name", name] + (["--network", network] if network else [])
    mb(*args, "busybox", "sleep", "1000", check=True)


def fetch_in(ctr: str, url: str) -> subprocess.CompletedProcess:
    # busybox-static 1.35's `wget -T` segfaults; bound it with timeout instead
    return mb("exec", ctr, "timeout", "5", "wget", "-qO-", url)


def curl(url: str, where: str = "") -> subprocess.CompletedProcess:
    return sh(f"{where}curl -s -m 5 {url}", check=False)


@pytest.mark.parametrize("policy", ["accept", "drop"])
def test_published_port_on_all_four_paths_and_egress(outside, policy, request):
    if policy == "drop":
        request.getfixturevalue("forward_drop")  # as Docker leaves a host
    web()
    client()
    host = outside.host_addr
    # 1. a machine on the LAN -> host address
    assert PAGE in outside.run(f"curl -s -m 5 http://{host}:8080/", check=False).stdout
    # 2. a process on the host -> host address
    assert PAGE in curl(f"http://{host}:8080/").stdout
    # 3. a process on the host -> 127.0.0.1
    assert PAGE in curl("http://127.0.0.1:8080/").stdout
    # 4. another container, and the container itself, -> host address (hairpin)
    assert PAGE in fetch_in("cli", f"http://{host}:8080/").stdout
    assert PAGE in fetch_in("web", f"http://{host}:8080/").stdout
    # egress: the outside host sees the host's address, not the container's
    mark = f"egress-{policy}.html"
    got = fetch_in("cli", outside.page(mark))
    assert got.stdout == "outside says hi\n", got.stderr
    log = [line for line in outside.http_clients().splitlines() if mark in line]
    assert log and all(host in line for line in log), log
    ctr_ip = inspect("cli")["NetworkSettings"]["IPAddress"]
    assert not any(ctr_ip in line for line in log)
    mb("rm", "-f", "web", "cli", check=True)


def test_inbound_dnat_keeps_the_client_address(outside):
    mb("run", "-d", "--name", "verbose", "-p", "8080:80", "busybox", "httpd", "-f", "-vv", "-p", "80", check=True)
    assert PAGE in outside.run(f"curl -s -m 5 http://{outside.host_addr}:8080/", check=False).stdout
    # DNAT only: the server sees the real client (its log line lands a moment after the answer)
    assert wait_for(lambda: outside.addr in mb("logs", "verbose").stderr)
    mb("rm", "-f", "verbose", check=True)


def test_loopback_binding_is_not_reachable_from_outside(outside):
    web("lo", "127.0.0.1:8081:80")
    assert PAGE in curl("http://127.0.0.1:8081/").stdout
    assert PAGE not in outside.run(f"curl -s -m 3 http://{outside.host_addr}:8081/", check=False).stdout
    assert PAGE not in curl(f"http://{outside.host_addr}:8081/").stdout
    assert mb("port", "lo", check=True).stdout == "80/tcp -> 127.0.0.1:8081\n"
    mb("rm", "-f", "lo", check=True)


def test_specific_host_address_and_ephemeral_port(outside):
    web("eph", "80", f"{outside.host_addr}:8082:80")
    ports = mb("port", "eph", check=True).stdout.splitlines()
    assert ports[1] == f"80/tcp -> {outside.host_addr}:8082"
    ephemeral = int(ports[0].rsplit(":", 1)[1])
    assert ports[0].startswith("80/tcp -> 0.0.0.0:") and ephemeral > 1024
    assert PAGE in curl(f"http://127.0.0.1:{ephemeral}/").stdout
    assert PAGE in outside.run(f"curl -s -m 5 http://{outside.host_addr}:8082/", check=False).stdout
    assert PAGE not in curl("http://127.0.0.1:8082/").stdout  # bound to the other address only
    mb("rm", "-f", "eph", check=True)


THREE_SERVERS = ("for p in 80 81 82; do mkdir -p /w$p; echo page$p > /w$p/index.html; done; "
                 "httpd -p 80 -h /w80; httpd -p 81 -h /w81; exec httpd -f -p 82 -h /w82")


def test_a_port_range_publishes_each_port_as_one_element(outside):
    """-p 8100-8102:80-82: three mappings in order, each answered by its own server, on all
    paths; on nftables each is one element of the hostport map (no rule is added per port),
    on iptables one DNAT rule each, as Docker's. A range's conflict names its first taken port."""
    def rules() -> list[str]:
        if BACKEND == "nftables":
            return [x for x in sh("nft -a list chain inet minibox hostports", check=False).stdout.splitlines()
                    if "dnat" in x]
        return []

    mb("run", "--rm", "busybox", "true", check=True)  # the default network and its base rules exist
    before = rules()
    mb("run", "-d", "--name", "rng", "-p", "8100-8102:80-82", "busybox", "sh", "-c", THREE_SERVERS, check=True)
    try:
        assert mb("port", "rng", check=True).stdout == \
            "80/tcp -> 0.0.0.0:8100\n81/tcp -> 0.0.0.0:8101\n82/tcp -> 0.0.0.0:8102\n"
        for host_port, page in ((8100, "page80"), (8101, "page81"), (8102, "page82")):
            assert wait_for(lambda: page in curl(f"http://127.0.0.1:{host_port}/").stdout)
            assert page in outside.run(f"curl -s -m 5 http://{outside.host_addr}:{host_port}/", check=False).stdout
        if BACKEND == "nftables":
            assert rules() == before  # no rule of its own: three elements
            elements = sh("nft list map inet minibox hostport-any", check=True).stdout
            assert all(f"tcp . {p}" in elements for p in (8100, 8101, 8102))
        else:
            nat = sh("iptables -t nat -S MINIBOX", check=True).stdout
            assert all(f"--dport {p} " in nat for p in (8100, 8101, 8102))
        taken = mb("run", "-d", "--name", "rng2", "-p", "8095-8105:80-90", "busybox", "true")
        assert taken.returncode == 125 and taken.stderr.count("\n") == 1
        assert "0.0.0.0:8100/tcp is already published by container rng" in taken.stderr
        bad = mb("run", "-d", "-p", "8000-8010:80-81", "busybox", "true")
        assert bad.returncode == 125 and "ranges of different lengths (11 and 2)" in bad.stderr
        eph = mb("run", "-d", "--name", "rng3", "-p", "127.0.0.1::80-81", "busybox", "sh", "-c", THREE_SERVERS,
                 check=True)
        assert eph.returncode == 0
        lines = mb("port", "rng3", check=True).stdout.splitlines()
        assert [x.split(" -> ")[0] for x in lines] == ["80/tcp", "81/tcp"]
        assert all(x.split(" -> ")[1].startswith("127.0.0.1:") for x in lines)
        second = int(lines[1].rsplit(":", 1)[1])
        assert wait_for(lambda: "page81" in curl(f"http://127.0.0.1:{second}/").stdout)
    finally:
        mb("rm", "-f", "rng", "rng2", "rng3")
    assert mb("ps", "-aq").stdout == ""


UDP_ECHO = r"""
#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>
int main(void) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(5353)};
    bind(s, (struct sockaddr *)&a, sizeof a);
    for (;;) {
        char buf[512]; struct sockaddr_in from; socklen_t fl = sizeof from;
        int n = recvfrom(s, buf, sizeof buf - 6, 0, (struct sockaddr *)&from, &fl);
        if (n < 0) continue;
        memcpy(buf + n, " echo", 5);
        sendto(s, buf, n + 5, 0, (struct sockaddr *)&from, fl);
    }
}
"""


@pytest.fixture(scope="module")
def udp_echo(tmp_path_factory):
    d = tmp_path_factory.mktemp("udp")
    (d / "udpecho.c").write_text(UDP_ECHO)
    sh(f"cc -static -O2 -o {d}/udpecho {d}/udpecho.c")
    return d / "udpecho"


UDP_ASK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", int(sys.argv[3])))
s.settimeout(1)
s.sendto(sys.argv[4].encode(), (sys.argv[1], int(sys.argv[2])))
try:
    print(s.recvfrom(100)[0].decode())
except OSError:
    print("no answer")
"""


def udp_ask(outside, port: int, src_port: int, text: str) -> str:
    """One datagram from the outside host, from a fixed source port (the same flow each time)."""
    script = outside.www.parent / "udp_ask.py"
    script.write_text(UDP_ASK)
    return outside.run(f"{sys.executable} {script} {outside.host_addr} {port} {src_port} {text}",
                       check=False).stdout.strip()


def test_udp_publish_and_stale_conntrack_is_flushed(outside, udp_echo):
    # A client talks to the port before anything is published: its conntrack entry has no
    # DNAT. Without a flush at publish time, the same flow would keep missing the container.
    mb("run", "--rm", "busybox", "true", check=True)  # the default network, so conntrack is on
    assert udp_ask(outside, 5353, 40001, "early") == "no answer"
    assert conntrack_entries("dport=5353")
    mb("run", "-d", "--name", "udp", "-p", "5353:5353/udp", "busybox", "sleep", "1000", check=True)
    with open(udp_echo, "rb") as f:
        subprocess.run([sys.executable, "-m", "minibox", "exec", "-i", "udp", "sh", "-c",
                        "cat > /tmp/udpecho && chmod +x /tmp/udpecho"], stdin=f, check=True, capture_output=True)
    server = subprocess.Popen([sys.executable, "-m", "minibox", "exec", "udp", "/tmp/udpecho"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: "udpecho" in mb("exec", "udp", "ps").stdout)  # the server runs
    assert udp_ask(outside, 5353, 40001, "again") == "again echo"  # same source port as before
    assert mb("port", "udp", check=True).stdout == "5353/udp -> 0.0.0.0:5353\n"
    mb("rm", "-f", "udp", check=True)
    server.wait(timeout=10)  # its exec ends with the container


def test_port_conflicts_are_refused_before_anything_is_created():
    web("first", "8090:80")
    before = links()
    res = mb("run", "-d", "--name", "second", "-p", "8090:80", "busybox", "httpd", "-f", "-p", "80")
    assert res.returncode == 125 and "8090" in res.stderr and "first" in res.stderr
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 8091))
    listener.listen()
    try:
        res = mb("run", "-d", "--name", "third", "-p", "8091:80", "busybox", "httpd", "-f", "-p", "80")
        assert res.returncode == 125 and "8091" in res.stderr and "already in use" in res.stderr
        assert res.stderr.count("\n") == 1
    finally:
        listener.close()
    assert links() == before
    assert [json.loads(x)["Names"] for x in mb("ps", "-a", "--format", "json").stdout.splitlines()] == ["first"]
    # while the container runs, its shim holds the port: a host program cannot take it
    s = socket.socket()
    with pytest.raises(OSError):
        s.bind(("0.0.0.0", 8090))
    s.close()
    mb("rm", "-f", "first", check=True)


def test_networks_are_isolated_and_peers_resolve_by_name():
    mb("network", "create", "--subnet", "10.77.1.0/24", "neta", check=True)
    mb("network", "create", "netb", check=True)
    try:
        client("a1", "neta")
        client("a2", "neta")
        client("b1", "netb")
        a2_ip = inspect("a2")["NetworkSettings"]["IPAddress"]
        b1_ip = inspect("b1")["NetworkSettings"]["IPAddress"]
        assert a2_ip.startswith("10.77.1.")
        assert mb("exec", "a1", "ping", "-c1", "-W2", "a2").returncode == 0  # by name, same network
        assert mb("exec", "a1", "ping", "-c1", "-W2", a2_ip).returncode == 0
        assert mb("exec", "a1", "ping", "-c1", "-W2", b1_ip).returncode != 0  # other network
        assert mb("exec", "b1", "ping", "-c1", "-W2", a2_ip).returncode != 0
        assert mb("exec", "a1", "ping", "-c1", "-W2", "b1").returncode != 0  # no name either
        # by the network's DNS server, as Docker's: /etc/hosts names only the container itself
        hosts = mb("exec", "a2", "cat", "/etc/hosts", check=True).stdout
        names = {word for line in hosts.splitlines() for word in line.split()[1:]}  # (a1's id may hold "a1")
        assert "a1" not in names and f"{a2_ip}\t{inspect('a2')['Config']['Hostname']}\n" in hosts
        mb("rm", "-f", "a1", check=True)
        assert mb("exec", "a2", "ping", "-c1", "-W2", "a1").returncode != 0
        inspected = json.loads(mb("network", "inspect", "neta", check=True).stdout)[0]
        assert inspected["IPAM"]["Config"] == [{"Subnet": "10.77.1.0/24", "Gateway": "10.77.1.1"}]
        assert [c["Name"] for c in inspected["Containers"].values()] == ["a2"]
        busy = mb("network", "rm", "neta")
        assert busy.returncode == 1 and "a2" in busy.stderr
    finally:
        for c in ("a1", "a2", "b1"):
            mb("rm", "-f", c)
        mb("network", "rm", "neta", "netb")
    assert "neta" not in mb("network", "ls").stdout


def test_internal_network_has_no_egress(outside):
    mb("network", "create", "--internal", "secret", check=True)
    try:
        client("in1", "secret")
        client("in2", "secret")
        assert mb("exec", "in1", "ping", "-c1", "-W2", "in2").returncode == 0
        assert fetch_in("in1", outside.page("internal.html")).returncode != 0
        res = mb("run", "-d", "--network", "secret", "-p", "8099:80", "busybox", "true")
        assert res.returncode == 125 and "internal" in res.stderr
    finally:
        mb("rm", "-f", "in1", "in2")
        mb("network", "rm", "secret")


def test_the_lecture_lab():
    mb("network", "create", "--subnet", "192.168.15.0/24", "--gateway", "192.168.15.5", "v-net-0", check=True)
    try:
        mb("run", "-d", "--network", "v-net-0", "--name", "red", "busybox", "sleep", "1000", check=True)
        mb("run", "-d", "--network", "v-net-0", "--name", "blue", "busybox", "sleep", "1000", check=True)
        red = inspect("red")["NetworkSettings"]
        assert (red["IPAddress"], red["Gateway"]) == ("192.168.15.1", "192.168.15.5")
        assert inspect("blue")["NetworkSettings"]["IPAddress"] == "192.168.15.2"
        assert mb("exec", "blue", "ping", "-c1", "-W2", "192.168.15.1").returncode == 0
        assert sh("busybox ping -c1 -W2 192.168.15.2", check=False).returncode == 0  # the host is on v-net-0
        route = mb("exec", "blue", "ip", "route", check=True).stdout
        assert "default via 192.168.15.5" in route
    finally:
        mb("rm", "-f", "red", "blue")
        mb("network", "rm", "v-net-0")


def test_parallel_runs_get_distinct_addresses():
    def one(i):
        return mb("run", "-d", "--name", f"par{i}", "busybox", "sleep", "1000", timeout=90)

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(one, range(10)))
    assert [r.returncode for r in results] == [0] * 10, [r.stderr for r in results]
    addrs = [inspect(f"par{i}")["NetworkSettings"]["IPAddress"] for i in range(10)]
    assert len(set(addrs)) == 10
    assert sorted(int(a.rsplit(".", 1)[1]) for a in addrs) == list(range(2, 12))  # lowest free, no gaps
    ipam = sorted(p.name for p in (ROOT / "ipam/minibox").iterdir() if not p.name.startswith("."))
    assert ipam == sorted(addrs)
    mb("rm", "-f", *(f"par{i}" for i in range(10)), check=True)


def test_requested_address_and_exhaustion():
    mb("network", "create", "--subnet", "10.78.0.0/29", "tiny", check=True)
    try:
        mb("run", "-d", "--network", "tiny", "--ip", "10.78.0.6", "--name", "t6", "busybox", "sleep", "1000",
           check=True)
        assert inspect("t6")["NetworkSettings"]["IPAddress"] == "10.78.0.6"
        taken = mb("run", "-d", "--network", "tiny", "--ip", "10.78.0.6", "busybox", "sleep", "1000")
        assert taken.returncode == 125 and "10.78.0.6 is already in use" in taken.stderr
        for i in range(4):  # .2 .3 .4 .5
            mb("run", "-d", "--network", "tiny", "--name", f"t{i}", "busybox", "sleep", "1000", check=True)
        full = mb("run", "-d", "--network", "tiny", "busybox", "sleep", "1000")
        assert full.returncode == 125 and "no free address" in full.stderr
        assert len(mb("ps", "-aq").stdout.split()) == 5  # the refused runs left nothing
    finally:
        for n in ("t6", "t0", "t1", "t2", "t3"):
            mb("rm", "-f", n)
        mb("network", "rm", "tiny")


BAD_NETWORK_INPUT = [
    (["network", "create", "--subnet", "10.0.0.0/33", "n"], 'invalid subnet "10.0.0.0/33"'),
    (["network", "create", "--subnet", "10.9.0.0/24", "--gateway", "10.8.0.1", "n"], "gateway 10.8.0.1 is not"),
    (["network", "create", "bad name"], 'invalid network name "bad name"'),
    (["network", "create", "host"], '"host" is a reserved network name'),
    (["network", "rm", "nosuchnet"], 'no such network: "nosuchnet"'),
    (["run", "--network", "nosuchnet", "busybox", "true"], 'no such network: "nosuchnet"'),
    (["run", "-p", "8080:99999", "busybox", "true"], "container port 99999"),
    (["run", "-p", "80:80:80:80", "busybox", "true"], 'malformed -p "80:80:80:80"'),
    (["run", "--network", "none", "-p", "8080:80", "busybox", "true"], "-p has no effect with --network none"),
    (["run", "-p", "203.0.113.99:8080:80", "busybox", "true"], "203.0.113.99 is not an address of this host"),
]


@pytest.mark.parametrize("args, message", BAD_NETWORK_INPUT)
def test_bad_network_input_gets_one_line_and_changes_nothing(args, message):
    before_links = links()
    res = mb(*args)
    # Docker: 125 for a refused command; 1 when a verb other than run finds no such object
    assert res.returncode == (1 if args[0] != "run" and "no such" in message else 125), res.stderr
    assert message in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert links() - before_links == set()
    assert mb("ps", "-aq").stdout == ""


def test_overlapping_subnet_names_the_route(outside):
    res = mb("network", "create", "--subnet", str(outside.subnet), "clash")
    assert res.returncode == 1 and "overlaps the host route" in res.stderr and "uplink0" in res.stderr
    mb("network", "create", "--subnet", "10.79.0.0/24", "one", check=True)
    try:
        res = mb("network", "create", "--subnet", "10.79.0.0/16", "two")
        assert res.returncode == 1 and "overlaps" in res.stderr
    finally:
        mb("network", "rm", "one")


def test_a_route_added_later_is_caught_at_the_next_run(outside):
    """Docker checks routes only when a network is created; a VPN that comes up later then
    silently shadows it. minibox checks again at every run, and names the route."""
    mb("network", "create", "--subnet", "10.79.5.0/24", "later", check=True)
    try:
        sh("ip route add 10.79.5.0/25 dev uplink0")
        res = mb("run", "--rm", "--network", "later", "busybox", "true")
        assert res.returncode == 125 and "overlaps the host route 10.79.5.0/25 dev uplink0" in res.stderr
    finally:
        sh("ip route del 10.79.5.0/25 dev uplink0", check=False)
        mb("network", "rm", "later")


def test_nothing_remains_after_rm_or_after_exiting_alone(outside):
    cid = web("gone", "8095:80")
    ip = inspect("gone")["NetworkSettings"]["IPAddress"]
    assert PAGE in curl("http://127.0.0.1:8095/").stdout
    assert conntrack_entries(ip)
    mb("rm", "-f", "gone", check=True)
    veth = f"mbx{cid[:12]}"
    assert veth not in links()
    assert not conntrack_entries(ip)
    assert not (ROOT / "ipam/minibox" / ip).exists()
    assert "8095" not in sh("nft list ruleset; iptables-save", check=False).stdout
    # a detached container that exits by itself gives everything back too, with nobody calling rm
    cid = mb("run", "-d", "--name", "brief", "-p", "8096:80", "busybox", "sh", "-c",
             "wget -qO- http://127.0.0.1:1/ 2>/dev/null; sleep 0.5", check=True).stdout.strip()
    ip = inspect("brief")["NetworkSettings"]["IPAddress"]
    wait_for(lambda: f"mbx{cid[:12]}" not in links() and not (ROOT / "ipam/minibox" / ip).exists())
    assert f"mbx{cid[:12]}" not in links()
    assert not (ROOT / "ipam/minibox" / ip).exists()
    assert "8096" not in sh("nft list ruleset; iptables-save", check=False).stdout
    assert not conntrack_entries(ip)
    # ...and its state says so without anyone having asked before
    state = json.loads((ROOT / "containers" / cid / "state.json").read_text())
    assert state["status"] == "exited" and state["released"] is True
    mb("rm", "brief", check=True)


def nft_generation() -> int:
    from minibox.net import nfnetlink

    return nfnetlink.nft_generation()


def test_rm_of_many_gives_everything_back_in_one_pass():
    """#24 item 10: `rm -f A B C` kills them all, then gives back all their ports in one
    firewall transaction and all their flows in one conntrack pass (batched, not one
    container at a time). Docker goes on past a name it cannot remove, says it, and exits
    1; so does minibox, and the others still go."""
    mb("network", "create", "--subnet", "10.77.11.0/24", "many", check=True)
    try:
        made = {n: web(n, f"{port}:80", network=net)
                for n, port, net in (("m1", 8101, "many"), ("m2", 8102, "many"), ("m3", 8103, ""))}
        ips = {n: inspect(n)["NetworkSettings"]["Networks"]["many" if n != "m3" else "minibox"]["IPAddress"]
               for n in made}
        mb("run", "-d", "--name", "m4", "busybox", "sleep", "1000", check=True)
        mb("run", "--name", "m5", "busybox", "true", check=True)  # exited
        for port in (8101, 8102, 8103):
            assert PAGE in curl(f"http://127.0.0.1:{port}/").stdout
        assert all(conntrack_entries(ip) for ip in ips.values())
        res = mb("rm", "m5", "m1", "nothing-here")  # m1 runs: refused without -f
        assert res.returncode == 1 and res.stdout == "m5\n", res
        assert "m1" in res.stderr and "nothing-here" in res.stderr and len(res.stderr.splitlines()) == 2
        # the kernel's ruleset generation goes up with each transaction (iptables-restore's: one per table)
        web("m0", "8100:80", network="many")
        generation = nft_generation()
        mb("rm", "-f", "m0", check=True)
        one = nft_generation() - generation
        generation = nft_generation()
        res = mb("rm", "-f", "m1", "nothing-here", "m2", "m3", "m4")
        assert res.returncode == 1 and res.stdout.split() == ["m1", "m2", "m3", "m4"], res
        assert nft_generation() - generation == one  # three containers' ports: as many transactions as one's
        assert mb("ps", "-aq").stdout == ""
        assert not any(f"mbx{cid[:12]}" in links() for cid in made.values())
        assert not any(conntrack_entries(ip) for ip in ips.values())
        ruleset = sh("nft list ruleset; iptables-save", check=False).stdout
        assert not any(str(port) in ruleset for port in (8101, 8102, 8103))
        assert not any((ROOT / "ipam" / net / ip).exists() for net in ("many", "minibox") for ip in ips.values())
        web("m1", "8101:80", network="many")  # its name and port are free again
        assert PAGE in curl("http://127.0.0.1:8101/").stdout
        explained = mb("rm", "-f", "--explain", "m1", check=True).stderr
        assert "delete element" in explained or "iptables" in explained
    finally:
        mb("rm", "-f", "m0", "m1", "m2", "m3", "m4", "m5")
        mb("network", "rm", "many")


def test_rm_forgets_a_containers_flows_in_a_busy_conntrack_table():
    """With few entries, `rm` finds a container's flows in one dump it decodes itself; in a
    busy table (here 1,500 unrelated entries) it asks the kernel to filter instead
    (net/conntrack.py). Either way its flows go, and nothing else does."""
    from minibox.net import netlink

    tuple_cls = netlink._pyroute2_submodule("netlink.nfnetlink.nfctsocket").NFCTAttrTuple
    ct = netlink.conntrack()
    try:
        for i in range(1500):  # established TCP flows between addresses no container has
            src = f"198.18.{i // 250}.{i % 250 + 1}"
            ct.entry("add", tuple_orig=tuple_cls(saddr=src, daddr="198.19.0.1", proto=6, sport=1024 + i, dport=80),
                     tuple_reply=tuple_cls(saddr="198.19.0.1", daddr=src, proto=6, sport=80, dport=1024 + i),
                     timeout=600, status=0x8 | 0x2)
    finally:
        ct.close()
    web("busy", "8104:80")
    ip = inspect("busy")["NetworkSettings"]["IPAddress"]
    assert PAGE in curl("http://127.0.0.1:8104/").stdout and conntrack_entries(ip)
    mb("rm", "-f", "busy", check=True)
    assert not conntrack_entries(ip)
    assert len(conntrack_entries("198.19.0.1")) == 1500
    sh("conntrack -D -d 198.19.0.1 >/dev/null 2>&1", check=False)


def test_a_reused_port_leads_to_the_new_container_at_once():
    """#24 item 11: a soak lost one request in 400 right after `run -d -p` on a port an
    earlier container had used. The port must lead to the new container when `run -d`
    returns: its DNAT element, its veth and address, its MAC (derived from the address, as
    Docker's, so a neighbour entry left by the last holder of that address is still right),
    and no conntrack entry of the old flows left to take the request elsewhere. The
    address behind the port changes every other round (a sitter holds the first one)."""
    seen = set()
    try:
        for i in range(16):
            if i % 4 == 1:
                client("sitter")
            web("reuse", "8105:80")
            seen.add(inspect("reuse")["NetworkSettings"]["IPAddress"])
            with socket.create_connection(("127.0.0.1", 8105), timeout=5) as conn:  # at once: no retry
                conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                answer = b""
                while chunk := conn.recv(65536):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.") and PAGE.encode() in answer, (i, answer[:200])
            mb("rm", "-f", "reuse", check=True)
            if i % 4 == 2:
                mb("rm", "-f", "sitter", check=True)
    finally:
        mb("rm", "-f", "reuse", "sitter")
    assert len(seen) == 2  # both addresses were behind the port


def test_inspect_network_settings():
    web("ins", "8097:80")
    ns = inspect("ins")["NetworkSettings"]
    assert ns["IPAddress"].startswith("10.222.") and ns["Gateway"] == "10.222.0.1"
    assert ns["MacAddress"] == "02:42:" + ":".join(f"{int(x):02x}" for x in ns["IPAddress"].split("."))
    assert ns["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8097"}]}
    assert list(ns["Networks"]) == ["minibox"]
    assert inspect("ins")["Minibox"]["FirewallBackend"] == BACKEND
    mb("rm", "-f", "ins", check=True)


def test_a_network_made_first_leaves_the_default_its_subnet():
    """The default network is made on first use; a network created before that must not take
    the subnet the default one is documented to have (as docker0 keeps 172.17/16)."""
    mb("network", "rm", "minibox")  # if it exists: it comes back on first use
    mb("network", "create", "early", check=True)
    try:
        early = json.loads(mb("network", "inspect", "early", check=True).stdout)[0]
        assert early["IPAM"]["Config"][0]["Subnet"] != "10.222.0.0/24"
        mb("run", "--rm", "busybox", "true", check=True)
        default = json.loads(mb("network", "inspect", "minibox", check=True).stdout)[0]
        assert default["IPAM"]["Config"][0] == {"Subnet": "10.222.0.0/24", "Gateway": "10.222.0.1"}
    finally:
        mb("network", "rm", "early")


def test_reconcile_restores_rules_another_tool_removed(outside):
    web("rec", "8098:80")
    if BACKEND == "nftables":
        sh("nft delete table inet minibox")
    else:
        sh("iptables -t nat -D PREROUTING $(iptables -t nat -S PREROUTING | grep MINIBOX | head -1 | cut -d' ' -f3-)")
        sh("iptables -t nat -F MINIBOX")
    assert PAGE not in outside.run(f"curl -s -m 3 http://{outside.host_addr}:8098/", check=False).stdout
    mb("network", "reconcile", check=True)
    assert PAGE in outside.run(f"curl -s -m 5 http://{outside.host_addr}:8098/", check=False).stdout
    mb("rm", "-f", "rec", check=True)


def test_host_and_none_networks():
    out = mb("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link", check=True).stdout
    assert [line.split(": ")[1] for line in out.splitlines()] == ["lo"]
    host_links = sorted(links())
    out = mb("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link", check=True).stdout
    assert sorted(line.split(": ")[1].split("@")[0] for line in out.splitlines()) == host_links


def test_addresses_of_containers_lost_in_a_crash_are_reused():
    mb("network", "create", "--subnet", "10.78.1.0/29", "crashy", check=True)
    try:
        d = ROOT / "ipam/crashy"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(2, 7):  # every address taken by a container whose state is gone
            (d / f"10.78.1.{i}").write_text("0" * 64 + "\n")
        mb("run", "-d", "--network", "crashy", "--name", "after", "busybox", "sleep", "1000", check=True)
        assert inspect("after")["NetworkSettings"]["IPAddress"] == "10.78.1.2"
        assert sorted(p.name for p in d.iterdir() if not p.name.startswith(".")) == ["10.78.1.2"]
    finally:
        mb("rm", "-f", "after")
        mb("network", "rm", "crashy")


def test_gc_removes_what_a_crash_left(outside):
    """minibox and its shim killed with -9, its state deleted: the leftovers still name their
    owner, and gc finds and removes them."""
    import signal as sig

    cid = web("crashed", "8085:80")
    doc = inspect("crashed")
    os.kill(doc["Minibox"]["ShimPid"], sig.SIGKILL)  # PDEATHSIG takes PID 1 with it
    assert wait_for(lambda: not os.path.exists(f"/proc/{doc['State']['Pid']}"))
    sh(f"rm -rf {ROOT}/containers/{cid}")  # the state is lost too
    assert any(cid[:12] in r for r in sh("nft list ruleset; iptables-save", check=False).stdout.splitlines())
    res = mb("gc", "--explain", check=True)
    # its DNAT element, its cgroups, its address, name and port files (its veth died with its
    # network namespace): 7 at least, each shown as the command that removed it
    assert int(re.search(r"removed (\d+) leftover", res.stdout).group(1)) >= 7, res.stdout
    assert 'delete element inet minibox hostport-any { tcp . 8085 }' in res.stderr or BACKEND == "iptables"
    assert "/ipam/minibox/" in res.stderr and "/names/crashed" in res.stderr and cid in res.stderr
    assert not any(cid[:12] in r for r in sh("nft list ruleset; iptables-save", check=False).stdout.splitlines())
    assert not (ROOT / "names/crashed").exists() and not (ROOT / "ports/tcp-8085-any").exists()
    assert not [p for p in (ROOT / "ipam/minibox").iterdir() if not p.name.startswith(".")]


def test_gc_removes_the_bridge_and_rules_of_a_network_create_killed_before_its_record():
    """`network create` killed between making the bridge (named after the network's id) and
    saving the record: the bridge and the network's firewall elements stay, and no verb can
    name them. gc removes both, and the subnet can be had again (#24: 17 of 37 killed
    creates leaked a bridge)."""
    mb("network", "create", "--subnet", "10.81.0.0/24", "ghost", check=True)
    bridge = json.loads(mb("network", "inspect", "ghost", check=True).stdout)[0]["Options"]["bridge.name"]
    (ROOT / "networks/ghost.json").unlink()  # the record a killed create never wrote
    listing = "nft list ruleset" if BACKEND == "nftables" else "iptables-save"
    assert bridge in links() and "minibox net ghost" in sh(listing).stdout
    res = mb("gc", "--explain", check=True)
    assert f"ip link del {bridge}" in res.stderr
    assert bridge not in links() and "minibox net ghost" not in sh(listing).stdout
    mb("network", "create", "--subnet", "10.81.0.0/24", "ghost", check=True)  # its subnet is free again
    mb("network", "rm", "ghost", check=True)


def test_a_host_keeps_one_firewall_backend():
    """Networks on both backends at once shared iptables' FORWARD chain, and each backend's
    rewrite of it cut the other's networks off (#24 item 7): like Docker, one backend per
    host. Asking for the other one is refused in one line, and nothing is made; the record
    says which backend a network uses."""
    other = "iptables" if BACKEND == "nftables" else "nftables"
    mb("network", "create", "--subnet", "10.80.0.0/24", "same", check=True)
    try:
        row = next(line for line in mb("network", "ls", check=True).stdout.splitlines() if line.split()[1] == "same")
        assert row.split()[-1] == BACKEND
        res = mb("--firewall-backend", other, "network", "create", "--subnet", "10.80.1.0/24", "alt")
        assert res.returncode == 1 and res.stderr.count("\n") == 1 and "one firewall backend per host" in res.stderr
        assert "alt" not in mb("network", "ls", check=True).stdout
        bad = mb("--firewall-backend", "pf", "network", "ls")
        assert bad.returncode == 125 and 'unknown --firewall-backend "pf"' in bad.stderr
    finally:
        mb("network", "rm", "same")


class UdpEcho:
    """A UDP echo server on the sandbox host, recording every datagram it gets."""

    def __init__(self, addr: str):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((addr, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.got: list[bytes] = []
        self.stop = False
        import threading

        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop:
            try:
                data, peer = self.sock.recvfrom(2048)
            except OSError:
                continue
            self.got.append(data)
            self.sock.sendto(data, peer)

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


def test_containers_cannot_reach_the_hosts_loopback(attack_image):
    """CVE-2020-8558: route_localnet=1 on the bridge (needed for `curl 127.0.0.1:PORT`) would
    let a container with CAP_NET_RAW send a frame to the bridge's MAC addressed to 127.0.0.1
    and reach a service bound only to the host's loopback. The guard drops it."""
    mb("run", "-d", "--name", "raw", attack_image, "sleep", "1000", check=True)
    mac = sh("ip -br link show minibox0").stdout.split()[2]
    gateway = inspect("raw")["NetworkSettings"]["Gateway"]
    loopback, anywhere = UdpEcho("127.0.0.1"), UdpEcho("0.0.0.0")
    try:
        out = mb("exec", "raw", "/attack", "udp-frame", "eth0", mac, "127.0.0.1", str(loopback.port),
                 "to-loopback", check=True).stdout
        assert "refused reply" in out and loopback.got == []
        # positive control: the same raw frame to the host's address on the bridge is answered
        out = mb("exec", "raw", "/attack", "udp-frame", "eth0", mac, gateway, str(anywhere.port),
                 "to-gateway", check=True).stdout
        assert f"ok reply from {gateway}" in out and anywhere.got == [b"to-gateway"]
    finally:
        loopback.close()
        anywhere.close()
    # and the published-port path that route_localnet exists for still works
    web("web", "8080:80")
    assert PAGE in curl("127.0.0.1:8080").stdout
    mb("rm", "-f", "raw", "web", check=True)


def test_rules_heal_after_a_foreign_flush(outside):
    """`nft flush ruleset` (iptables-nft's rules included) takes away every published port;
    doctor says so, and the next run of any container re-asserts them all."""
    web("healed", "8099:80")
    assert PAGE in outside.run(f"curl -s -m 5 http://{outside.host_addr}:8099/", check=False).stdout
    sh("nft flush ruleset")
    assert PAGE not in outside.run(f"curl -s -m 2 http://{outside.host_addr}:8099/", check=False).stdout
    doc = mb("doctor")
    assert doc.returncode == 1 and "minibox's rules are missing for" in doc.stdout and "healed" in doc.stdout
    mb("run", "--rm", "--network", "none", "busybox", "true", check=True)  # no network: changes no rule
    mb("run", "--rm", "busybox", "true", check=True)  # on the bridge: re-asserts everything
    assert PAGE in outside.run(f"curl -s -m 5 http://{outside.host_addr}:8099/", check=False).stdout
    assert PAGE in curl("http://127.0.0.1:8099/").stdout
    assert "minibox's rules are as it left them" in mb("doctor").stdout
    mb("rm", "-f", "healed", check=True)


def test_forward_policy_drop_set_later_cuts_nothing(outside):
    """Docker starting after minibox sets iptables' FORWARD policy to DROP. The nftables
    backend installed its accept path there when the chain existed (policy ACCEPT then),
    and the iptables backend's chains sit there anyway: containers keep working without
    another run."""
    sh("iptables -P FORWARD ACCEPT")  # the filter FORWARD chain exists, as on a host with iptables in use
    try:
        web("early", "8096:80")
        client("early-cli")
        sh("iptables -P FORWARD DROP")  # later, another tool
        assert PAGE in outside.run(f"curl -s -m 5 http://{outside.host_addr}:8096/", check=False).stdout
        got = fetch_in("early-cli", outside.page("late-drop.html"))
        assert got.stdout == "outside says hi\n", got.stderr
    finally:
        sh("iptables -P FORWARD ACCEPT")
        mb("rm", "-f", "early", "early-cli")
