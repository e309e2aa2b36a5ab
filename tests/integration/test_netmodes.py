"""Docker's other network modes and the /etc flags: --network container:NAME and host, --add-host, --dns*, --domainname, --expose.

What Docker 20.10 does, and these tests hold minibox to: a container on `container:NAME`
shares NAME's network namespace (localhost reaches NAME's servers), its hostname, /etc/hosts
and resolv.conf, and publishes nothing of its own; `--network host` takes the host's
hostname and /etc/hosts; --add-host lines come before the container's own; --dns,
--dns-search and --dns-option replace the host's lines in resolv.conf.
"""

from __future__ import annotations

import socket

from conftest import inspect, links, mb, wait_for


def test_container_mode_shares_the_network_names_and_files_of_a_running_one():
    web = mb("run", "-d", "--name", "web", "busybox", "httpd", "-f", "-p", "80", check=True).stdout.strip()
    try:
        before = links()
        ip = inspect("web")["NetworkSettings"]["IPAddress"]
        # localhost is web's own: its server answers there
        page = mb("run", "--rm", "--network", "container:web", "busybox", "wget", "-qO-", "127.0.0.1:80/")
        assert page.returncode == 0 and "Hello from minibox" in page.stdout  # web's httpd answered
        out = mb("run", "--rm", "--network", "container:web", "busybox", "sh", "-c",
                 "hostname; ip -o -4 addr show eth0; cat /etc/hosts", check=True).stdout
        assert out.splitlines()[0] == web[:12]  # web's hostname, as Docker
        assert f"inet {ip}/" in out and f"{ip}\t{web[:12]}" in out
        mb("run", "-d", "--name", "side", "--network", "container:web", "busybox", "sleep", "1000", check=True)
        assert inspect("side")["HostConfig"]["NetworkMode"] == f"container:{web}"  # by full id
        assert inspect("side")["NetworkSettings"]["IPAddress"] == ""  # no endpoint of its own
        assert f"inet {ip}/" in mb("exec", "side", "ip", "-o", "-4", "addr", check=True).stdout
        assert links() == before  # no veth of its own
        explained = mb("run", "--rm", "--explain", "--network", "container:web", "busybox", "true", check=True)
        assert f"nsenter --net=/proc/{inspect('web')['State']['Pid']}/ns/net" in explained.stderr
        script = mb("run", "--dry-run", "--network", "container:web", "busybox", "true", check=True).stdout
        assert f"nsenter --net=/proc/{inspect('web')['State']['Pid']}/ns/net unshare " in script
        mb("rm", "-f", "side", check=True)
    finally:
        mb("rm", "-f", "web", "side")
    assert mb("ps", "-aq").stdout == ""


def test_container_mode_refuses_what_docker_refuses_and_makes_nothing():
    mb("create", "--name", "idle", "busybox", "true", check=True)
    mb("run", "-d", "--name", "up", "busybox", "sleep", "1000", check=True)
    try:
        before = links()
        for args, message in (
                (("--network", "container:ghost"), 'no such container: "ghost"'),
                (("--network", "container:idle"), "cannot join the network of container idle: it is created"),
                (("--network", "container:"), 'invalid --network "container:"'),
                (("--network", "container:up", "-p", "8080:80"), "conflicting options: port publishing"),
                (("--network", "container:up", "-P"), "conflicting options: -P"),
                (("--network", "container:up", "--hostname", "h"), "conflicting options: --hostname"),
                (("--network", "container:up", "--dns", "198.51.100.53"), "conflicting options: --add-host")):
            res = mb("run", "--rm", *args, "busybox", "true")
            assert (res.returncode, res.stderr.count("\n")) == (125, 1) and message in res.stderr, (args, res.stderr)
        assert links() == before
        assert sorted(mb("ps", "-a", "--format", "{{.Names}}").stdout.split()) == ["idle", "up"]
    finally:
        mb("rm", "-f", "idle", "up")


def test_host_mode_takes_the_hosts_hostname_and_hosts_file():
    out = mb("run", "--rm", "--network", "host", "busybox", "sh", "-c", "hostname; cat /etc/hosts",
             check=True).stdout
    assert out.splitlines()[0] == socket.gethostname()
    with open("/etc/hosts") as f:
        assert f.read().strip() in out


def test_add_host_dns_flags_and_domainname_write_the_files_docker_writes():
    mb("run", "--rm", "busybox", "true", check=True)  # the default network exists: host-gateway names its gateway
    gateway = inspect_network_gateway()
    out = mb("run", "--rm", "--name", "named", "--add-host", "db:198.51.100.7", "--add-host", "gw:host-gateway",
             "--dns", "198.51.100.53", "--dns-search", "example.test", "--dns-option", "ndots:2",
             "--domainname", "corp.example", "busybox", "sh", "-c",
             "cat /etc/hosts; echo ==; cat /etc/resolv.conf; echo ==; cat /proc/sys/kernel/domainname",
             check=True).stdout
    hosts, resolv, domain = out.split("==\n")
    lines = hosts.splitlines()
    assert "198.51.100.7\tdb" in lines and f"{gateway}\tgw" in lines
    assert lines.index("198.51.100.7\tdb") < len(lines) - 1  # before the container's own line, as Docker's
    assert [x for x in resolv.splitlines() if not x.startswith("#")] == \
        ["nameserver 198.51.100.53", "search example.test", "options ndots:2"]
    assert domain.strip() == "corp.example"
    for args, message in ((("--add-host", "nocolon"), 'invalid --add-host "nocolon"'),
                          (("--add-host", "db:999.1.1.1"), '"999.1.1.1" is not an IP address'),
                          (("--dns", "resolver"), 'invalid --dns "resolver"'),
                          (("--dns-search", "bad domain"), 'invalid --dns-search "bad domain"'),
                          (("--domainname", "a_b"), 'invalid domainname "a_b"'),
                          (("--expose", "80-70"), 'invalid --expose "80-70"')):
        res = mb("run", "--rm", *args, "busybox", "true")
        assert (res.returncode, res.stderr.count("\n")) == (125, 1) and message in res.stderr, (args, res.stderr)


def inspect_network_gateway() -> str:
    import json

    return json.loads(mb("network", "inspect", "minibox", check=True).stdout)[0]["IPAM"]["Config"][0]["Gateway"]


def test_expose_ranges_are_published_by_publish_all():
    mb("run", "-d", "--name", "exp", "--expose", "9000-9001", "--expose", "53/udp", "-P", "busybox", "sleep", "1000",
       check=True)
    try:
        ports = mb("port", "exp", check=True).stdout.splitlines()
        assert sorted(x.split(" -> ")[0] for x in ports) == ["53/udp", "9000/tcp", "9001/tcp"]
        assert all(int(x.rsplit(":", 1)[1]) > 1024 for x in ports)  # each on an ephemeral host port
    finally:
        mb("rm", "-f", "exp")
    assert wait_for(lambda: mb("ps", "-aq").stdout == "")


def test_networks_can_be_scripted_as_dockers():
    mb("network", "create", "--subnet", "10.77.11.0/24", "scra", check=True)
    mb("network", "create", "--subnet", "10.77.12.0/24", "scrb", check=True)
    mb("network", "create", "--subnet", "10.77.13.0/24", "scrc", check=True)
    try:
        ids = {n: inspect_network(n)["Id"][:12] for n in ("scra", "scrb", "scrc")}
        assert set(mb("network", "ls", "-q", check=True).stdout.split()) >= set(ids.values())
        assert mb("network", "ls", "--filter", "name=scr", "--format", "{{.Name}} {{.Subnet}}", check=True).stdout \
            == "scra 10.77.11.0/24\nscrb 10.77.12.0/24\nscrc 10.77.13.0/24\n"
        assert mb("network", "ls", "-q", "--filter", "name=scrb", check=True).stdout == ids["scrb"] + "\n"
        assert mb("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "scra",
                  check=True).stdout == "10.77.11.0/24\n"
        bad = mb("network", "ls", "--filter", "colour=red")
        assert bad.returncode == 125 and 'invalid filter "colour=red"' in bad.stderr
        mb("run", "-d", "--name", "onscra", "--network", "scra", "--network-alias", "svc", "busybox", "sleep", "1000",
           check=True)
        cid = inspect("onscra")["Id"]
        assert mb("inspect", "-f", "{{.NetworkSettings.Networks.scra.IPAddress}}", "onscra", check=True).stdout \
            == "10.77.11.2\n"
        assert mb("inspect", "-f", "{{json .NetworkSettings.Networks.scra.Aliases}}", "onscra",
                  check=True).stdout == f'["svc","{cid[:12]}"]\n'
        mb("create", "--name", "idle", "--network", "scrb", "busybox", "true", check=True)
        # prune: only networks no container is on, running or not; never the default one
        assert mb("network", "prune", "-f", check=True).stdout == "Deleted Networks:\nscrc\n"
        assert mb("network", "ls", "-q", "--filter", "name=scr", check=True).stdout.split() == \
            [ids["scra"], ids["scrb"]]
    finally:
        mb("rm", "-f", "onscra", "idle")
        mb("network", "rm", "scra", "scrb", "scrc")


def inspect_network(name: str) -> dict:
    import json

    return json.loads(mb("network", "inspect", name, check=True).stdout)[0]
