"""Has anyone changed the ruleset since minibox last wrote its rules? nftables' generation id says.

The kernel keeps one generation id per network namespace and bumps it on every ruleset
transaction, whoever makes it: nft, iptables-nft (Debian's iptables), Docker, a
`nft flush ruleset`. Reading it is one netlink round trip (NFT_MSG_GETGEN, ~0.1 ms, no
tool spawned). minibox stores the id it saw right after its own last transaction; if the
id is still that one, the rules it wrote are in place as written.
(iptables-legacy changes do not bump it; `minibox doctor` warns about legacy tables.)
"""

from __future__ import annotations

import json
import time

from minibox import config, files
from minibox.errors import WriteFailed
from minibox.net import nfnetlink


def current() -> int | None:
    """The kernel's nftables generation id; None if it cannot be read."""
    return nfnetlink.nft_generation()


def _path():
    # "-2": the table became `inet minibox` (IPv6); a host that ran an older minibox
    # re-asserts once, which also deletes the old `ip minibox` table.
    return config.paths().networks / ".firewall-generation-2"


def stored() -> int | None:
    try:
        return int(_path().read_text())
    except (OSError, ValueError):
        return None


def in_sync() -> bool:
    now = current()
    return now is not None and now == stored()


def record() -> None:
    """Remember the id as it is right after minibox's own transaction (best effort: a
    failure here only means the next change re-asserts everything)."""
    now = current()
    path = _path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.replace_file(path, f"{now}\n" if now is not None else "")
    except (OSError, WriteFailed):
        pass


def _counters_path():
    return config.paths().networks / ".firewall-counters"


def record_reset(rules: bool, table: bool) -> None:
    """Remember when minibox's rewrite reset the rules' counters (and, `table`, the map
    elements' too), so `network show` can say what its counters count since."""
    if not (rules or table):
        return
    now = time.time()
    was = counters_reset()
    doc = {"rules": now if rules else was[0], "table": now if table else was[1]}
    try:
        files.replace_file(_counters_path(), json.dumps(doc) + "\n")
    except (OSError, WriteFailed):
        pass


def counters_reset() -> tuple[float | None, float | None]:
    """(rules, table): when minibox last reset its rules' counters, and every counter."""
    try:
        doc = json.loads(_counters_path().read_text())
        return doc.get("rules"), doc.get("table")
    except (OSError, ValueError):
        return None, None
