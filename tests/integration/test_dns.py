"""The embedded DNS of user-defined networks (net/dns.py: aardvark-dns), checked with real resolvers.

Docker 20.10's behaviour, which these tests hold minibox to: on a user-defined network a
container resolves the others by name, by --network-alias and by short id, at once after
a `run` or a `rename`; names of another network are not answered; other names go to the
host's resolvers, or to the container's --dns servers; the default network keeps the
host's resolvers. minibox's server is Podman's (aardvark-dns on the gateway), so
resolv.conf names the gateway where Docker's names 127.0.0.11.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT, inspect, mb, wait_for

DNS_DIR = ROOT / "dns"


def lookup(ctr: str, name: str) -> str:
    """The address busybox's nslookup (a real stub resolver, over UDP) gets for `name`, or ""."""
    out = mb("exec", ctr, "nslookup", name).stdout
    answer = out.split("Name:", 1)[1] if "Name:" in out else ""
    return next((x.split()[-1] for x in answer.splitlines() if x.startswith("Address")), "")


def server_pid() -> int:
    try:
        pid = int((DNS_DIR / "aardvark.pid").read_text())
    except (OSError, ValueError):
        return 0
    return pid if Path(f"/proc/{pid}/comm").exists() and Path(f"/proc/{pid}/comm").read_text().strip() == \
        "aardvark-dns" else 0


def test_a_user_network_resolves_names_aliases_and_short_ids_and_nothing_else():
    mb("network", "create", "--subnet", "10.77.5.0/24", "dnsa", check=True)
    mb("network", "create", "--subnet", "10.77.6.0/24", "dnsb", check=True)
    try:
        db = mb("run", "-d", "--name", "db", "--network", "dnsa", "--network-alias", "database", "busybox",
                "sleep", "1000", check=True).stdout.strip()
        mb("run", "-d", "--name", "app", "--network", "dnsa", "busybox", "sleep", "1000", check=True)
        ip = inspect("db")["NetworkSettings"]["IPAddress"]
        resolv = mb("exec", "app", "cat", "/etc/resolv.conf", check=True).stdout
        assert "nameserver 10.77.5.1" in resolv.splitlines()  # the gateway: aardvark-dns listens there
        assert lookup("app", "db") == ip and lookup("app", "database") == ip and lookup("app", db[:12]) == ip
        # a container that joins later is answered at once, both ways
        mb("run", "-d", "--name", "late", "--network", "dnsa", "busybox", "sleep", "1000", check=True)
        assert lookup("app", "late") == inspect("late")["NetworkSettings"]["IPAddress"]
        assert lookup("late", "app") == inspect("app")["NetworkSettings"]["IPAddress"]
        # rename: the new name at once, the old one no more
        mb("rename", "db", "store", check=True)
        assert lookup("app", "store") == ip and lookup("app", "db") == ""
        # another network's containers, and the default network's, do not get these names
        mb("run", "-d", "--name", "other", "--network", "dnsb", "busybox", "sleep", "1000", check=True)
        assert lookup("other", "store") == "" and lookup("other", "app") == ""
        mb("run", "-d", "--name", "plain", "busybox", "sleep", "1000", check=True)
        assert "nameserver 10.77.5.1" not in mb("exec", "plain", "cat", "/etc/resolv.conf", check=True).stdout
        # one server for every network, running while any has containers
        pid = server_pid()
        assert pid and {p.name for p in DNS_DIR.iterdir()} == {"aardvark.pid", "dnsa", "dnsb"}
        mb("rm", "-f", "other", check=True)
        assert {p.name for p in DNS_DIR.iterdir()} == {"aardvark.pid", "dnsa"} and server_pid() == pid
        mb("rm", "-f", "store", "app", "late", check=True)
        assert not any(DNS_DIR.iterdir()) and not Path(f"/proc/{pid}").exists()  # the last one stopped it
    finally:
        mb("rm", "-f", "db", "store", "app", "late", "other", "plain")
        mb("network", "rm", "dnsa", "dnsb")


RESOLVERS = Path(__file__).parent / "resolvers"
# the host's own programs, run in a busybox container: its /usr and libraries, read-only
HOST_LIBS = ("-v", "/usr:/usr:ro", "-v", "/usr/lib:/lib:ro", "-v", "/usr/lib64:/lib64:ro")


def test_the_resolvers_programs_use_find_containers_by_name(tmp_path):
    """busybox's nslookup is one stub resolver; a user's programs bring their own. Each of
    glibc's getaddrinfo (getent), bind's dig, musl's getaddrinfo, Go's own resolver and
    nginx's `resolver` finds a container by name and by alias, and an unknown name fails
    (Debian's packages: bind9-dnsutils, musl-tools, golang-go, nginx)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    subprocess.run(["musl-gcc", "-static", "-O2", "-o", bin_dir / "lookup-musl", RESOLVERS / "lookup.c"], check=True)
    go_env = dict(os.environ, CGO_ENABLED="0", HOME=str(tmp_path), GOCACHE=str(tmp_path / "gocache"),
                  GOPATH=str(tmp_path / "gopath"))
    subprocess.run(["go", "build", "-o", bin_dir / "lookup-go", RESOLVERS / "lookup.go"], check=True, env=go_env)
    mb("network", "create", "--subnet", "10.77.9.0/24", "dnsr", check=True)
    try:
        mb("run", "-d", "--name", "web", "--network", "dnsr", "--network-alias", "www", "busybox", "sh", "-c",
           "echo hello from web > /tmp/index.html; exec httpd -f -p 80 -h /tmp", check=True)
        ip = inspect("web")["NetworkSettings"]["Networks"]["dnsr"]["IPAddress"]
        clients = {
            "glibc getaddrinfo": (*HOST_LIBS, "busybox", "/usr/bin/getent", "hosts"),
            "dig": (*HOST_LIBS, "busybox", "/usr/bin/dig", "+short", "+search"),
            "musl getaddrinfo": ("-v", f"{bin_dir}:/t:ro", "busybox", "/t/lookup-musl"),
            "Go": ("-v", f"{bin_dir}:/t:ro", "busybox", "/t/lookup-go"),
        }
        for client, argv in clients.items():
            for name in ("web", "www"):
                res = mb("run", "--rm", "--network", "dnsr", *argv, name)
                assert res.returncode == 0 and ip in res.stdout.split(), f"{client} for {name}: {res}"
            res = mb("run", "--rm", "--network", "dnsr", *argv, "nothing-here")
            assert ip not in res.stdout and (res.returncode != 0 or res.stdout.strip() == ""), f"{client}: {res}"
        # nginx resolves `web` itself, at each request, with the server resolv.conf names
        mb("run", "-d", "--name", "proxy", "--network", "dnsr", "-p", "127.0.0.1:18081:8080", *HOST_LIBS,
           "-v", f"{RESOLVERS}:/t:ro", "busybox", "sh", "/t/nginx-proxy.sh", check=True)
        page = ""
        for _ in range(50):
            page = subprocess.run(["curl", "-sS", "-m", "2", "127.0.0.1:18081/"], capture_output=True,
                                  text=True).stdout
            if page:
                break
            time.sleep(0.1)
        assert page == "hello from web\n", mb("logs", "proxy").stderr
    finally:
        mb("rm", "-f", "web", "proxy")
        mb("network", "rm", "dnsr")


def test_trace_dns_shows_a_lookup_step_by_step():
    mb("network", "create", "--subnet", "10.77.22.0/24", "dnst", check=True)
    try:
        mb("run", "-d", "--name", "ta", "--network", "dnst", "busybox", "sleep", "1000", check=True)
        mb("run", "-d", "--name", "tb", "--network", "dnst", "busybox", "sleep", "1000", check=True)
        out = mb("trace", "ta", "--dns", "tb", check=True).stdout
        ip = inspect("tb")["NetworkSettings"]["IPAddress"]
        assert "its /etc/resolv.conf names 10.77.22.1" in out and "aardvark-dns (PID" in out
        assert f"answer: tb -> {ip}" in out and "dport=53" in out
        assert "no answer: ** server can't find nosuch" in mb("trace", "ta", "--dns", "nosuch", check=True).stdout
    finally:
        mb("rm", "-f", "ta", "tb")
        mb("network", "rm", "dnst")


def test_explain_shows_the_dns_line_and_the_server():
    mb("network", "create", "--subnet", "10.77.7.0/24", "dnsc", check=True)
    try:
        res = mb("run", "-d", "--explain", "--name", "shown", "--network", "dnsc", "busybox", "sleep", "1000",
                 check=True)
        assert f"{DNS_DIR}/dnsc" in res.stderr and "aardvark-dns --config" in res.stderr
        assert "shown," in res.stderr  # the line with its names
        script = mb("run", "--dry-run", "--name", "dry", "--network", "dnsc", "busybox", "true", check=True).stdout
        assert "aardvark-dns --config" in script and "dry," in script
    finally:
        mb("rm", "-f", "shown")
        mb("network", "rm", "dnsc")


TINY_DNS = r"""
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
while True:
    q, peer = s.recvfrom(512)
    qid, flags, qd = struct.unpack("!HHH", q[:6])
    end = 12
    while q[end]:
        end += q[end] + 1
    question = q[12:end + 5]
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(sys.argv[2])
    s.sendto(struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + question + answer, peer)
"""


def test_other_names_go_to_the_containers_dns_servers(outside):
    """A resolver on the LAN (the outside host) that answers every A question with one
    address: a container on a user network with --dns naming it gets that answer for a
    name no container has, through aardvark-dns's forwarding."""
    script = outside.www.parent / "tinydns.py"
    script.write_text(TINY_DNS)
    server = subprocess.Popen(["nsenter", f"--net=/proc/{outside.pid}/ns/net", sys.executable, str(script),
                               outside.addr, "198.51.100.77"])
    mb("network", "create", "--subnet", "10.77.8.0/24", "dnsd", check=True)
    try:
        mb("run", "-d", "--name", "asker", "--network", "dnsd", "--dns", outside.addr, "busybox", "sleep", "1000",
           check=True)
        assert wait_for(lambda: lookup("asker", "somewhere.example") == "198.51.100.77")
        assert lookup("asker", "asker") == inspect("asker")["NetworkSettings"]["IPAddress"]  # its own still local
    finally:
        server.kill()
        server.wait()
        mb("rm", "-f", "asker")
        mb("network", "rm", "dnsd")


def test_gc_removes_what_a_killed_container_left_and_stops_the_server():
    """kill -9 of a container's shim and PID 1: nobody removes its line. The server serves on
    (no minibox command is its parent); `gc` forgets the line and stops the server."""
    mb("network", "create", "--subnet", "10.77.9.0/24", "dnse", check=True)
    try:
        mb("run", "-d", "--name", "lost", "--network", "dnse", "busybox", "sleep", "1000", check=True)
        pid = server_pid()
        state = inspect("lost")
        for p in (state["Minibox"]["ShimPid"], state["State"]["Pid"]):
            os.kill(p, signal.SIGKILL)
        time.sleep(0.2)
        assert Path(f"/proc/{pid}").exists() and (DNS_DIR / "dnse").exists()
        mb("gc", check=True)
        assert not (DNS_DIR / "dnse").exists() and not Path(f"/proc/{pid}").exists()
    finally:
        mb("rm", "-f", "lost")
        mb("network", "rm", "dnse")


def test_network_connect_and_disconnect_as_dockers():
    """Docker's connect: another interface (eth1) with an address on the other network, the
    default route left with the first, names on both networks' DNS (--alias too), kept
    across stop and start; network rm refused while connected; disconnect takes it all back."""
    mb("network", "create", "--subnet", "10.77.20.0/24", "front", check=True)
    mb("network", "create", "--subnet", "10.77.21.0/24", "back", check=True)
    try:
        mb("run", "-d", "--name", "api", "--network", "front", "busybox", "sleep", "1000", check=True)
        mb("run", "-d", "--name", "db", "--network", "back", "busybox", "httpd", "-f", "-p", "80", check=True)
        mb("network", "connect", "--alias", "apiback", "back", "api", check=True)
        addrs = mb("exec", "api", "ip", "-o", "-4", "addr", check=True).stdout
        assert "eth0    inet 10.77.20.2/24" in addrs and "eth1    inet 10.77.21." in addrs
        assert mb("exec", "api", "ip", "route", check=True).stdout.startswith("default via 10.77.20.1 dev eth0")
        page = mb("exec", "api", "timeout", "5", "wget", "-qO-", "http://db/")
        assert "Hello from minibox" in page.stdout, page.stderr  # db's name, and the way there, through eth1
        back_ip = inspect("api")["NetworkSettings"]["Networks"]["back"]["IPAddress"]
        assert lookup("db", "apiback") == back_ip and lookup("db", "api") == back_ip
        assert inspect("api")["NetworkSettings"]["Networks"]["back"]["Aliases"][0] == "apiback"
        shown = mb("network", "show", "back", check=True).stdout
        assert "dns      aardvark-dns on 10.77.21.1:53" in shown  # the server, drawn with its network
        assert re.search(r"mb1\w+ ══veth══ eth1 10\.77\.21\.\d+/24 .*\[api ", shown), shown
        busy = mb("network", "rm", "back")
        assert busy.returncode == 1 and "in use" in busy.stderr
        twice = mb("network", "connect", "back", "api")
        assert twice.returncode == 1 and "already connected to network back" in twice.stderr
        mb("stop", "-t", "1", "api", check=True)
        mb("start", "api", check=True)
        assert "eth1    inet 10.77.21." in mb("exec", "api", "ip", "-o", "-4", "addr", check=True).stdout
        mb("network", "disconnect", "back", "api", check=True)
        assert "eth1" not in mb("exec", "api", "ip", "-o", "-4", "addr", check=True).stdout
        assert lookup("api", "db") == "" and lookup("db", "apiback") == ""
        first = mb("network", "disconnect", "front", "api")
        assert first.returncode == 125 and "was run on network front" in first.stderr
        # a stopped container is connected at its next start
        mb("stop", "-t", "1", "api", check=True)
        mb("network", "connect", "back", "api", check=True)
        mb("start", "api", check=True)
        assert "eth1    inet 10.77.21." in mb("exec", "api", "ip", "-o", "-4", "addr", check=True).stdout
        mb("run", "-d", "--name", "alone", "--network", "none", "busybox", "sleep", "1000", check=True)
        lonely = mb("network", "connect", "back", "alone")
        assert lonely.returncode == 1 and "--network none" in lonely.stderr
    finally:
        mb("rm", "-f", "api", "db", "alone")
        mb("network", "rm", "front", "back")
    assert not any((ROOT / "ipam").glob("*/10.*"))  # every address given back
