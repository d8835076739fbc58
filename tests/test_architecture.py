"""Import rules of ARCHITECTURE.md, checked on the source: layers only import downwards."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nbia_audit"


# The CLI layer: the cli/ package; nothing below it may import it.
def is_cli(path: Path) -> bool:
    return path.relative_to(PACKAGE).parts[0] == "cli"


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path).rsplit(".", 1)[0]
    if path.name == "__init__.py":
        package = module_name(path).removesuffix(".__init__")
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base)
                name = f"{prefix}.{node.module}" if node.module else prefix
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))
LIBRARY = [p for p in SOURCES if not is_cli(p) and p.name != "__main__.py"]
EMULATOR = [p for p in SOURCES if "emulator" in p.relative_to(PACKAGE).parts]


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: module_name(p))
def test_library_never_imports_click_or_the_cli(path: Path) -> None:
    imported = imports_of(path)
    assert not any(name == "click" or name.startswith("click.") for name in imported)
    layer = [name.split(".")[1] for name in imported if name.startswith("nbia_audit.")]
    assert not [m for m in layer if m == "cli" or m.startswith("cli_")]


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: module_name(p))
def test_library_never_prints_or_exits(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in {"print", "exit", "quit"}, f"line {node.lineno}"
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            assert (node.value.id, node.attr) != ("sys", "exit"), f"line {node.lineno}"


@pytest.mark.parametrize("path", EMULATOR, ids=lambda p: module_name(p))
def test_emulator_is_independent_of_client_and_hashing(path: Path) -> None:
    # The emulator must produce the wire format and the hashes on its own, so a bug in the
    # client or in hashing.py cannot hide behind the same bug in the emulator.
    imported = imports_of(path)
    forbidden = ("nbia_audit.client", "nbia_audit.merkle", "nbia_audit.manifest")
    assert not [name for name in imported if name.startswith(forbidden)]


def test_rules_see_the_whole_package() -> None:
    assert len(LIBRARY) >= 8 and EMULATOR
