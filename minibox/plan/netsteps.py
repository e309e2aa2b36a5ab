"""Network steps: bridges, veths, addresses, routes, sysctls, firewall transactions, conntrack (see plan.steps)."""

from __future__ import annotations

import shlex

from minibox.value import Value


def q(word: str) -> str:
    return shlex.quote(str(word))


def ns_path(pid: str | int) -> str:
    """A network namespace as a file: a container PID's, or a path as it is (CNI_NETNS)."""
    return str(pid) if str(pid).startswith("/") else f"/proc/{pid}/ns/net"


def in_netns(pid: str | int) -> str:
    """Prefix that runs a command inside a container's network namespace."""
    return f"nsenter --net={ns_path(pid)} " if pid else ""


# --- network -------------------------------------------------------------------------------


class BridgeAdd(Value):
    name: str
    mac: str
    why: str = ""

    def command(self) -> str:
        return f"ip link add {self.name} address {self.mac} type bridge"


class AddrAdd(Value):
    dev: str
    cidr: str
    netns: str = ""  # container PID (or "$CTR_PID" in a script); "" = the host
    why: str = ""

    def command(self) -> str:
        nodad = " nodad" if ":" in self.cidr else ""
        return f"{in_netns(self.netns)}ip addr add {self.cidr} dev {self.dev}{nodad}"


class LinkUp(Value):
    dev: str
    netns: str = ""
    why: str = ""

    def command(self) -> str:
        return f"{in_netns(self.netns)}ip link set {self.dev} up"


class VethAdd(Value):
    host: str
    peer: str
    netns: str
    mac: str
    why: str = ""

    def command(self) -> str:
        return (f"ip link add {self.host} type veth peer name {self.peer} "
                f"address {self.mac} netns {ns_path(self.netns)}")


class SetMaster(Value):
    dev: str
    master: str
    why: str = ""

    def command(self) -> str:
        return f"ip link set {self.dev} master {self.master}"


class Hairpin(Value):
    dev: str
    why: str = ""

    def command(self) -> str:
        return f"ip link set {self.dev} type bridge_slave hairpin on"


class RouteAdd(Value):
    dst: str
    gateway: str
    netns: str = ""
    why: str = ""

    def command(self) -> str:
        six = "-6 " if ":" in self.gateway else ""
        return f"{in_netns(self.netns)}ip {six}route add {self.dst} via {self.gateway}"


class LinkDel(Value):
    dev: str
    why: str = ""

    def command(self) -> str:
        return f"ip link del {self.dev}"


class Sysctl(Value):
    key: str  # dotted, e.g. net.ipv4.ip_forward
    value: str
    why: str = ""

    def command(self) -> str:
        return f"sysctl -w {self.key}={self.value}"

    @property
    def proc_path(self) -> str:
        return "/proc/sys/" + self.key.replace(".", "/")


class Firewall(Value):
    """A batch of firewall commands in the syntax of the backend that applies them."""

    backend: str  # "nftables" | "iptables" | "ip6tables" (the iptables backend's IPv6 half)
    lines: tuple[str, ...]
    why: str = ""

    def command(self) -> str:
        tool = "nft -f -" if self.backend == "nftables" else f"{self.backend}-restore --noflush"
        return f"{tool} <<'EOF'\n" + "\n".join(self.lines) + "\nEOF"


class InPlace(Value):
    """What a step relies on that an earlier command made (a network's firewall rules):
    shown, so one command's lesson is the whole path, and never applied."""

    backend: str
    lines: tuple[str, ...]
    why: str = ""

    def command(self) -> str:
        return "# already in place (made with the network; minibox checks it is still there):\n" + \
            "\n".join("#   " + line for line in self.lines)


class DnsRecord(Value):
    """A container's names on a user network's DNS server (aardvark-dns, one for all such
    networks): a line in the network's file, then the server told (SIGHUP) or started."""

    directory: str  # aardvark-dns's --config directory
    network: str
    gateway: str  # where the server answers, the bridge's address: the containers' nameserver
    cid: str
    ip: str
    names: tuple[str, ...]
    servers: tuple[str, ...] = ()  # --dns: where it forwards this container's other questions
    why: str = ""
    ip6: str = ""  # on an --ipv6 network: answered for AAAA

    def line(self) -> str:
        """aardvark-dns's entry: ID IPV4S IPV6S NAMES[ SERVERS] (its config.md)."""
        return " ".join([self.cid, self.ip, self.ip6, ",".join(self.names)] + ([",".join(self.servers)]
                                                                               if self.servers else []))

    def command(self) -> str:
        f = q(f"{self.directory}/{self.network}")
        pid = q(f"{self.directory}/aardvark.pid")
        return (f"[ -s {f} ] || echo {q(self.gateway)} > {f}; echo {q(self.line())} >> {f}; "
                f"kill -HUP \"$(cat {pid} 2>/dev/null)\" 2>/dev/null || "
                f"aardvark-dns --config {q(self.directory)} -p 53 run")


class ConntrackFlush(Value):
    proto: str
    port: int = 0
    addr: str = ""
    why: str = ""
    ipv6: bool = False  # a port's IPv6 flows (an address names its family itself)

    def command(self) -> str:
        # `|| true`: conntrack exits 1 when there was nothing to delete, which is fine.
        # An address: the flows it started, and those it answered (DNAT'd to it included).
        f = "-f ipv6 " if self.ipv6 or ":" in self.addr else ""
        if self.addr:
            return f"conntrack -D {f}--orig-src {self.addr} || true; conntrack -D {f}--reply-src {self.addr} || true"
        return f"conntrack -D {f}-p {self.proto} --orig-port-dst {self.port} || true"


class UserlandProxy(Value):
    """A published port on IPv6 loopback: the kernel has no route_localnet for ::1, so no
    DNAT reaches the container from [::1]; a process must carry the bytes, as Docker's
    docker-proxy does (the binary minibox runs, from Debian's docker.io). It holds the host
    port, so it is also what keeps other servers off it."""

    proto: str
    host_ip: str  # "::" or "::1"
    host_port: int
    container_ip: str
    container_port: int
    why: str = ""

    def argv(self) -> list[str]:
        return ["docker-proxy", "-proto", self.proto, "-host-ip", self.host_ip, "-host-port", str(self.host_port),
                "-container-ip", self.container_ip, "-container-port", str(self.container_port)]

    def command(self) -> str:
        return " ".join(self.argv()) + " &"
