"""The one way the tests run a command in-process: click's runner, crashes never hidden.

A verb ends by its exit code (``SystemExit``), never by an exception: the runner is told not to
catch exceptions, so a crash fails the test with its own traceback instead of passing as
"exit 1". Whatever the command printed must not hold a traceback either (the user would see it).
"""

from __future__ import annotations

from collections.abc import Mapping

from click.testing import CliRunner, Result

from nbia_audit.cli.main import cli


def run_cli(
    *args: object, input: str | None = None, env: Mapping[str, str | None] | None = None
) -> Result:
    """Run ``nbia-audit`` with ``args`` (as strings), as the console script does.

    The result keeps stdout and stderr apart (``.stdout``, ``.stderr``) and together as a
    terminal shows them (``.output``).
    """
    result = CliRunner().invoke(
        cli, [str(arg) for arg in args], input=input, env=env, catch_exceptions=False
    )
    assert "Traceback" not in result.output, result.output
    return result
