"""The `minibox` command: its typer app run by minibox.entry (one line and Docker's exit code for every failure)."""

from __future__ import annotations

import sys

from minibox import notes
from minibox.entry import collector_off, exit_code, exit_now, run_app
from minibox.errors import EXIT_MINIBOX


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    notes.use(sys.stderr)  # what the engine says as it works

    def report(message: str) -> None:
        print(f"minibox: {message}", file=sys.stderr)

    return run_app(lambda: _app(args), args, "minibox", report, EXIT_MINIBOX, lambda e: exit_code(args, e.code))


def _app(args: list[str]):
    from minibox.cli import load

    return load(args)


def run() -> None:
    """The `minibox` command (pyproject's entry point)."""
    collector_off()
    exit_now(main())


if __name__ == "__main__":
    run()
