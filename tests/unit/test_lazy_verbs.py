"""The lazy click group: one verb converted per command, the same help and errors as typer's own."""

import click.testing
import typer

from minibox.cli import load
from minibox.entry import click_command
from minibox.oci.main import app as oci_app

app = load()  # every verb


def converted(group) -> set[str]:
    return {name for name in group.commands if isinstance(dict.__getitem__(group.commands, name), click.Command)}


def test_a_verb_converts_only_itself():
    group = click_command(app)
    assert converted(group) == set()
    result = click.testing.CliRunner().invoke(group, ["network", "ls", "--help"])
    assert result.exit_code == 0, result.output
    assert converted(group) == {"network"}
    assert converted(group.commands["network"]) == {"ls"}


def test_help_and_usage_errors_read_as_typer_s_own():
    runner = click.testing.CliRunner()
    for cli in (app, oci_app):
        for args in (["--help"], ["network", "--help"], ["image", "ls", "--help"], ["run", "--help"],
                     ["nosuch"], ["network", "lss"], ["run", "--bogus"], ["create", "--help"]):
            lazy = runner.invoke(click_command(cli), args)
            eager = runner.invoke(typer.main.get_command(cli), args)
            assert (lazy.exit_code, lazy.output) == (eager.exit_code, eager.output), args


def test_each_verb_is_registered_by_the_module_load_imports_for_it():
    """VERB_MODULES names, for each top-level verb, a module whose import registers it (in
    an interpreter of its own, as `minibox VERB` imports it); every verb is in the table;
    and a verb run alone imports that one verb module."""
    import subprocess
    import sys

    from minibox.cli import MODULES, VERB_MODULES

    every = {c.name or typer.main.get_command_name(c.callback.__name__) for c in app.registered_commands}
    assert set(VERB_MODULES) == every
    names = "sorted(c.name or typer.main.get_command_name(c.callback.__name__) for c in app.registered_commands)"
    for module in MODULES:
        probe = f"import typer, minibox.cli.{module}; from minibox.cli.app import app; print(*{names})"
        got = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
        assert {v for v, m in VERB_MODULES.items() if m == module} <= set(got), module
    probe = ("import sys; from minibox.cli import load; app = load(sys.argv[1:]); "
             "print(sorted(m for m in sys.modules if m.startswith('minibox.cli.') and m not in "
             "('minibox.cli.app',)), sorted(c.name or c.callback.__name__ for c in app.registered_commands))")
    out = subprocess.run([sys.executable, "-c", probe, "--firewall-backend", "iptables", "ps", "-a"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['minibox.cli.listing'] ['ps']", out
