"""The `minibox` command line: one typer function per verb; parsing and printing only.

Every verb hands validated values to launch, lifecycle, images or net and prints what
comes back. Errors are raised as MiniboxError and turned into one line and an exit code
by __main__. The verbs live in this package's modules, grouped by what they act on; a
module registers its verbs on `app` when it is imported. load() imports only the module
of the verb being run: the other nine cost every command a few milliseconds. Modules only
some verbs need (images, present, the network, the teaching tools) are imported in those
verbs, for the same reason.
"""

from __future__ import annotations

import importlib

MODULES = ("compose", "containergroup", "containers", "images", "listing", "manage", "network", "system", "teach",
           "volumes")

# Each top-level verb and the module that registers it (tests/unit/test_lazy_verbs.py holds
# this table to what importing each module registers). Groups (container, image, network, volume,
# system, compose), --help and anything unknown load every module.
VERB_MODULES = {
    **dict.fromkeys(("run", "exec", "logs", "stop", "kill", "rm", "inspect", "cp", "port"), "containers"),
    "ps": "listing",
    **dict.fromkeys(("create", "wait", "rename", "start", "attach", "restart", "pause", "unpause", "diff", "commit",
                     "export", "update"), "manage"),
    **dict.fromkeys(("top", "explain", "trace", "doctor"), "teach"),
    **dict.fromkeys(("pull", "images", "load", "save", "push", "import", "build", "tag", "rmi", "login", "logout",
                     "history"), "images"),
    **dict.fromkeys(("version", "info", "stats", "events", "gc"), "system"),
}


def load(args: list[str] | None = None):
    """The typer app, with the verbs of the module `args` runs registered: that verb's alone,
    or every module's when `args` name no verb of VERB_MODULES (None: every module)."""
    from minibox.entry import verb_of

    verb = verb_of(args) if args is not None else ""
    for name in (VERB_MODULES[verb],) if verb in VERB_MODULES else MODULES:
        importlib.import_module(f"minibox.cli.{name}")
    from minibox.cli.app import app

    return app
