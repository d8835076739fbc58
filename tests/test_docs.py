"""Documentation that must not fall behind the code."""

from __future__ import annotations

from pathlib import Path

from nbia_audit.cli_doc import cli_reference

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_matches_help() -> None:
    documented = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert documented == cli_reference(), "regenerate: python -m nbia_audit.cli_doc > docs/cli.md"


def test_readme_names_every_command_and_exit_code() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for command in ("lock", "fetch", "verify", "drift", "report", "demo", "emulator"):
        assert f"nbia-audit {command}" in readme
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 3 |"):
        assert code in readme
    assert ".venv/bin/nbia-audit demo" in readme and ".venv/bin/python -m pytest" in readme
