"""The CNI protocol, pure: a request from stdin and CNI_* variables, the result and error documents.

    CNI_COMMAND=ADD CNI_CONTAINERID=ID CNI_NETNS=/run/netns/X CNI_IFNAME=eth0 \\
        minibox-cni < '{"cniVersion": "1.0.0", "name": "mynet", "type": "minibox-cni",
                        "subnet": "10.223.5.0/24",
                        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80}]}}'

The network config's "name" is a minibox network (made on first ADD, with "subnet" if
given); "ipam": {"type": ...} hands addressing to that plugin instead, as the spec says.
Errors are the spec's JSON on stdout, with its codes, and exit 1.
"""

from __future__ import annotations

import hashlib

from minibox.model import PortMapping
from minibox.value import Value

SUPPORTED = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS")

# The spec's error codes (SPEC.md, "Error")
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_LATER = 11
NOT_AVAILABLE = 50


class CniError(Exception):
    def __init__(self, code: int, msg: str, details: str = ""):
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details

    def document(self, version: str) -> dict:
        doc = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            doc["details"] = self.details
        return doc


class Request(Value):
    command: str
    version: str
    network: str  # the config's "name": a minibox network
    container_id: str
    netns: str
    ifname: str
    subnet: str
    ports: tuple[PortMapping, ...]
    ipam_type: str  # "" for minibox's own IPAM
    conf: dict  # the whole network config, for a delegated IPAM plugin and GC's valid attachments

    @property
    def attachment(self) -> str:
        """The attachment's id (64 hex, like a container's): addresses, port files and rule
        tags carry it, so a DEL without state still finds them."""
        return hashlib.sha256(f"{self.container_id}/{self.ifname}".encode()).hexdigest()


def parse(env: dict, conf: object) -> Request:
    command = env.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise CniError(INVALID_ENV, f'CNI_COMMAND "{command}" is not one of {", ".join(COMMANDS)}')
    if command == "VERSION":
        return Request(command, "1.1.0", "", "", "", "", "", (), "", {})
    if not isinstance(conf, dict):
        raise CniError(DECODE_FAILURE, "the network configuration on stdin is not a JSON object")
    version = str(conf.get("cniVersion", ""))
    if version not in SUPPORTED:
        raise CniError(INCOMPATIBLE_VERSION, f'cniVersion "{version}" is not supported: use one of '
                                             f'{", ".join(SUPPORTED)}')
    name = conf.get("name")
    if (not isinstance(name, str) or not name) and command != "DEL":  # DEL finds its attachment by id
        raise CniError(INVALID_CONFIG, 'the network configuration has no "name"')
    if command in ("GC", "STATUS"):
        return Request(command, version, name, "", "", "", "", (), "", conf)
    for var in ("CNI_CONTAINERID", "CNI_IFNAME") + (("CNI_NETNS",) if command != "DEL" else ()):
        if not env.get(var):
            raise CniError(INVALID_ENV, f"{var} is missing: {command} needs it")
    ipam = conf.get("ipam") or {}
    if not isinstance(ipam, dict):
        if command != "DEL":
            raise CniError(INVALID_CONFIG, '"ipam" must be an object')
        ipam = {}
    return Request(command, version, str(name or ""), env["CNI_CONTAINERID"], env.get("CNI_NETNS", ""), env["CNI_IFNAME"],
                   str(conf.get("subnet", "")), port_mappings(conf, strict=command == "ADD"), str(ipam.get("type", "")),
                   conf)


def port_mappings(conf: dict, strict: bool = True) -> tuple[PortMapping, ...]:
    """runtimeConfig.portMappings (the portMappings capability), as minibox's -p. Keys are
    matched without regard to case, as Go's JSON decoding (and so the reference portmap
    plugin) matches them: containerd 1.6 sends HostPort, ContainerPort, Protocol, HostIP
    (go-cni's struct has no JSON tags). A hostPort of 0 publishes nothing (containerd drops
    those too). Not `strict` (DEL, CHECK, which find what to undo by the attachment's id),
    an entry it cannot read is passed over rather than refused."""
    runtime = conf.get("runtimeConfig") or {}
    raw = runtime.get("portMappings") if isinstance(runtime, dict) else None
    out = []
    for i, m in enumerate(raw if isinstance(raw, list) else []):
        m = {str(k).lower(): v for k, v in m.items()} if isinstance(m, dict) else {}
        try:
            host, ctr = int(m["hostport"]), int(m["containerport"])
            proto = str(m.get("protocol") or "tcp").lower()
            if proto not in ("tcp", "udp") or not (0 <= host < 65536 and 0 < ctr < 65536):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            if not strict:
                continue
            raise CniError(INVALID_CONFIG, f"runtimeConfig.portMappings[{i}] needs hostPort and containerPort "
                                           "numbers (1-65535) and protocol tcp or udp") from None
        if host == 0:
            continue
        host_ip = str(m.get("hostip") or "")
        out.append(PortMapping("" if host_ip in ("", "0.0.0.0") else host_ip, host, ctr, proto))
    return tuple(out)


def result(req: Request, bridge: str, veth: str, mac: str, ip: str, prefixlen: int, gateway: str) -> dict:
    """The ADD result (SPEC.md "Success"): interfaces, the address on the container's one,
    its default route."""
    return {
        "cniVersion": req.version,
        "interfaces": [{"name": bridge}, {"name": veth}, {"name": req.ifname, "mac": mac, "sandbox": req.netns}],
        "ips": [{"address": f"{ip}/{prefixlen}", "gateway": gateway, "interface": 2}
                | ({"version": "4"} if req.version.startswith("0.") else {})],
        "routes": [{"dst": "0.0.0.0/0", "gw": gateway}],
        "dns": {},
    }


def valid_attachments(conf: dict) -> set[tuple[str, str]]:
    """GC's cni.dev/valid-attachments: (container id, ifname) pairs to keep."""
    return {(a.get("containerID", ""), a.get("ifname", "")) for a in conf.get("cni.dev/valid-attachments") or ()
            if isinstance(a, dict)}
