"""The ``nbia-audit`` command group: every command, each defined in its own module.

Each command parses, calls one library function, renders and exits through
``nbia_audit.cli.common.finish`` or ``fail`` (codes by ``exit_code``).
"""

from __future__ import annotations

import click

from nbia_audit.cli.common import CONTEXT_SETTINGS, EXIT_CODE_HELP
from nbia_audit.cli.demo import demo
from nbia_audit.cli.doctor import doctor
from nbia_audit.cli.drift import drift
from nbia_audit.cli.emulator import emulator
from nbia_audit.cli.fetch import fetch
from nbia_audit.cli.lock import lock
from nbia_audit.cli.migrate import migrate
from nbia_audit.cli.report import report
from nbia_audit.cli.verify import verify
from nbia_audit.version import __version__

__all__ = ["cli", "main"]


@click.group(epilog=EXIT_CODE_HELP, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="nbia-audit")
def cli() -> None:
    """Pin, fetch, verify and audit imaging datasets served by NBIA (TCIA)."""


for _command in (lock, fetch, verify, drift, report, doctor, emulator, demo, migrate):
    cli.add_command(_command)


def main() -> None:  # pragma: no cover - exercised through the console script
    cli()
