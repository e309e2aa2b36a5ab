"""minibox-cni: the CNI plugin (plugin.py the protocol, main.py the verbs); `run` is the command."""


def run() -> None:
    """The `minibox-cni` command (pyproject's entry point)."""
    from minibox.cni import main

    main.run()
