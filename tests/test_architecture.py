"""The architecture checks itself: docs/architecture.md is the rule, the source must obey it.

- The layer table in docs/architecture.md (which package may import which) is read from the doc
  and enforced on every import of every module, including imports inside functions and under
  ``TYPE_CHECKING``: the picture and the code cannot drift apart.
- No import cycle between modules; no import inside a function unless it says why it is lazy.
- Every module under nbia_audit/ is named in docs/architecture.md, and every module, path and
  dotted name the docs mention exists; no doc names a flat module the house move retired.
- The library never imports click, prints or exits; the emulator has its own implementations.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nbia_audit"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
# docs/ and the README; the docs the other work owns are checked the same way.
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]

# Import cycles tolerated for now: none. An entry must name a cycle that exists
# (test_known_cycles_still_exist), so no entry can outlive its cycle.
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()


@dataclass(frozen=True, slots=True)
class Module:
    name: str  # dotted: nbia_audit.spec.load; a package is named by its __init__ as itself
    path: Path

    @property
    def unit(self) -> str:
        """What the layer table names: a package (``spec``), a leaf module, or the root."""
        parts = self.name.split(".")
        return parts[1] if len(parts) > 1 else "nbia_audit"

    @property
    def package(self) -> str:
        """Where relative imports start from."""
        return self.name if self.path.name == "__init__.py" else self.name.rsplit(".", 1)[0]


@dataclass(frozen=True, slots=True)
class Import:
    target: str  # the module imported (or the external name as written)
    line: int
    in_function: bool
    lazy_comment: bool  # "lazy" said on the import's line or the line above


def _discover() -> dict[str, Module]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = Module(name, path)
    return modules


MODULES = _discover()


def _resolve(name: str) -> str:
    """The module an imported dotted name lives in (``a.b.func`` -> ``a.b``)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _function_nodes(tree: ast.AST) -> set[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            inside.update(id(child) for child in ast.walk(node) if child is not node)
    return inside


def _run_starts(tree: ast.AST) -> dict[int, int]:
    """For each import statement, the line where its run of consecutive imports starts."""
    starts: dict[int, int] = {}
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody", "handlers"):
            statements = getattr(node, field, None)
            if not isinstance(statements, list):
                continue  # a lambda's or an if-expression's body is one expression
            start = None
            for statement in statements:
                if isinstance(statement, ast.Import | ast.ImportFrom):
                    start = start or statement.lineno
                    starts[id(statement)] = start
                else:
                    start = None
    return starts


def imports_of(module: Module) -> list[Import]:
    source = module.path.read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    inside = _function_nodes(tree)
    run_starts = _run_starts(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.package.split(".")
                prefix = package[: len(package) - (node.level - 1)]
                base = ".".join([*prefix, *([node.module] if node.module else [])])
            # `from pkg import submodule` imports the submodule; `from mod import name`, mod.
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        # A `# lazy:` comment on the line above a run of imports covers the whole run.
        first = run_starts.get(id(node), node.lineno)
        nearby = " ".join(lines[max(first - 2, 0) : node.end_lineno or node.lineno])
        for target in targets:
            internal = target == "nbia_audit" or target.startswith("nbia_audit.")
            found.append(
                Import(
                    target=_resolve(target) if internal else target,
                    line=node.lineno,
                    in_function=id(node) in inside,
                    lazy_comment="# lazy" in nearby,
                )
            )
    return found


def internal_imports(module: Module) -> Iterator[Import]:
    return (i for i in imports_of(module) if i.target in MODULES)


# --- the layer table, read from docs/architecture.md -------------------------------------------


@dataclass(frozen=True, slots=True)
class Layers:
    layer: dict[str, int]  # unit -> layer number
    never: dict[str, frozenset[str]]  # unit -> units it must not import even though lower


def read_layer_table(text: str) -> Layers:
    """Rows ``| <n> | `unit` `unit` | `never` ... |`` under the heading ``## Layers``."""
    section = text.split("\n## Layers", 1)[1].split("\n## ", 1)[0]
    layer: dict[str, int] = {}
    never: dict[str, frozenset[str]] = {}
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].isdigit():
            continue
        units = re.findall(r"`([\w.]+)`", cells[1])
        for unit in units:
            assert unit not in layer, f"{unit} is in two rows of the layer table"
            layer[unit] = int(cells[0])
            never[unit] = frozenset(re.findall(r"`([\w.]+)`", cells[2]))
    return Layers(layer, never)


LAYERS = read_layer_table(ARCHITECTURE.read_text(encoding="utf-8"))
UNITS = sorted({m.unit for m in MODULES.values()})


def test_the_layer_table_names_every_package_and_nothing_else() -> None:
    missing = [u for u in UNITS if u not in LAYERS.layer]
    unknown = [u for u in LAYERS.layer if u not in UNITS]
    assert not missing, f"not in the layer table of docs/architecture.md: {missing}"
    assert not unknown, f"the layer table names what nbia_audit/ does not hold: {unknown}"
    assert len(set(LAYERS.layer.values())) >= 10, "the table lost its layers"


def may_import(importer: str, imported: str, layers: Layers = LAYERS) -> bool:
    """The table's rule: a package imports itself, lower layers, and (leaves only) other leaves."""
    if importer == imported:
        return True
    if imported in layers.never.get(importer, ()):
        return False
    below = layers.layer[imported] < layers.layer[importer]
    return below or layers.layer[importer] == layers.layer[imported] == 0


@pytest.mark.parametrize("module", MODULES.values(), ids=lambda m: m.name)
def test_imports_follow_the_layer_table(module: Module) -> None:
    if module.unit not in LAYERS.layer:
        pytest.fail(f"{module.unit} is not in the layer table of docs/architecture.md")
    wrong = [
        f"line {i.line}: {i.target}"
        for i in internal_imports(module)
        if MODULES[i.target].unit in LAYERS.layer
        and not may_import(module.unit, MODULES[i.target].unit)
    ]
    assert not wrong, f"{module.name} imports against the layer table: {wrong}"


def test_the_layer_rule_refuses_what_the_table_forbids() -> None:
    # The rule itself, on the real table: upward imports, same-layer imports between packages,
    # and the emulator's "never" column are all refused.
    assert may_import("fetch", "store") and not may_import("store", "fetch")
    assert not may_import("emulator", "client") and not may_import("client", "emulator")
    assert not may_import("emulator", "merkle") and may_import("emulator", "errors")
    assert may_import("errors", "errors") and not may_import("lock", "cli")
    assert may_import("manifest", "boundedinput")  # leaves may use leaves
    assert not may_import("lock", "emulator") and may_import("demo", "emulator")


# --- cycles and imports inside functions -------------------------------------------------------


def module_graph() -> dict[str, set[str]]:
    return {name: {i.target for i in internal_imports(m)} - {name} for name, m in MODULES.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Tarjan's algorithm, iterative; components of more than one module (or a self-loop)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for start in graph:
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            step = next(edges, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(sorted(graph.get(step, ())))))
                elif step in on_stack:
                    low[node] = min(low[node], index[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    found.append(frozenset(component))
    return found


def test_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
    assert sorted(map(sorted, strongly_connected(graph))) == [["a", "b", "c"], ["e"]]


def test_no_import_cycles() -> None:
    cycles = [sorted(c) for c in strongly_connected(module_graph()) if c not in KNOWN_CYCLES]
    assert not cycles, f"modules that import each other (directly or round about): {cycles}"


def test_known_cycles_still_exist() -> None:
    cycles = set(strongly_connected(module_graph()))
    gone = [sorted(c) for c in KNOWN_CYCLES if c not in cycles]
    assert not gone, f"remove from KNOWN_CYCLES in tests/test_architecture.py: {gone}"


def _closes_known_cycle(module: Module, target: str) -> bool:
    return any({module.name, target} <= cycle for cycle in KNOWN_CYCLES)


@pytest.mark.parametrize("module", MODULES.values(), ids=lambda m: m.name)
def test_imports_inside_functions_say_why_they_are_lazy(module: Module) -> None:
    # An import inside a function hides a dependency from readers and from the layer picture,
    # and is the usual way to dodge a cycle; one is kept only for start-up time, and says so.
    unexplained = [
        f"line {i.line}: {i.target}"
        for i in imports_of(module)
        if i.in_function and not i.lazy_comment and not _closes_known_cycle(module, i.target)
    ]
    assert not unexplained, (
        f"{module.name}: import at the top, or add `# lazy: <why>` (start-up time only): "
        f"{unexplained}"
    )


# --- the library's manners ---------------------------------------------------------------------

LIBRARY = [m for m in MODULES.values() if m.unit not in ("cli", "__main__")]


@pytest.mark.parametrize("module", LIBRARY, ids=lambda m: m.name)
def test_library_never_imports_click(module: Module) -> None:
    clicks = [i.line for i in imports_of(module) if i.target.split(".")[0] == "click"]
    assert not clicks, f"{module.name} imports click (only cli/ may) on lines {clicks}"


@pytest.mark.parametrize("module", LIBRARY, ids=lambda m: m.name)
def test_library_never_prints_or_exits(module: Module) -> None:
    tree = ast.parse(module.path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in {"print", "exit", "quit"}, f"line {node.lineno}"
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            assert (node.value.id, node.attr) != ("sys", "exit"), f"line {node.lineno}"


def test_emulator_never_imports_client_or_hashing() -> None:
    # The emulator must produce the wire format and the hashes on its own, so a bug in the
    # client or in merkle.py cannot hide behind the same bug in the emulator. The layer table's
    # "never" column says so; this keeps the column from being emptied.
    assert LAYERS.layer["client"] >= LAYERS.layer["emulator"]
    assert "merkle" in LAYERS.never["emulator"] and "manifest" in LAYERS.never["emulator"]


def test_rules_see_the_whole_package() -> None:
    assert len(LIBRARY) >= 100 and any(m.unit == "emulator" for m in MODULES.values())
    assert sum(len(imports_of(m)) for m in MODULES.values()) >= 500


# --- the docs name what exists -----------------------------------------------------------------


def _architecture_module_names(text: str) -> set[str]:
    """``pkg/module.py`` and ``leaf.py`` in backticks; a package is named by its folder."""
    named = set(re.findall(r"`((?:[a-z_]+/)?[a-z_0-9]+\.py)`", text))
    return {n for n in named if n != "__init__.py" and not n.startswith(("tests/", "scripts/"))}


def _summary(path: Path) -> str:
    """The first sentence of a module's docstring: a draft of its row in the module table."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return " ".join(doc.split("\n\n")[0].split()).replace("``", "`")


def test_architecture_names_every_module_and_only_modules_that_exist() -> None:
    named = _architecture_module_names(ARCHITECTURE.read_text(encoding="utf-8"))
    on_disk = {
        m.path.relative_to(PACKAGE).as_posix()
        for m in MODULES.values()
        if m.path.name != "__init__.py"
    }
    unnamed, phantoms = sorted(on_disk - named), sorted(named - on_disk)
    rows = "\n".join(f"| `{name}` | {_summary(PACKAGE / name)} |" for name in unnamed)
    assert not unnamed, f"docs/architecture.md does not name {unnamed}; add a row each:\n{rows}"
    assert not phantoms, f"docs/architecture.md names modules that do not exist: {phantoms}"


_PATH = re.compile(r"nbia_audit/[\w/]*\w\.py")
_DOTTED = re.compile(r"\bnbia_audit(?:\.\w+)+")


def _dotted_exists(name: str) -> bool:
    module = _resolve(name)
    if module not in MODULES:
        return False
    value: object = importlib.import_module(module)
    for attribute in name[len(module) + 1 :].split(".") if name != module else ():
        if not hasattr(value, attribute):
            return False
        value = getattr(value, attribute)
    return True


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_name_paths_and_dotted_names_that_exist(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    paths = sorted({p for p in _PATH.findall(text) if not (ROOT / p).is_file()})
    dotted = sorted({d for d in _DOTTED.findall(text) if not _dotted_exists(d)})
    assert not paths, f"{doc.name} names files that do not exist: {paths}"
    assert not dotted, f"{doc.name} names modules or attributes that do not exist: {dotted}"


def _retired_module_names() -> list[str]:
    """The flat modules scripts/house_move.py moved, whose names no longer exist."""
    tree = ast.parse((ROOT / "scripts" / "house_move.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "MODULES":
            moved: dict[str, str] = ast.literal_eval(node.value)  # type: ignore[arg-type]
            current = {m.rsplit(".", 1)[-1] for m in MODULES} | {m.unit for m in MODULES.values()}
            return sorted(old for old in moved if old not in current)
    raise AssertionError("scripts/house_move.py has no MODULES table")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_do_not_name_retired_flat_modules(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    stale = sorted(
        old
        for old in _retired_module_names()
        if re.search(rf"`{old}(?:\.\w+)*(?:\(|`)|\b{old}\.py\b|`nbia_audit\.{old}\b|\({old}:", text)
    )
    assert not stale, f"{doc.name} still names the flat modules {stale}: use the new paths"
