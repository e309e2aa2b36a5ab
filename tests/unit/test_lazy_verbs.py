"""The lazy click group: one verb converted per command, the same help and errors as typer's own."""

import click.testing
import typer

from minibox.entry import click_command
from minibox.cli import app
from minibox.oci.main import app as oci_app


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
