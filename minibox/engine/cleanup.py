"""The shim's exit command: record a detached container's exit, give back what it held, apply its restart policy.

Run by the shim as `python -m minibox.engine.cleanup ID` right after the container's PID 1 exits
(Podman's conmon runs `podman container cleanup` the same way). It imports no CLI code, so
it starts fast; failures are kept in the container's state for `inspect` to show. Its
output goes nowhere (the shim gives it /dev/null), so it never lets an exception out.
"""

from __future__ import annotations

import sys

from minibox import store
from minibox.engine import lifecycle
from minibox.errors import MiniboxError


def main(cid: str) -> int:
    try:
        rec = store.load_record(cid)
    except (OSError, MiniboxError):
        return 0  # already removed (rm -f raced us), or damaged: rm -f and gc deal with it
    try:
        lifecycle.refresh(cid)
        if rec.spec.remove:
            from minibox.engine import removal

            removal.remove(cid)
        elif rec.spec.restart not in ("", "no"):
            from minibox.engine import start

            start.policy_after_exit(cid)
    except MiniboxError as e:
        try:
            with store.container_lock(cid):
                store.save_state(cid, store.load_state(cid).replace(error=str(e)))
        except (OSError, MiniboxError):
            pass
        return 1
    except OSError:
        return 1  # the container was removed while we worked on it
    return 0


if __name__ == "__main__":
    from minibox import notes

    notes.use(sys.stderr)  # the shim's: what went wrong reaches whoever reads it
    sys.exit(main(sys.argv[1]))
