"""The README's first command runs scripts/demo: here it runs in a throwaway host of its own, and every command it prints is one it ran."""

import os
import re
import subprocess
import sys

from conftest import PROJECT


def test_the_demo_runs_and_prints_only_commands_that_run():
    env = {k: v for k, v in os.environ.items() if k not in ("MINIBOX_SANDBOX", "MINIBOX_ROOT",
                                                             "MINIBOX_CGROUP_PARENT")}
    res = subprocess.run([sys.executable, str(PROJECT / "scripts/sandbox"), "bash", str(PROJECT / "scripts/demo")],
                         capture_output=True, text=True, env=env, timeout=240)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    out = res.stdout
    assert out.rstrip().endswith("the throwaway host and everything in it are gone when this exits.")
    assert out.count("<h1>Hello from minibox</h1>") == 3  # host, LAN machine, another container
    shown = [line[2:] for line in out.splitlines() if line.startswith("$ ")]
    assert len(shown) > 20
    assert not [c for c in shown if "..." in c or "…" in c]  # printed as runnable, nothing elided
    # every step is shown, the LAN machine's too (it once printed only a heading)
    lan = out.split("== A machine on the LAN")[1].split("==\n", 1)[1].split("\n== ")[0]
    assert "$ ip link add uplink0 type veth peer name eth0" in lan and "ip addr add 198.18.213.2/24" in lan
    assert "throwaway host" in lan  # says whose PIDs and namespaces the "host" ones are
    pid = re.search(r"\$ minibox inspect -f \S+ web\n(\d+)\n", out).group(1)
    assert f"NSpid:\t{pid}\t1" in out  # the same process: a host PID, and PID 1 inside
