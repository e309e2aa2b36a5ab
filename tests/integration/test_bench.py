"""scripts/bench still runs: its quick OCI and CNI parts, here in the test sandbox. No timing is
asserted (the numbers are for people to read); the parts must finish, clean up, and print
their ratios."""

import re
import subprocess
import sys

from conftest import PROJECT


def test_bench_quick_oci_and_cni_parts_print_their_ratios():
    res = subprocess.run([sys.executable, str(PROJECT / "scripts/bench"), "--quick", "--only=oci,cni"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert re.search(r"minibox-oci run +[\d.]+ ms +[\d.]+x runc", res.stdout), res.stdout
    assert re.search(r"minibox-cni ADD, DEL +[\d.]+ ms +[\d.]+x reference", res.stdout), res.stdout
