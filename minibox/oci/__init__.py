"""minibox-oci: runc's command line over minibox's engine, for Docker, Podman, containerd and the OCI conformance suite."""


def run() -> None:
    """The `minibox-oci` command (pyproject's entry point): the collector is off before
    minibox.oci.main imports typer (see minibox.entry.collector_off)."""
    from minibox.entry import collector_off

    collector_off()
    from minibox.oci.main import run_main

    run_main()
