"""Validation of what a user types for a container: names, -e, -w, --hostname, and the env and /etc files that follow.

Pure functions: each returns the cleaned value or raises InvalidSpec with one line naming
the bad value and what would be valid.
"""

from __future__ import annotations

import os
import ipaddress
import re

from minibox.config import DEFAULT_PATH
from minibox.errors import InvalidSpec

# Docker's container-name rule.
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
HOSTNAME_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$")
ENV_KEY_RE = re.compile(r"^[^=\s\0]+$")

_ADJECTIVES = ("brave", "calm", "clever", "eager", "fervent", "gallant", "happy", "jolly", "keen",
               "lucid", "modest", "nifty", "quirky", "serene", "sharp", "tender", "vibrant", "zealous")
_NAMES = ("babbage", "curie", "dijkstra", "euler", "feynman", "hopper", "kay", "knuth", "lamport",
          "lovelace", "noether", "pike", "ritchie", "shannon", "thompson", "torvalds", "turing", "wozniak")


def validate_name(name: str) -> str:
    if not NAME_RE.match(name) or len(name) > 128:
        raise InvalidSpec(f'invalid container name "{name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
    if re.fullmatch(r"[0-9a-f]{64}", name):
        raise InvalidSpec(f'invalid container name "{name}": it would be mistaken for a container id')
    return name


def generate_name(taken, rand=lambda n: int.from_bytes(os.urandom(4), "big") % n) -> str:
    """Docker-style `adjective_scientist`, with a number when all are taken. `taken` is a
    set of names, or a function telling whether a name is taken."""
    is_taken = taken if callable(taken) else taken.__contains__
    for attempt in range(100):
        name = f"{_ADJECTIVES[rand(len(_ADJECTIVES))]}_{_NAMES[rand(len(_NAMES))]}"
        if attempt > 20:
            name += str(rand(99) + 1)
        if not is_taken(name):
            return name
    raise InvalidSpec("could not generate a free container name; give one with --name")


# Docker's floor for -m: below it the container's own runtime does not fit (it refuses too).
MIN_MEMORY = 6 * 1024 * 1024


def parse_memory(text: str) -> int:
    """`-m 64m` -> bytes: a number with an optional unit b, k, m or g, at least 6 MB."""
    size = _size(text)
    if size is None:
        raise InvalidSpec(f'invalid memory size "{text}": use a number with an optional unit, e.g. 64m or 1g')
    if size < MIN_MEMORY:
        raise InvalidSpec(f'memory limit "{text}" is too small: the minimum is 6m (6 MB), as with Docker')
    return size


LOG_MAX_SIZE = 20 * 1024 * 1024  # Docker's `local` log driver: 20 MB per file...
LOG_MAX_FILES = 5  # ...and 5 files


def _size(text: str) -> int | None:
    units = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
    t = text.strip().lower()
    num = t.rstrip("bkmg")
    unit = t[len(num):]
    unit = unit.rstrip("b") if len(unit) > 1 else unit
    if not num.isdigit() or unit not in units or int(num) == 0:
        return None
    return int(num) * units[unit]


def parse_log_opts(opts: list[str] | tuple[str, ...]) -> tuple[int, int]:
    """--log-opt max-size=SIZE max-file=N (Docker's names) -> (bytes per file, files kept)."""
    size, files = LOG_MAX_SIZE, LOG_MAX_FILES
    for opt in opts:
        key, eq, value = opt.partition("=")
        if key == "max-size" and eq:
            size = _size(value) or 0
            if size < 4096:
                raise InvalidSpec(f'invalid --log-opt "{opt}": give a size of at least 4k, e.g. max-size=10m')
        elif key == "max-file" and eq:
            if not value.isdigit() or not 1 <= int(value) <= 100:
                raise InvalidSpec(f'invalid --log-opt "{opt}": give a number of files from 1 to 100, e.g. max-file=3')
            files = int(value)
        else:
            raise InvalidSpec(f'unknown --log-opt "{opt}": minibox takes max-size=SIZE and max-file=N')
    return size, files


def validate_pids_limit(n: int) -> int:
    """--pids-limit: a positive number; 0 or -1 mean unlimited, as with Docker."""
    if n < -1:
        raise InvalidSpec(f"invalid --pids-limit {n}: give a positive number of processes, or -1 for unlimited")
    return max(n, 0)


def validate_workdir(path: str) -> str:
    if not path.startswith("/"):
        raise InvalidSpec(f'working directory "{path}" is not absolute: give a path starting with "/"')
    return path


def validate_hostname(name: str, what: str = "hostname") -> str:
    if len(name) > 64 or not HOSTNAME_RE.match(name):
        raise InvalidSpec(f'invalid {what} "{name}": use letters, digits and "-" (dot-separated labels), '
                          "at most 64 characters")
    return name


def validate_expose(text: str) -> str:
    """--expose PORT[-END][/tcp|/udp], as the image's ExposedPorts keys ("80/tcp")."""
    numbers, slash, proto = text.partition("/")
    first, dash, last = numbers.partition("-")
    ok = first.isdigit() and (not dash or last.isdigit()) and (proto if slash else "tcp") in ("tcp", "udp")
    if ok:
        lo, hi = int(first), int(last) if dash else int(first)
        ok = 1 <= lo <= hi <= 65535
    if not ok:
        raise InvalidSpec(f'invalid --expose "{text}": expected PORT or START-END (1-65535), with /tcp or /udp')
    return f"{numbers}/{proto if slash else 'tcp'}"


def validate_add_host(text: str) -> str:
    """--add-host NAME:IP (or NAME=IP), IP an address or host-gateway: as "NAME:IP"."""
    sep = "=" if "=" in text else ":"
    name, found, addr = text.partition(sep)
    if not found or not name or not HOSTNAME_RE.match(name) or len(name) > 255:
        raise InvalidSpec(f'invalid --add-host "{text}": expected NAME:IP, NAME a host name')
    if addr != "host-gateway":
        try:
            addr = str(ipaddress.ip_address(addr.strip("[]")))
        except ValueError:
            raise InvalidSpec(f'invalid --add-host "{text}": "{addr}" is not an IP address (or host-gateway)') \
                from None
    return f"{name}:{addr}"


def cpu_list(text: str, flag: str, available: str) -> str:
    """A cpuset list ("0-2,4") whose every member is in `available` (the host's, in the same
    syntax), as Docker checks --cpuset-cpus and --cpuset-mems."""
    def members(spec: str) -> set[int]:
        out: set[int] = set()
        for part in spec.split(","):
            lo, dash, hi = part.strip().partition("-")
            if not lo.isdigit() or (dash and not hi.isdigit()) or (dash and int(hi) < int(lo)):
                raise ValueError(part)
            out |= set(range(int(lo), int(hi if dash else lo) + 1))
        return out
    try:
        want = members(text)
    except ValueError:
        raise InvalidSpec(f'invalid {flag} "{text}": expected a list such as 0-2,4') from None
    if available and not want <= members(available):
        what = "CPUs" if flag.endswith("cpus") else "memory nodes"
        raise InvalidSpec(f"invalid {flag} {text}: requested {what} are not available here (available: {available})")
    return text


def validate_dns(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InvalidSpec(f'invalid --dns "{text}": expected the IP address of a nameserver') from None


def validate_search(text: str) -> str:
    if text != "." and (len(text) > 253 or not HOSTNAME_RE.match(text.rstrip("."))):
        raise InvalidSpec(f'invalid --dns-search "{text}": expected a domain name (or "." for none)')
    return text


def parse_env(items: list[str] | tuple[str, ...], caller_env: dict[str, str]) -> tuple[str, ...]:
    """`-e K=V` sets K; `-e K` copies K from the caller's environment (skipped if unset)."""
    out = []
    for item in items:
        key, eq, value = item.partition("=")
        if not ENV_KEY_RE.match(key):
            raise InvalidSpec(f'invalid environment variable "{item}": expected KEY=VALUE with a non-empty KEY '
                              "without spaces")
        if eq:
            out.append(f"{key}={value}")
        elif key in caller_env:
            out.append(f"{key}={caller_env[key]}")
    return tuple(out)


def container_env(user_env: tuple[str, ...], hostname: str, tty: bool, image_env: tuple[str, ...] = (),
                  home: str = "/root") -> tuple[str, ...]:
    """The environment PID 1 starts with: Docker's defaults, the image's ENV over them, the
    user's -e over that; HOME from the user's passwd entry unless set."""
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname}
    if tty:
        env["TERM"] = "xterm"
    for item in tuple(image_env) + tuple(user_env):
        key, _, value = item.partition("=")
        env[key] = value
    env.setdefault("HOME", home)
    return tuple(f"{k}={v}" for k, v in env.items())


def parse_labels(items: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """--label KEY=VALUE (or KEY, an empty value), as Docker takes them."""
    out = []
    for item in items:
        key, _, value = item.partition("=")
        if not key or any(c.isspace() for c in key):
            raise InvalidSpec(f'invalid label "{item}": expected KEY=VALUE with a non-empty KEY without spaces')
        out.append(f"{key}={value}")
    return tuple(out)


def parse_env_file(path: str) -> list[str]:
    """`--env-file`: one KEY=VALUE (or KEY, taken from the caller) per line; # comments."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise InvalidSpec(f'cannot read --env-file "{path}": {e.strerror}') from None
    return [line.strip() if "=" not in line else line.lstrip() for line in lines
            if line.strip() and not line.lstrip().startswith("#")]


def hosts_file(hostname: str, ip: str = "", extra: tuple[tuple[str, str], ...] = (), ip6: str = "") -> str:
    """/etc/hosts as Docker writes it: localhost, --add-host's (name, address) lines, the
    container's own name. Not the others on its network: their names are the network's DNS
    server's to answer (Docker's way; lines in every peer's file went stale on a rename, and
    made each `run` rewrite as many files as the network had containers)."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes",
             "ff02::2\tip6-allrouters"]
    lines += [f"{addr}\t{name}" for name, addr in extra]
    if ip:
        lines.append(f"{ip}\t{hostname}")
        if ip6:
            lines.append(f"{ip6}\t{hostname}")
    else:
        lines[0] += f" {hostname}"
    return "\n".join(lines) + "\n"


def resolv_conf(host_text: str, dns: tuple[str, ...] = (), search: tuple[str, ...] = (),
                options: tuple[str, ...] = (), keep_loopback: bool = False, via: str = "") -> str:
    """The host's resolv.conf without loopback nameservers (unreachable from a container's
    network namespace; `keep_loopback` with the host's network), falling back to public
    resolvers like Docker when none remain. --dns, --dns-search and --dns-option replace
    the host's nameservers, search and options lines, as Docker's do."""
    kept, dropped = [], []
    for line in host_text.splitlines():
        parts = line.split()
        word = parts[0] if parts else ""
        if (word == "nameserver" and dns) or (word in ("search", "domain") and search) or \
                (word == "options" and options):
            continue
        if len(parts) >= 2 and word == "nameserver" and not keep_loopback and (
                parts[1].startswith("127.") or parts[1] == "::1"):
            dropped.append(parts[1])
            continue
        kept.append(line)
    kept += [f"nameserver {d}" for d in dns]
    if search and search != (".",):
        kept.append("search " + " ".join(s for s in search if s != "."))
    if options:
        kept.append("options " + " ".join(options))
    if not any(line.split()[:1] == ["nameserver"] for line in kept):
        kept += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    head = ["# Generated by minibox from the host's resolv.conf"]
    if via:
        head.append(f"# nameserver: {via}")
    if dropped:
        head.append(f"# dropped loopback nameservers: {' '.join(dropped)}")
    return "\n".join(head + kept) + "\n"


def parse_security_opt(opts: list[str] | tuple[str, ...]) -> tuple[str, bool]:
    """--security-opt values -> (the seccomp source: "" (default), "unconfined", or a path;
    no_new_privs, off unless asked, as Docker's)."""
    seccomp, nnp = "", False
    for opt in opts:
        key, eq, value = opt.replace(":", "=", 1).partition("=") if opt.startswith("no-new-privileges:") \
            else opt.partition("=")
        if key == "seccomp" and value:
            seccomp = value
        elif key == "no-new-privileges" and value in ("", "true", "false"):
            nnp = value != "false"
        elif key == "apparmor":
            raise InvalidSpec(f'--security-opt "{opt}": AppArmor is not used by minibox (seccomp, capabilities '
                              "and masks confine the container); drop the option")
        else:
            raise InvalidSpec(f'unknown --security-opt "{opt}": use seccomp=unconfined, seccomp=PROFILE.json '
                              "or no-new-privileges[=true|false]")
    return seccomp, nnp


def parse_size(text: str, flag: str) -> int:
    """A size with an optional unit b, k, m or g (--shm-size 128m) in bytes."""
    size = _size(text)
    if size is None:
        raise InvalidSpec(f'invalid {flag} "{text}": use a number with an optional unit, e.g. 64m or 1g')
    return size
