"""The `minibox` command line: one typer function per verb; parsing and printing only.

Every verb hands validated values to launch, lifecycle, images or net and prints what
comes back. Errors are raised as MiniboxError and turned into one line and an exit code
by __main__. The verbs live in this package's modules, grouped by what they act on;
importing the package registers them all on `app`. Modules only some verbs need (images,
present, the network, the teaching tools) are imported in those verbs: every import at
the top of these modules is paid by every command, `exec` included.
"""

from minibox.cli import (  # noqa: F401 - registers the verbs
    compose,
    containergroup,
    containers,
    images,
    listing,
    manage,
    network,
    system,
    teach,
    volumes,
)
from minibox.cli.app import app  # noqa: F401 - what __main__ runs
