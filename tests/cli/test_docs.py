"""Documentation that must not fall behind the code."""

from __future__ import annotations

from pathlib import Path

from nbia_audit.cli.common import EXIT_CODE_MEANINGS, EXIT_CODE_RULE
from nbia_audit.cli.doc import cli_reference

ROOT = Path(__file__).resolve().parents[2]


def test_cli_reference_matches_help() -> None:
    documented = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert documented == cli_reference(), "regenerate: python -m nbia_audit.cli.doc > docs/cli.md"


def test_readme_names_every_command_and_exit_code() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for command in ("lock", "fetch", "verify", "drift", "report", "demo", "emulator"):
        assert f"nbia-audit {command}" in readme
    for code, meaning in EXIT_CODE_MEANINGS.items():
        assert f"| {int(code)} | {meaning} |" in readme  # the table is the one in cli/common.py
    assert EXIT_CODE_RULE in readme
    assert ".venv/bin/nbia-audit demo" in readme and ".venv/bin/python -m pytest" in readme


def test_docs_state_the_one_exit_code_rule() -> None:
    # Every page that explains a verb's exit codes must say what the one rule says, not a
    # variant of its own: an incomplete check with findings exits 1, without findings 3.
    for page in ("docs/verify.md", "docs/drift.md"):
        text = (ROOT / page).read_text(encoding="utf-8")
        assert "one rule every verb shares (`nbia_audit.cli.common.exit_code`)" in text, page
        assert "exits 3 even" not in text and "exit 3 even" not in text, page
    cli_md = (ROOT / "docs/cli.md").read_text(encoding="utf-8")
    assert cli_md.count(EXIT_CODE_RULE.split(";")[0]) >= 6  # in every verb's --help
