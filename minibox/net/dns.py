"""The embedded DNS of user-defined networks: aardvark-dns (Podman's resolver), one process for them all, started and stopped with the containers it answers for.

Why aardvark-dns and not a server of our own: it is Debian's, well kept, built for exactly
this (a file per network, a line per container, SIGHUP to re-read them), answers A records
authoritatively and forwards every other question to the host's resolvers (or a
container's --dns servers), over UDP and TCP. Its design is Podman's: it listens on each
network's gateway (the bridge's address, port 53, in the host's network namespace), and a
container's resolv.conf names that address. Docker's 127.0.0.11 needs a listener inside
every container's network namespace, which a single host process cannot be.

No daemon of minibox's own: the command that adds the first line starts the server, the
one that removes the last line stops it (by the PID in its pid file, checked to be
aardvark-dns), and `gc` does both for a crashed command. The server is its own session,
so a `kill -9` of any minibox command leaves it serving.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from minibox import config, notes, store
from minibox.plan.netsteps import DnsRecord

PID_FILE = "aardvark.pid"
PLACES = ("/usr/lib/podman/aardvark-dns", "/usr/libexec/podman/aardvark-dns")
BIND_WAIT = 2.0  # seconds for a started (or reloaded) server to listen on a new gateway


def directory() -> Path:
    return config.paths().dns


def server_program() -> str:
    return shutil.which("aardvark-dns") or next((p for p in PLACES if os.access(p, os.X_OK)), "")


def apply(step: DnsRecord) -> None:
    """The container's line in its network's file (replacing one of its id), and the
    server told, or started."""
    program = server_program()
    if not program:
        notes.say("warning: aardvark-dns is not installed (scripts/setup installs it): containers on "
                  f"{step.network} cannot find each other by name")
        return
    with _locked():
        _change(step.network, step.gateway, lambda lines: [x for x in lines if not x.startswith(step.cid + " ")]
                + [step.line()])
        pid = server_pid()
        if pid:
            os.kill(pid, signal.SIGHUP)
        else:
            subprocess.run([program, "--config", str(directory()), "-p", "53", "run"], check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_listening(step.gateway)


def remove(network: str, *cids: str) -> list[str]:
    """The containers' lines gone, in one rewrite; the server told once, or stopped with the
    last line. Idempotent; returns errors instead of raising (teardown goes on)."""
    gone = set(cids)
    try:
        with _locked():
            if _change(network, "", lambda lines: [x for x in lines if x.split(" ", 1)[0] not in gone]):
                _reload_or_stop()
    except OSError as e:
        return [f"dns: removing {', '.join(c[:12] for c in cids)} from {network}: {e.strerror or e}"]
    return []


def remove_everywhere(cid: str) -> list[str]:
    """A container whose record is gone: its lines in any network's file."""
    d = directory()
    names = [p.name for p in d.iterdir() if _is_network_file(p)] if d.is_dir() else []
    return [e for n in names for e in remove(n, cid)]


def rename(network: str, cid: str, old: str, new: str) -> None:
    """`rename`: the new name answers at once, the old one no longer does."""
    def renamed(lines: list[str]) -> list[str]:
        out = []
        for x in lines:
            parts = x.split(" ")
            if parts[0] == cid and len(parts) >= 4:
                parts[3] = ",".join(new if n == old else n for n in parts[3].split(","))
            out.append(" ".join(parts))
        return out

    with _locked():
        if _change(network, "", renamed):
            _reload_or_stop()


def gc(live: set[str]) -> list[str]:
    """Lines of containers that are not running (`live`: the ids that are), and a server
    left serving nothing: what a crashed command left. Returns what it did, as commands."""
    d = directory()
    if not d.is_dir():
        return []
    done = []
    with _locked():
        changed = False
        for p in [p for p in d.iterdir() if _is_network_file(p)]:
            gone = [x.split(" ")[0] for x in _read(p)[1] if x.split(" ")[0] not in live]
            if gone:
                changed |= _change(p.name, "", lambda lines: [x for x in lines if x.split(" ")[0] in live])
                done += [f"sed -i '/^{c} /d' {p}" for c in gone]
        if changed or (server_pid() and not _networks()):
            _reload_or_stop()
    return done


def server_pid() -> int:
    """The server's PID, if its pid file names a live aardvark-dns (not a PID reused)."""
    try:
        pid = int((directory() / PID_FILE).read_text().strip())
        with open(f"/proc/{pid}/comm") as f:
            return pid if f.read().strip() == "aardvark-dns" else 0
    except (OSError, ValueError):
        return 0


# --- the files ---------------------------------------------------------------------------------


def _locked():
    # Nothing but network files and its pid file may be in the server's directory: it reads
    # every other file as a network's, and stops at one it cannot parse. So the lock and
    # the files being written stand beside it.
    d = directory()
    d.mkdir(mode=0o755, parents=True, exist_ok=True)
    return store.locked(d.parent / ".dns.lock")


def _is_network_file(p: Path) -> bool:
    return not p.name.startswith(".") and p.name != PID_FILE and p.is_file()


def _networks() -> list[str]:
    return [p.name for p in directory().iterdir() if _is_network_file(p)]


def _read(path: Path) -> tuple[str, list[str]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return "", []
    lines = [x for x in text.splitlines() if x.strip()]
    return (lines[0], lines[1:]) if lines else ("", [])


def _change(network: str, gateway: str, change) -> bool:
    """Rewrite a network's file through `change(lines)`; with no line left, remove it.
    Whole-file replacement: the server re-reads it on SIGHUP, never half-written."""
    path = directory() / network
    head, lines = _read(path)
    new = change(lines)
    if new == lines and (head or not gateway):
        return False
    if not new:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return True
    tmp = path.parent.parent / f".dns-{network}.{os.getpid()}.tmp"
    tmp.write_text("\n".join([head or gateway, *new]) + "\n")
    os.replace(tmp, path)
    return True


def _reload_or_stop() -> None:
    pid = server_pid()
    if not pid:
        return
    if _networks():
        os.kill(pid, signal.SIGHUP)
        return
    os.kill(pid, signal.SIGTERM)  # nothing left to answer for
    for _ in range(100):
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.01)
    with contextlib.suppress(FileNotFoundError):
        (directory() / PID_FILE).unlink()


def _wait_listening(gateway: str, port: int = 53) -> None:
    """aardvark-dns says it is ready before it binds (and binds a new network's gateway
    some time after SIGHUP): a container's first question must not beat the bind."""
    want = f"{socket.inet_aton(gateway)[::-1].hex().upper()}:{port:04X}"
    deadline = time.monotonic() + BIND_WAIT
    while time.monotonic() < deadline:
        with open("/proc/net/udp") as f:
            if any(line.split()[1] == want for line in f.readlines()[1:]):
                return
        time.sleep(0.005)
    notes.say(f"warning: the DNS server does not answer on {gateway}:{port} yet")
