"""The ``nbia-audit`` command line: one thin module per command, grouped in ``main``."""

from nbia_audit.cli.main import cli, main

__all__ = ["cli", "main"]
