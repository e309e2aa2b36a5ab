"""The README's walkthrough, run command by command: each `$ command` runs, and the lines
under it must appear in its output, in order (`…` stands for anything; runs of spaces
count as one)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def blocks() -> list[tuple[str, list[str]]]:
    text = README.read_text().split("## Walkthrough", 1)[1]
    steps: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
    return steps


def _squash(line: str) -> str:
    return " ".join(line.split())  # column alignment differs with the numbers printed


def matches(expected: list[str], actual: str) -> bool:
    lines = [_squash(line) for line in actual.splitlines()]
    i = 0
    for exp in expected:
        if exp.strip() == "…":
            continue
        pattern = re.compile("^" + ".*".join(re.escape(_squash(part)) for part in exp.split("…")) + "$")
        while i < len(lines) and not pattern.match(lines[i]):
            i += 1
        if i == len(lines):
            return False
        i += 1
    return True


def test_walkthrough_runs_as_written():
    steps = blocks()
    assert len(steps) > 25
    cleanup = [cmd for cmd, _ in steps[[c for c, _ in steps].index("minibox rm -f red blue web"):]]
    try:
        _run_all(steps)
    finally:  # on failure, still leave nothing behind (the "Cleaning up" block, errors ignored)
        for cmd in cleanup:
            subprocess.run(["sh", "-c", cmd], capture_output=True, timeout=60)


def _run_all(steps: list[tuple[str, list[str]]]) -> None:
    after_background = False
    for cmd, expected in steps:
        # The step after one that starts a server in the background may find it not yet
        # listening: it is retried until it succeeds (10 s at most).
        deadline = time.monotonic() + (10 if after_background else 0)
        while True:
            res = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=60)
            if (res.returncode == 0 and matches(expected, res.stdout)) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert res.returncode == 0, f"`{cmd}` failed: {res.stderr}"
        assert matches(expected, res.stdout), f"`{cmd}` printed:\n{res.stdout}\nexpected:\n" + "\n".join(expected)
        after_background = cmd.rstrip().endswith("&")
