"""IPv6: `network create --ipv6` gives dual-stack containers, egress, published ports and DNS over IPv6.

Runs once per firewall backend (scripts/test sets MINIBOX_FIREWALL_BACKEND): the nftables
one writes the `inet minibox` table's IPv6 sets and maps, the iptables one ip6tables'
MINIBOX chains. Docker 20.10 was the model (`docker network create --ipv6 --subnet ...`):
its containers get an address of the subnet, a default route via the bridge's first
address, and `-p 8080:80` answers on the host's IPv6 addresses too.
"""

from __future__ import annotations

import json
import os

from conftest import ctr_links, inspect, mb, sh

BACKEND = os.environ.get("MINIBOX_FIREWALL_BACKEND", "nftables")
SUBNET6 = "fd42:10:20::/64"  # unique local; the sandbox host routes nothing else there


def _nc(ctr: str, addr: str, port: int = 80) -> str:
    """The status line of a GET from inside `ctr` (busybox nc: its wget -T segfaults)."""
    return mb("exec", ctr, "sh", "-c", f'printf "GET / HTTP/1.0\\r\\n\\r\\n" | timeout 5 nc {addr} {port} | head -1'
              ).stdout.strip()


def _web(name: str, *args: str) -> None:
    mb("run", "-d", "--name", name, "--network", "six", *args, "busybox", "httpd", "-f", "-p", "80", check=True)


def test_dual_stack_containers_talk_over_ipv6_and_resolve_each_other():
    mb("network", "create", "--ipv6", "--subnet", SUBNET6, "six", check=True)
    try:
        _web("a")
        _web("b")
        nets = inspect("b")["NetworkSettings"]["Networks"]["six"]
        assert (nets["GlobalIPv6Address"], nets["GlobalIPv6PrefixLen"], nets["IPv6Gateway"]) == \
            ("fd42:10:20::3", 64, "fd42:10:20::1")
        assert nets["IPAddress"].startswith("10.222.")  # dual stack: IPv4 as before
        route = mb("exec", "a", "ip", "-6", "route", check=True).stdout
        assert "default via fd42:10:20::1 dev eth0" in route
        assert "HTTP/1.1 200 OK" in _nc("a", "fd42:10:20::3")
        hosts = mb("exec", "b", "cat", "/etc/hosts", check=True).stdout
        assert f"fd42:10:20::3\t{inspect('b')['Id'][:12]}" in hosts  # its own name, on both families
        answer = mb("exec", "a", "nslookup", "-type=aaaa", "b", check=True).stdout  # the network's DNS
        assert "fd42:10:20::3" in answer
        doc = json.loads(mb("network", "inspect", "six", check=True).stdout)[0]
        assert doc["EnableIPv6"] is True and [c["Subnet"] for c in doc["IPAM"]["Config"]][1] == SUBNET6
        assert mb("network", "ls", "--filter", "name=six", "--format", "{{.IPv6}}", check=True).stdout.strip() == "true"
        # `network show` draws the IPv6 addresses too, in text and in the SVG
        shown = mb("network", "show", "six", check=True).stdout
        assert "ipv6     fd42:10:20::1/64" in shown and "ipv6 fd42:10:20::3/64" in shown
        assert "fd42:10:20::2/64" in mb("network", "show", "six", "--format", "svg", check=True).stdout
        # the bridge holds the gateway, without duplicate address detection's delay
        bridge = doc["Options"]["bridge.name"]
        assert "fd42:10:20::1/64" in sh(f"ip -6 addr show dev {bridge}").stdout
        # --ip6 asks for an address, as --ip does
        mb("run", "-d", "--name", "c", "--network", "six", "--ip6", "fd42:10:20::99", "busybox", "sleep", "60",
           check=True)
        assert inspect("c")["NetworkSettings"]["Networks"]["six"]["GlobalIPv6Address"] == "fd42:10:20::99"
        # `network connect` to an --ipv6 network: eth1 gets both families' addresses, the
        # default routes stay with the first network
        mb("run", "-d", "--name", "d", "busybox", "sleep", "60", check=True)
        mb("network", "connect", "six", "d", check=True)
        six = inspect("d")["NetworkSettings"]["Networks"]["six"]
        assert six["GlobalIPv6Address"].startswith("fd42:10:20::")
        assert six["GlobalIPv6Address"] in mb("exec", "d", "ip", "-6", "addr", "show", "eth1", check=True).stdout
        assert "HTTP/1.1 200 OK" in _nc("d", "fd42:10:20::3")
        mb("network", "disconnect", "six", "d", check=True)
        assert six["GlobalIPv6Address"] not in os.listdir(f"{os.environ['MINIBOX_ROOT']}/ipam/six")
    finally:
        mb("rm", "-f", "a", "b", "c", "d")
        mb("network", "rm", "six")
    assert not os.path.exists(f"{os.environ['MINIBOX_ROOT']}/ipam/six")  # both families' addresses given back


def test_ipv6_egress_and_published_ports_from_the_lan_and_the_host(outside):
    mb("network", "create", "--ipv6", "--subnet", SUBNET6, "six", check=True)
    try:
        _web("web", "-p", "8080:80", "-p", "[::]:8081:80", "-p", "127.0.0.1:8082:80")
        ports = inspect("web")["NetworkSettings"]["Ports"]["80/tcp"]
        assert {"HostIp": "::", "HostPort": "8080"} in ports  # -p 8080:80 is published on IPv6 too
        # ...and held on both, as Docker holds it: [::] by the userland proxy that answers on ::1
        held = sh("ss -Hltnp 'sport = :8080'").stdout
        assert "0.0.0.0:8080" in held and "[::]:8080" in held and "docker-proxy" in held, held
        import errno
        import socket

        with socket.socket() as v4:
            try:
                v4.bind(("0.0.0.0", 8080))
                raise AssertionError("0.0.0.0:8080 was free while the container publishes it")
            except OSError as e:
                assert e.errno == errno.EADDRINUSE
        with socket.socket(socket.AF_INET6) as taken:  # a host service on [::]:8093 only
            taken.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            taken.bind(("::", 8093))
            taken.listen(1)
            res = mb("run", "-d", "--network", "six", "-p", "8093:80", "busybox", "true")
            assert res.returncode == 125 and "8093" in res.stderr and "already in use" in res.stderr
        host6 = f"[{outside.host_addr6}]"
        # a machine on the LAN, and a process on the host, reach it over IPv6 and over IPv4
        for where in (outside.run, lambda c, check: sh(c, check=check)):
            assert "200 OK" in where(f"curl -s -m 5 -g -i http://{host6}:8080/", check=False).stdout
            assert "200 OK" in where(f"curl -s -m 5 -g -i http://{host6}:8081/", check=False).stdout
            assert "200 OK" in where(f"curl -s -m 5 -i http://{outside.host_addr}:8080/", check=False).stdout
        # [::] is IPv6 alone, 127.0.0.1 IPv4 alone
        assert outside.run(f"curl -s -m 3 http://{outside.host_addr}:8081/", check=False).returncode != 0
        assert sh(f"curl -s -m 3 -g http://{host6}:8082/", check=False).returncode != 0
        # trace follows an IPv6 probe too: the DNAT to the container's IPv6 address
        traced = mb("trace", "web", "--port", "8080", "--from", "host", "--to", host6, check=True).stdout
        assert "200 OK" in traced and "dnat" in traced and "-> fd42:10:20::2:80" in traced, traced
        # ...and from a machine on the LAN over IPv6: trace's own outside host, on a ULA /64
        traced = mb("trace", "web", "--port", "8080", "--from", "outside", "-6", check=True).stdout
        assert "200 OK" in traced and "dnat" in traced and "-> fd42:10:20::2:80" in traced, traced
        assert "iif mbxt" in traced and "probe: outside -> fd" in traced
        # egress: the LAN sees the host's IPv6 address, not the container's (MASQUERADE)
        mb("run", "-d", "--name", "cli", "--network", "six", "busybox", "sleep", "60", check=True)
        assert "200 OK" in _nc("cli", outside.addr6, 8000)
        clients = outside.http_clients()
        assert outside.host_addr6 in clients and "fd42:10:20:" not in clients
        rules = sh("nft list table inet minibox" if BACKEND == "nftables" else "ip6tables-save").stdout
        assert "fd42:10:20::2" in rules and "minibox ctr" in rules
        # self-healing: another tool drops minibox's IPv6 rules; the next run puts them back
        # (the userland proxies on [::] answer meanwhile, as Docker's do: the rules are what is checked)
        listing = "nft list ruleset" if BACKEND == "nftables" else "ip6tables-save -t nat"
        sh("nft delete table inet minibox" if BACKEND == "nftables" else "ip6tables -t nat -F MINIBOX")
        assert "fd42:10:20::2" not in sh(listing).stdout
        mb("run", "-d", "--name", "heal", "--network", "six", "busybox", "sleep", "60", check=True)
        assert "fd42:10:20::2" in sh(listing).stdout
        assert "200 OK" in outside.run(f"curl -s -m 5 -g -i http://{host6}:8080/", check=False).stdout
    finally:
        mb("rm", "-f", "web", "cli", "heal")
        mb("network", "rm", "six")
    if BACKEND == "iptables":  # the last --ipv6 network took minibox's ip6tables chains with it
        assert "MINIBOX" not in sh("ip6tables-save").stdout


def test_ipv6_loopback_is_answered_by_a_userland_proxy_named_after_its_container():
    """Docker answers [::1]:PORT through docker-proxy (the kernel has no route_localnet for
    IPv6, so no DNAT takes ::1 to a container); minibox runs the same binary, found again by
    its container's directory in its argv[0] by stop, rm and gc."""
    mb("network", "create", "--ipv6", "--subnet", SUBNET6, "six", check=True)
    proxies = lambda: sh("ps -eo args", check=False).stdout.count("minibox-proxy:")  # noqa: E731
    try:
        _web("web", "-p", "8086:80", "-p", "[::1]:8087:80")
        for url in ("http://[::1]:8086/", "http://[::1]:8087/", "http://127.0.0.1:8086/", "http://localhost:8086/"):
            assert "200 OK" in sh(f"curl -s -m 5 -g -i {url}", check=False).stdout, url
        assert sh("curl -s -m 3 http://127.0.0.1:8087/", check=False).returncode != 0  # [::1] alone
        assert proxies() == 2
        shown = mb("run", "--dry-run", "--network", "six", "-p", "8088:80", "busybox", "true", check=True).stdout
        assert "docker-proxy -proto tcp -host-ip :: -host-port 8088 -container-ip fd42:10:20::" in shown
        taken = mb("run", "-d", "--network", "six", "-p", "[::1]:8087:80", "busybox", "true")
        assert taken.returncode == 125 and "8087" in taken.stderr and taken.stderr.count("\n") == 1
        mb("stop", "-t", "1", "web", check=True)
        assert proxies() == 0  # its ports given back with the rest
        mb("start", "web", check=True)
        assert "200 OK" in sh("curl -s -m 5 -g -i http://[::1]:8086/", check=False).stdout
        # a container that died with its supervisor, unnoticed: gc ends its proxies
        sh(f"kill -9 {inspect('web')['State']['Pid']} $(pgrep -f 'minibox-shim.*{inspect('web')['Id']}')",
           check=False)
        mb("gc", check=True)
        assert proxies() == 0
        mb("start", "web", check=True)
        assert proxies() == 2
        mb("rm", "-f", "web", check=True)
        assert proxies() == 0 and "8086" not in sh("ss -Hltn").stdout
    finally:
        mb("rm", "-f", "web")
        mb("network", "rm", "six")


def test_ip6tables_forward_policy_drop_cuts_nothing(outside):
    """Docker with ip6tables enabled sets ip6tables' FORWARD policy to DROP, as iptables'.
    The nftables backend accepts minibox's IPv6 traffic there too (an nft accept cannot
    overrule that drop), and takes its chain away with the last --ipv6 network; the
    iptables backend's own ip6tables chains sit there anyway."""
    sh("ip6tables -P FORWARD DROP")
    try:
        mb("network", "create", "--ipv6", "--subnet", SUBNET6, "six", check=True)
        _web("web", "-p", "8085:80")
        mb("run", "-d", "--name", "cli", "--network", "six", "busybox", "sleep", "60", check=True)
        host6 = f"[{outside.host_addr6}]"
        assert "200 OK" in outside.run(f"curl -s -m 5 -g -i http://{host6}:8085/", check=False).stdout
        assert "200 OK" in _nc("cli", outside.addr6, 8000)  # egress over IPv6
        if BACKEND == "nftables":
            assert "-A MINIBOX-FORWARD -o " in sh("ip6tables-save -t filter").stdout
    finally:
        mb("rm", "-f", "web", "cli")
        mb("network", "rm", "six")
        sh("ip6tables -P FORWARD ACCEPT")
    assert "MINIBOX" not in sh("ip6tables-save").stdout  # the last --ipv6 network took the accept path


def test_ipv6_bad_input_is_one_line_and_changes_nothing():
    before = ctr_links()
    for args, code, words in [
        (["network", "create", "--subnet", SUBNET6, "x6"], 125, "add --ipv6"),
        (["network", "create", "--ipv6", "--subnet", "fd42:10:20::1/64", "x6"], 125, "host bits"),
        (["network", "create", "--ipv6", "--subnet", "fe80::/64", "x6"], 125, "link-local"),
        (["network", "create", "--ipv6", "--subnet", "fd42::/32", "x6"], 125, "/48 and /120"),
        (["run", "--rm", "-p", "[::1]:8080:80", "busybox", "true"], 125, "[::1]"),
        (["run", "--rm", "-p", "[fd42::1]:8080:80", "busybox", "true"], 125, "no IPv6 subnet"),
        (["run", "--rm", "--ip6", "fd42:10:20::5", "busybox", "true"], 125, "--ipv6"),
    ]:
        res = mb(*args)
        assert res.returncode == code and words in res.stderr and res.stderr.count("\n") == 1, (args, res.stderr)
    mb("network", "create", "--ipv6", "--subnet", SUBNET6, "six", check=True)
    try:
        res = mb("network", "create", "--ipv6", "--subnet", "fd42:10:20::/80", "x6")
        assert res.returncode == 1 and "overlaps network six" in res.stderr
        res = mb("run", "--rm", "--network", "six", "--ip6", "fd42:99::5", "busybox", "true")
        assert res.returncode == 125 and "--ip6 fd42:99::5 is not a usable address" in res.stderr
    finally:
        mb("network", "rm", "six")
    assert "x6" not in mb("network", "ls", check=True).stdout
    assert ctr_links() == before
