"""The shim's exit command: record a detached container's exit and give back what it held.

Run by the shim as `python -m minibox.cleanup ID` right after the container's PID 1 exits
(Podman's conmon runs `podman container cleanup` the same way). It imports no CLI code, so
it starts fast; failures are kept in the container's state for `inspect` to show.
"""

from __future__ import annotations

import sys

from minibox import lifecycle, store
from minibox.errors import MiniboxError


def main(cid: str) -> int:
    try:
        rec = store.load_record(cid)
    except FileNotFoundError:
        return 0  # already removed (rm -f raced us): nothing left to do
    try:
        lifecycle.refresh(cid)
        if rec.spec.remove:
            lifecycle.remove_container(rec, wait_for_shim=False)
    except MiniboxError as e:
        try:
            with store.container_lock(cid):
                store.save_state(cid, store.load_state(cid).replace(error=str(e)))
        except OSError:
            pass
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
