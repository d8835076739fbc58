"""verify/ stays readable: no cycle dodged by an import inside a function or behind
TYPE_CHECKING, and no function a caller must hand more than six things."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

VERIFY = Path(__file__).resolve().parents[2] / "nbia_audit" / "verify"
SOURCES = sorted(VERIFY.glob("*.py"))
MOST_PARAMETERS = 6


def _functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef)
    return [n for n in ast.walk(tree) if isinstance(n, kinds)]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_imports_are_at_the_top_of_the_module(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hidden = [
        f"{path.name}:{node.lineno}"
        for function in _functions(tree)
        for node in ast.walk(function)
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    guarded = [
        f"{path.name}:{node.lineno}"
        for node in tree.body
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
    ]
    assert not hidden and not guarded


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_function_takes_more_than_six_parameters(path: Path) -> None:
    """Keyword-only options with defaults (a verb's settings) do not count; ``self`` does not."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    wide = []
    for function in _functions(tree):
        args = function.args
        positional = [
            a.arg for a in (*args.posonlyargs, *args.args) if a.arg not in ("self", "cls")
        ]
        required_keywords = [
            a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None
        ]
        if len(positional) + len(required_keywords) > MOST_PARAMETERS:
            wide.append(f"{path.name}:{function.lineno} {function.name}")
    assert not wide
