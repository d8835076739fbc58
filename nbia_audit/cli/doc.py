"""Generate docs/cli.md from the commands' own ``--help`` (a test keeps the two in sync).

python -m nbia_audit.cli.doc > docs/cli.md
"""

from __future__ import annotations

import click
from click.testing import CliRunner

from nbia_audit.cli.main import cli

__all__ = ["cli_reference"]

_WIDTH = 100


def _walk(command: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            found += _walk(command.commands[name], [*path, name])
    return found


def cli_reference() -> str:
    """The CLI reference as Markdown: one section per command with its exact help text."""
    lines = [
        "# Command-line reference",
        "",
        "Generated from each command's `--help` by `python -m nbia_audit.cli.doc`; a test fails",
        "when this file and the commands disagree.",
        "",
    ]
    runner = CliRunner()
    for path, _command in _walk(cli, ["nbia-audit"]):
        # Invoke the real command line, so the text is exactly what a user's --help prints.
        result = runner.invoke(
            cli, [*path[1:], "--help"], prog_name="nbia-audit", terminal_width=_WIDTH
        )
        lines += [f"## `{' '.join(path)}`", "", "```text", result.output.rstrip("\n"), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    click.echo(cli_reference(), nl=False)
