"""minibox-cni: the CNI plugin (plugin.py the protocol, main.py the verbs); `run` is the command."""

import os


def run() -> None:
    """The `minibox-cni` command (pyproject's entry point). For ADD and DEL it first forks the
    helper that imports pyroute2 (net/linkworker.py), before even main.py's imports, so the
    import runs beside reading the request, IPAM and the firewall."""
    if os.environ.get("CNI_COMMAND") in ("ADD", "DEL"):
        from minibox.net import linkworker

        linkworker.begin()
    from minibox.cni import main

    main.run()
