"""`ps`: the containers, as Docker lists them (a record that cannot be read is listed as Dead)."""

import sys
import time
from typing import List

import typer

from minibox import config, store
from minibox.cli.app import app, say
from minibox.entry import collector_paused
from minibox.model import RUNNING


@app.command()
def ps(
    all_: bool = typer.Option(False, "-a", "--all", help="show stopped containers too"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="only ids"),
    fmt: str = typer.Option("", "--format", help="json, a Go template ('{{.Names}} {{.Status}}'), or 'table ...'"),
    filters: List[str] = typer.Option([], "-f", "--filter", help="name=, status=, ancestor=, label=KEY[=VALUE], id="),
    last: int = typer.Option(-1, "-n", "--last", help="the N last created (in any state)"),
    latest: bool = typer.Option(False, "-l", "--latest", help="the last created (in any state)"),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="full ids and commands"),
    size: bool = typer.Option(False, "-s", "--size", help="the size of what each wrote (its upper layer)"),
) -> None:
    """List containers. One whose record cannot be read is listed as Dead, the rest as usual."""
    with collector_paused():  # what ps makes lives until it prints
        store.require_root()
        from minibox.cli import present
        from minibox.engine import listing

        shape = present.Output(fmt)
        wanted = present.parse_filters(filters, present.PS_FILTERS)
        rows = []
        every = all_ or last >= 0 or latest or any(k in ("status", "exited") for k, _ in wanted)  # not just running
        for item in listing.containers():
            view, state = item.view, item.state
            if state is None:
                rows.append((item.cid, view, None, item.error))
                continue
            if item.warning:
                print(f"minibox: warning: {item.warning}", file=sys.stderr)
            if (every or state.status == RUNNING) and present.ps_matches(view, state, wanted):
                rows.append((item.cid, view, state, ""))
        rows.sort(key=lambda r: r[1].created if r[1] else 0, reverse=True)
        if latest or last >= 0:
            rows = rows[:1 if latest else last]
        if quiet:
            for cid, *_ in rows:
                say(cid if no_trunc else cid[:12])
            return
        why = lambda text: "cannot read " + text.split(" is damaged")[0].rsplit("/", 1)[-1]  # noqa: E731
        if shape.custom:
            shape.print([present.ps_json(r, s) if s else present.dead_json(c, why(e)) for c, r, s, e in rows],
                        present.PS_HEADINGS)
            return
        now = time.time()
        table = [present.ps_row(r, s, now) if s else present.dead_row(c, why(e)) for c, r, s, e in rows]
        if no_trunc:
            for row, (c, r, s, _e) in zip(table, rows):
                row[0] = c
                if r is not None:
                    row[2] = f'"{r.command}"'
        headers = list(present.PS_HEADERS)
        if size:
            from minibox.engine.volumes import bytes_under

            headers.append("SIZE")
            for row, (c, *_rest) in zip(table, rows):
                row.append(present.human_size(bytes_under(config.paths().container(c) / "upper")))
        say(present.table(headers, table))
