"""The teaching layer: --explain, --dry-run (and its script, run for real), explain, show, doctor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, inspect, links, mb, sh

HERE = Path(__file__).parent
SPEC = ["-d", "-p", "8080:80", "--name", "web", "busybox", "httpd", "-f", "-p", "80"]
BACKEND = os.environ.get("MINIBOX_FIREWALL_BACKEND", "nftables")


def test_dry_run_changes_nothing():
    before = (links(), sh("nft list ruleset; iptables-save", check=False).stdout, sorted(os.listdir(ROOT)))
    res = mb("run", "--dry-run", *SPEC, check=True)
    assert res.stdout.startswith("#!/bin/sh\n")
    for needle in ("unshare --pid --mount --net --uts --ipc --fork", "mount -t overlay", "pivot_root . .",
                   "type veth peer name eth0", "master minibox0", "ip route add default via 10.222.0.1",
                   "sysctl -w net.ipv4.ip_forward=1"):
        assert needle in res.stdout
    assert ("hostport-any { tcp . 8080" in res.stdout) if BACKEND == "nftables" else \
        ("--dport 8080" in res.stdout and "DNAT --to-destination 10.222.0.2:80" in res.stdout)
    after = (links(), sh("nft list ruleset; iptables-save", check=False).stdout, sorted(os.listdir(ROOT)))
    assert after == before
    assert mb("ps", "-aq").stdout == ""


def _build(how: str, tmp_path: Path) -> dict:
    """Build the container in a throwaway host of its own, then dump its network structure."""
    mbx = f"{sys.executable} -m minibox"
    if how == "script":
        script = tmp_path / "dry.sh"
        script.write_text(mb("run", "--dry-run", *SPEC, check=True).stdout)
        cdir = next(line.split("=", 1)[1].split()[0] for line in script.read_text().splitlines()
                    if line.startswith("export C="))
        build = f"sh {script} > {tmp_path}/script.log 2>&1\npid=$(cat {cdir}/pid)"
        # PID 1 ignores SIGTERM without a handler; then wait for the namespace to empty
        stop = (f"kill -9 $pid\nwhile [ -e /proc/$pid ]; do sleep 0.05; done\nrm -rf {cdir}\n"
                f"for d in /sys/fs/cgroup/*/$MINIBOX_CGROUP_PARENT/*/; do rmdir $d; done")
    else:
        build = f"{mbx} run {' '.join(SPEC)} >/dev/null\npid=$({mbx} inspect web | sed -n 's/.*\"Pid\": \\([0-9]*\\).*/\\1/p')"
        stop = f"{mbx} rm -f web >/dev/null"
    job = tmp_path / f"{how}.sh"
    job.write_text(f"set -e\nip link set lo up\n{build}\nsleep 0.3\n"
                   f"curl -s -m 5 127.0.0.1:8080 > {tmp_path}/{how}.page\n"
                   f"{sys.executable} {HERE}/netdump.py $pid > {tmp_path}/{how}.json\n{stop}\n")
    sh(f"unshare --net --mount sh {job}", timeout=60)
    return {"dump": json.loads((tmp_path / f"{how}.json").read_text()),
            "page": (tmp_path / f"{how}.page").read_text()}


def test_dry_run_script_builds_what_minibox_builds(tmp_path):
    by_hand = _build("script", tmp_path)
    by_minibox = _build("minibox", tmp_path)
    assert "Hello from minibox" in by_hand["page"] and by_hand["page"] == by_minibox["page"]
    a, b = by_hand["dump"], by_minibox["dump"]
    for part in ("host", "container"):
        for what in a[part]:
            assert a[part][what] == b[part][what], f"{part} {what} differ"
    assert a["nft_rules"] == b["nft_rules"]
    assert a["nft_elements"] == b["nft_elements"]
    assert a["iptables"] == b["iptables"]
    # and they are not trivially equal: the structures are there
    assert any(link["kind"] == "veth" and link["master"] == "minibox0" for link in a["host"]["links"])
    assert "eth0 10.222.0.2/24" in a["container"]["addrs"]
    assert "default via 10.222.0.1 dev eth0" in a["container"]["routes"]
