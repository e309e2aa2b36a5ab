"""minibox-cni called as a container runtime calls a CNI plugin: config on stdin, CNI_* in the environment."""

import json
import subprocess
import sys

import pytest
from conftest import mb, sh, wait_for

NET = "cninet"


def cni(command: str, conf: dict | str, netns: str = "", cid: str = "ctr1", ifname: str = "eth0",
        extra_args=()) -> tuple[int, dict | None]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command, "CNI_CONTAINERID": cid,
           "CNI_IFNAME": ifname, "CNI_PATH": "/usr/lib/cni"}
    import os

    env.update({k: v for k, v in os.environ.items() if k.startswith("MINIBOX_")})
    if netns:
        env["CNI_NETNS"] = netns
    res = subprocess.run([sys.executable, "-c", "import sys; sys.argv[0] = 'minibox-cni'; "
                          "from minibox.cni import run; run()", *extra_args],
                         input=conf if isinstance(conf, str) else json.dumps(conf), capture_output=True, text=True,
                         env=env, timeout=60)
    return res.returncode, (json.loads(res.stdout) if res.stdout.strip() else None)


def conf(**extra) -> dict:
    return {"cniVersion": "1.0.0", "name": NET, "type": "minibox-cni", "subnet": "10.223.7.0/24", **extra}


class Netns:
    """A network namespace as an engine makes one (`ip netns add`), with a web server in it."""

    def __init__(self, name: str):
        self.name, self.path = name, f"/run/netns/{name}"
        sh(f"ip netns add {name}")
        self.server = None

    def serve(self, text: str) -> None:
        sh(f"mkdir -p /tmp/{self.name}-www && echo {text} > /tmp/{self.name}-www/index.html")
        self.server = subprocess.Popen(["ip", "netns", "exec", self.name, "busybox", "httpd", "-f", "-p", "80",
                                        "-h", f"/tmp/{self.name}-www"])

    def run(self, cmd: str, check: bool = True):
        return sh(f"ip netns exec {self.name} {cmd}", check=check)

    def close(self) -> None:
        if self.server:
            self.server.kill()
            self.server.wait()
        sh(f"ip netns del {self.name}; rm -rf /tmp/{self.name}-www", check=False)


@pytest.fixture
def ns():
    made = []

    def make(name: str) -> Netns:
        made.append(Netns(name))
        return made[-1]

    yield make
    for n in made:
        n.close()
    mb("network", "rm", NET)


def test_version_lists_the_spec_versions():
    code, doc = cni("VERSION", "")
    assert code == 0 and "1.1.0" in doc["supportedVersions"] and "1.0.0" in doc["supportedVersions"]


def test_add_gives_address_route_masquerade_and_published_ports_then_del_removes_all(ns, outside):
    a = ns("cnia")
    a.serve("inside-cni")
    ports = {"portMappings": [{"hostPort": 8093, "containerPort": 80, "protocol": "tcp"}]}
    code, res = cni("ADD", conf(runtimeConfig=ports), a.path)
    assert code == 0, res
    ip = res["ips"][0]["address"].split("/")[0]
    assert res["ips"][0]["address"].startswith("10.223.7.") and res["ips"][0]["gateway"] == "10.223.7.1"
    assert res["interfaces"][2] == {"name": "eth0", "mac": res["interfaces"][2]["mac"], "sandbox": a.path}
    assert f"inet {ip}/24" in a.run("ip -4 addr show eth0").stdout
    assert "default via 10.223.7.1" in a.run("ip route").stdout
    # the four ways in: the container's address, the host's loopback, a LAN machine, another container
    assert wait_for(lambda: sh(f"curl -s -m 2 http://{ip}/", check=False).stdout.strip() == "inside-cni")
    assert sh("curl -s -m 2 http://127.0.0.1:8093/").stdout.strip() == "inside-cni"
    assert outside.run(f"curl -s -m 2 http://{outside.host_addr}:8093/").stdout.strip() == "inside-cni"
    b = ns("cnib")
    code, res_b = cni("ADD", conf(), b.path, cid="ctr2")
    assert code == 0, res_b
    assert b.run(f"curl -s -m 2 http://{outside.host_addr}:8093/").stdout.strip() == "inside-cni"
    # the way out: MASQUERADE, so the LAN machine sees the host's address
    assert a.run(f"curl -s -m 2 {outside.page('from-cni')}").stdout.strip() == "outside says hi"
    assert f"{outside.host_addr}" in outside.http_clients().split("from-cni")[0].splitlines()[-1]
    assert cni("CHECK", conf(runtimeConfig=ports), a.path)[0] == 0
    listed = mb("network", "rm", NET)
    assert listed.returncode != 0 and "via minibox-cni" in listed.stderr  # in use by the engine's containers
    for cid, n in (("ctr1", a), ("ctr2", b)):
        assert cni("DEL", conf(runtimeConfig=ports), n.path, cid=cid) == (0, None)
    assert "eth0" not in a.run("ip -o link", check=False).stdout
    assert sh("curl -s -m 2 http://127.0.0.1:8093/", check=False).returncode != 0
    code, err = cni("CHECK", conf(), a.path)
    assert code == 1 and err["code"] == 3
    assert cni("DEL", conf(), a.path) == (0, None)  # again: nothing to do, still success
    a.close()
    assert cni("DEL", conf(), a.path) == (0, None)  # the namespace gone too


def test_gc_removes_attachments_the_runtime_no_longer_lists(ns):
    a, b = ns("cnigc1"), ns("cnigc2")
    assert cni("ADD", conf(), a.path, cid="keep")[0] == 0
    assert cni("ADD", conf(), b.path, cid="drop")[0] == 0
    code, _ = cni("GC", conf(**{"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}))
    assert code == 0
    assert cni("CHECK", conf(), a.path, cid="keep")[0] == 0
    assert cni("CHECK", conf(), b.path, cid="drop")[1]["code"] == 3
    assert "eth0" not in b.run("ip -o link", check=False).stdout
    assert cni("DEL", conf(), a.path, cid="keep") == (0, None)


def test_ipam_delegated_to_host_local_per_the_spec(ns, tmp_path):
    """"ipam": {"type": "host-local"}: the address comes from the reference plugin (its
    range, its files), the bridge, veth and rules from minibox; DEL gives both back."""
    a = ns("cniipam")
    a.serve("host-local-gave")
    store = tmp_path / "host-local"
    inside = {"type": "host-local", "subnet": "10.223.7.0/24", "rangeStart": "10.223.7.50",
              "rangeEnd": "10.223.7.60", "gateway": "10.223.7.1", "dataDir": str(store)}
    code, res = cni("ADD", conf(ipam=inside), a.path, cid="ipam1")
    assert code == 0, res
    assert res["ips"][0]["address"] == "10.223.7.50/24"
    assert (store / NET / "10.223.7.50").read_text().startswith("ipam1")  # host-local's own record
    assert "inet 10.223.7.50/24" in a.run("ip -4 addr show eth0").stdout
    assert wait_for(lambda: sh("curl -s -m 2 http://10.223.7.50/", check=False).stdout.strip() == "host-local-gave")
    assert cni("DEL", conf(ipam=inside), a.path, cid="ipam1") == (0, None)
    assert not (store / NET / "10.223.7.50").exists()
    assert "eth0" not in a.run("ip -o link", check=False).stdout
    # a range outside the network's subnet would give an address the bridge cannot route
    outside_range = dict(inside, subnet="10.99.7.0/24", rangeStart="10.99.7.5", rangeEnd="10.99.7.9",
                         gateway="10.99.7.1")
    code, err = cni("ADD", conf(ipam=outside_range), a.path, cid="ipam2")
    assert code == 1 and err["code"] == 7 and "gave 10.99.7.5, outside network cninet's subnet 10.223.7.0/24" in \
        err["msg"], err
    assert not (store / NET / "10.99.7.5").exists()  # given back
    assert "eth0" not in a.run("ip -o link", check=False).stdout


@pytest.mark.parametrize("bad, code, words", [
    ({"subnet": "10.223.7.0/33"}, 7, "10.223.7.0/33"),
    ({"cniVersion": "9.9.9"}, 1, '"9.9.9" is not supported'),
    ({"name": ""}, 7, '"name"'),
    ({"runtimeConfig": {"portMappings": [{"hostPort": 70000, "containerPort": 80}]}}, 7, "portMappings[0]"),
])
def test_bad_config_gets_the_spec_error_and_leaves_nothing(ns, bad, code, words):
    a = ns("cnibad")
    got, err = cni("ADD", conf(**bad), a.path)
    assert got == 1 and err["code"] == code and words in err["msg"], err
    assert mb("network", "inspect", NET).returncode != 0  # no network made for it


def test_missing_netns_and_garbage_stdin():
    code, err = cni("ADD", conf())
    assert code == 1 and err["code"] == 4 and "CNI_NETNS" in err["msg"]
    code, err = cni("ADD", "{not json", "/run/netns/none")
    assert code == 1 and err["code"] == 6


def test_explain_shows_the_steps_and_changes_nothing(ns):
    a = ns("cniexp")
    res = subprocess.run(
        [sys.executable, "-c", "import sys; sys.argv[0] = 'minibox-cni'; from minibox.cni import run; run()",
         "--explain"], input=json.dumps(conf()), capture_output=True, text=True,
        env={**__import__("os").environ, "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "x", "CNI_IFNAME": "eth0",
             "CNI_NETNS": a.path})
    assert res.returncode == 0
    assert f"netns {a.path}" in res.stderr and "ip route add default via 10.223.7.1" in res.stderr
    assert mb("network", "inspect", NET).returncode != 0
