"""Exit codes are decided in one place: every command leaves through ``cli.common.finish``
(a result, by ``exit_code``) or ``cli.common.fail`` (an error, by ``exit_code_for``, itself
``exit_code`` for all but a bad spec); only the signal handler exits otherwise (128 + N, the
shell's convention, outside the documented table). Checked on the source of ``cli/``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from nbia_audit.cli.common import ExitCode, exit_code, exit_code_for
from nbia_audit.errors import ApiError, SpecError, StoreError

CLI = Path(__file__).resolve().parents[2] / "nbia_audit" / "cli"

# (module, function) -> the one call its exit may carry as its code.
EXITS = {
    ("common", "finish"): "exit_code",
    ("common", "fail"): "exit_code_for",
    ("signals", "run"): "exit_code_for_signal",
    ("signals", "on_signal"): "exit_code_for_signal",
    ("signals", "_exit_now"): "",  # the watchdog: its code is exit_code_for_signal's
}


def _is_exit(node: ast.AST) -> bool:
    """sys.exit(...), os._exit(...), exit(...)/quit(...), anything.exit(...), SystemExit."""
    if isinstance(node, ast.Raise) and node.exc is not None:
        raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        return isinstance(raised, ast.Name | ast.Attribute) and ast.unparse(raised).endswith(
            ("SystemExit", "Exit")
        )
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Name):
        return func.id in {"exit", "quit", "_exit"}
    return isinstance(func, ast.Attribute) and func.attr in {"exit", "_exit"}


def exits_in(path: Path) -> list[tuple[str, ast.AST]]:
    """Every exit in ``path`` with the name of the function it is in."""
    found: list[tuple[str, ast.AST]] = []

    def visit(node: ast.AST, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.FunctionDef) else where
            if _is_exit(child):
                found.append((inner, child))
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8")), "<module>")
    return found


@pytest.mark.parametrize("path", sorted(CLI.glob("*.py")), ids=lambda p: p.stem)
def test_commands_exit_only_through_the_one_rule(path: Path) -> None:
    for where, node in exits_in(path):
        place = f"{path.name}:{getattr(node, 'lineno', '?')} in {where}()"
        assert (path.stem, where) in EXITS, f"{place} exits by itself: use finish() or fail()"
        expected = EXITS[(path.stem, where)]
        if expected:
            assert isinstance(node, ast.Call) and len(node.args) == 1, place
            code = node.args[0]
            assert isinstance(code, ast.Call) and ast.unparse(code.func) == expected, place


def test_the_rule_sees_the_exits() -> None:
    places = {(p.stem, where) for p in CLI.glob("*.py") for where, _ in exits_in(p)}
    assert places == set(EXITS)


def test_an_error_is_usage_only_for_a_bad_spec_and_otherwise_an_unfinished_check() -> None:
    assert exit_code_for(SpecError("bad")) == ExitCode.USAGE
    for error in (ApiError("down"), StoreError("disk")):
        assert exit_code_for(error) == exit_code(findings=False, complete=False)
    assert exit_code(findings=True, complete=False) == ExitCode.FINDINGS
    assert exit_code(findings=False, complete=True) == ExitCode.CLEAN
