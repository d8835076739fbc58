"""``python -m nbia_audit``: the same as the ``nbia-audit`` command."""

from nbia_audit.cli.main import main

main()
