"""Published ports on IPv6 loopback: a docker-proxy process per port, named after its container.

An IPv6 connection to ::1 never meets a DNAT that sends it out of the host (IPv6 has no
route_localnet), so `curl -g http://[::1]:8080/` would reach only the socket holding the
port. Docker answers there with its userland proxy; minibox runs the same binary (Debian's
docker.io ships /usr/sbin/docker-proxy) for each port published on [::] or [::1] of a
container that has an IPv6 address. The proxy takes over the port from the socket that
held it, and says on fd 3 whether it could bind ("0") or not ("1" and why), as it tells
dockerd.

Each proxy's argv[0] is `minibox-proxy:` and its container's directory (as a shim's
arguments name it), so every look at /proc (runtime.procs.helpers) finds a container's
proxies: rm, stop and gc end them without a record of their PIDs, one started by a
command killed before it could write anything included, and never another state root's.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import time

from minibox import config
from minibox.errors import Conflict, MiniboxError
from minibox.plan.steps import UserlandProxy

BINARY = "docker-proxy"
READY_TIMEOUT = 5.0


def binary() -> str:
    """docker-proxy's path, "" where it is not installed."""
    return shutil.which(BINARY) or shutil.which(BINARY, path="/usr/sbin:/usr/bin:/sbin:/bin") or ""


def held_by(step: UserlandProxy, sockets: list[socket.socket]) -> list[socket.socket]:
    """The sockets among `sockets` (one, or none) holding the IPv6 port `step` takes over
    (docker-proxy listens on IPv6 alone, measured: 0.0.0.0's socket stays with the shim)."""
    kind = socket.SOCK_STREAM if step.proto == "tcp" else socket.SOCK_DGRAM
    return [s for s in sockets if s.family == socket.AF_INET6 and s.type == kind
            and s.getsockname()[:2] == (step.host_ip, step.host_port)]


def start(step: UserlandProxy, cid: str, holders: list[socket.socket]) -> int:
    """Close `holders` and start the proxy on their port, in a session of its own (it outlives
    this command); its PID once it says it is bound. A port someone took in between is a
    Conflict, as when it was first held."""
    path = binary()
    if not path:
        raise MiniboxError("docker-proxy is not installed (Debian's docker.io ships it)")
    ready_r, ready_w = os.pipe()
    if ready_w == 3:  # posix_spawn's dup2 of a descriptor onto itself keeps it close-on-exec
        os.set_inheritable(ready_w, True)
    for s in holders:
        s.close()
    null = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    try:
        argv = [config.PROXY_ARGV0 + str(config.paths().container(cid)), *step.argv()[1:]]
        pid = os.posix_spawn(path, argv, os.environ, file_actions=null + [(os.POSIX_SPAWN_DUP2, ready_w, 3)],
                             setsid=True)
    finally:
        os.close(ready_w)
    said = b""
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while (left := deadline - time.monotonic()) > 0 and select.select([ready_r], [], [], left)[0]:
            chunk = os.read(ready_r, 4096)  # "0\n", or "1\n" and the error; then it closes fd 3
            if not chunk:
                break
            said += chunk
    finally:
        os.close(ready_r)
    if said.startswith(b"0"):
        return pid
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    why = said[1:].decode(errors="replace").strip() or "it did not say it was ready"
    where = f"[{step.host_ip}]:{step.host_port}/{step.proto}"
    if "address already in use" in why:
        raise Conflict(f"host port {where} is already in use on this host: pick another host port")
    raise MiniboxError(f"the userland proxy for {where} could not start: {why}")
