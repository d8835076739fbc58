"""The package reorganisation as one scripted move (run once, from the repository root).

It moves every flat module of ``nbia_audit/`` into its package with ``git mv``, moves the tests
into folders that mirror the packages, and rewrites every reference: imports (relative imports
become absolute, so a module's imports read the same wherever it lives), dotted names in strings
and docs, and file paths. Nothing else changes; behaviour is untouched.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "nbia_audit"

# old flat module -> new dotted path under nbia_audit
MODULES: dict[str, str] = {
    # leaves that stay at the top
    "hashing": "merkle",
    # dicom/
    "dicomheader": "dicom.header",
    "dicomscan": "dicom.scan",
    "headerfields": "dicom.fields",
    # spec/
    "spec": "spec.load",
    "spec_validate": "spec.validate",
    "yamlmarks": "spec.yamlmarks",
    # store/
    "lockfile": "store.textlock",
    "store": "store.database",
    "lockproof": "store.reader",
    "localstate": "store.localstate",
    "storable": "store.storable",
    "sqlshape": "store.sqlshape",
    # archive/
    "archive": "archive.view",
    "calls": "archive.calls",
    # lock/
    "locking": "lock.run",
    "selection": "lock.select",
    "pinning": "lock.pin",
    # fetch/
    "fetch": "fetch.run",
    "fetchseries": "fetch.series",
    "ziptools": "fetch.zipcheck",
    "layouts": "fetch.layouts",
    "placement": "fetch.placement",
    "resume": "fetch.resume",
    "diskspace": "fetch.diskspace",
    # verify/
    "verify": "verify.run",
    "verify_run": "verify.plan",
    "verify_lock": "verify.expectation",
    "verify_walk": "verify.walk",
    "verify_read": "verify.read",
    "verify_judge": "verify.judge",
    "verify_facts": "verify.facts",
    "verify_memo": "verify.memo",
    "verify_pool": "verify.pool",
    "verify_records": "verify.records",
    "sampling": "verify.sampling",
    "sidecars": "verify.sidecars",
    "proofwords": "verify.words",
    # drift/
    "drift": "drift.run",
    "drift_select": "drift.select",
    "drift_tree": "drift.tree",
    "drift_observe": "drift.observe",
    "drift_diff": "drift.diff",
    "drift_report": "drift.outcome",
    # report/
    "render": "report.render",
    "reportfile": "report.file",
    "escaping": "report.escaping",
    "supplement": "report.supplement",
    "supplement_render": "report.supplement_render",
    # doctor/
    "doctor": "doctor.run",
    "doctor_checks": "doctor.checks",
    "doctor_http": "doctor.http",
    "doctor_quirks": "doctor.quirks",
    "doctor_record": "doctor.record",
    "doctor_selection": "doctor.selection",
    "doctor_tree": "doctor.tree",
    # demo/
    "demo": "demo.story",
    # cli/
    "cli": "cli.main",
    "cli_common": "cli.common",
    "cli_doc": "cli.doc",
    "cli_doctor": "cli.doctor",
    "cli_drift": "cli.drift",
    "cli_emulator": "cli.emulator",
    "cli_fetch": "cli.fetch",
    "cli_report": "cli.report",
    "cli_signals": "cli.signals",
    "cli_verify": "cli.verify",
}

PACKAGE_DOCS = {
    "dicom": "Reading DICOM headers: identity (UIDs) and the few fields a folder layout needs.",
    "spec": "The dataset spec (``dataset.yaml``): load, validate and normalise it.",
    "store": "The lock's two files and the local state: text lock, lock database, one reader.",
    "archive": "The archive as the verbs see it: one view over the client, counted calls.",
    "lock": "The ``lock`` verb: resolve a spec into a lock, keep pins, check staleness.",
    "fetch": "The ``fetch`` verb: materialise exactly the locked bytes, proving every image.",
    "verify": "The ``verify`` verb: is this folder exactly the locked dataset?",
    "drift": "The ``drift`` verb: what changed upstream since a lock.",
    "report": "Rendering reports (text, JSON, JUnit) and the publication supplement.",
    "doctor": "The ``doctor`` verb: does the archive still behave as nbia-audit assumes?",
    "demo": "The demo: the researcher's story, end to end, against the embedded emulator.",
    "cli": "The ``nbia-audit`` command line: one thin module per command.",
}

# tests: old file name -> new folder (support modules go to tests/support/)
TEST_FOLDERS: dict[str, str] = {
    "test_lockfile.py": "store", "test_lockproof.py": "store", "test_lock_race.py": "store",
    "test_lock_strings.py": "store", "test_localstate.py": "store",
    "test_spec.py": "spec", "test_manifest.py": "spec", "test_bounds.py": "spec",
    "test_locking.py": "lock", "test_selectors_loud.py": "lock",
    "test_fetch.py": "fetch", "test_fetch_cli.py": "fetch", "test_fetch_kill.py": "fetch",
    "test_fetch_layouts.py": "fetch", "test_fetch_ziptools.py": "fetch",
    "test_hostile_server.py": "fetch",
    "test_verify.py": "verify", "test_verify_cli.py": "verify", "test_verify_layouts.py": "verify",
    "test_verify_lockmodes.py": "verify", "test_verify_memo.py": "verify",
    "test_verify_own_files.py": "verify", "test_verify_property.py": "verify",
    "test_verify_sample.py": "verify", "test_verify_schema.py": "verify",
    "test_verify_units.py": "verify", "test_words.py": "verify",
    "test_drift.py": "drift", "test_drift_cli.py": "drift", "test_drift_diff.py": "drift",
    "test_drift_faults.py": "drift", "test_drift_select.py": "drift",
    "test_render.py": "report", "test_report_cli.py": "report", "test_report_output.py": "report",
    "test_supplement.py": "report", "test_escaping.py": "report",
    "test_client_api.py": "client", "test_client_auth.py": "client",
    "test_client_emptiness.py": "client", "test_client_faults.py": "client",
    "test_client_parse.py": "client", "test_client_secrets.py": "client",
    "test_client_shapes.py": "client", "test_client_units.py": "client",
    "test_emulator_auth.py": "emulator", "test_emulator_cli.py": "emulator",
    "test_emulator_cli_errors.py": "emulator", "test_emulator_corpus.py": "emulator",
    "test_emulator_endpoints.py": "emulator", "test_emulator_faults.py": "emulator",
    "test_emulator_fidelity.py": "emulator", "test_emulator_hierarchy.py": "emulator",
    "test_emulator_mutations.py": "emulator", "test_emulator_samples.py": "emulator",
    "test_emulator_thirdparty.py": "emulator",
    "test_doctor.py": "doctor",
    "test_cli.py": "cli", "test_signals.py": "cli", "test_docs.py": "cli",
    "test_hashing.py": ".", "test_digests_dicomheader.py": ".", "test_architecture.py": ".",
    "test_foundation.py": ".", "test_fuzz_parsers.py": ".", "test_names.py": ".",
    "test_loopback_guard.py": ".", "test_soak.py": ".",
}
TEST_RENAMES = {"test_hashing.py": "test_merkle.py"}
SUPPORT = {
    "verify_support": "verify", "fetch_support": "fetch", "drift_support": "drift",
    "lock_tools": "lock_tools", "hostile_server": "hostile_server",
    "test_client_support": "client", "conftest": "corpus",
}

TEXT_SUFFIXES = {".py", ".md", ".toml", ".sh", ".yml", ".yaml", ".cfg", ".txt", ""}


def git(*args: str) -> None:
    subprocess.run(["git", *args], cwd=ROOT, check=True)


def old_module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def new_dotted(absname: str) -> str:
    parts = absname.split(".")
    if parts[0] == "nbia_audit" and len(parts) >= 2 and parts[1] in MODULES:
        return ".".join(["nbia_audit", MODULES[parts[1]], *parts[2:]])
    return absname


def support_dotted(name: str) -> str:
    if name in SUPPORT:
        return f"tests.support.{SUPPORT[name]}"
    return name


def rewrite_imports(path: Path, source: str, old_module: str | None) -> str:
    """Rewrite every import statement's module name (and make relative ones absolute)."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, str, str]] = []  # (line index, col, old text, new text)
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level and old_module is None:
                continue
            absname = absolute(node, old_module or "", is_package) if node.level else (
                node.module or "")
            target = support_dotted(new_dotted(absname)) if path.is_relative_to(
                ROOT / "tests") else new_dotted(absname)
            if absname == "nbia_audit":
                # ``from . import x`` / ``from nbia_audit import x`` naming a moved module
                for alias in node.names:
                    if alias.name in MODULES:
                        new = MODULES[alias.name].rpartition(".")
                        statement = f"from nbia_audit.{new[0]} import {new[2]}" if new[0] else (
                            f"from nbia_audit import {new[2]}")
                        if new[2] != (alias.asname or alias.name):
                            statement += f" as {alias.asname or alias.name}"
                        line = lines[node.lineno - 1]
                        lines[node.lineno - 1] = line[: node.col_offset] + statement + "\n"
                        assert len(node.names) == 1 and node.end_lineno == node.lineno, path
                continue
            line = lines[node.lineno - 1]
            match = re.compile(r"from\s+(\.*[\w.]*)\s+import").match(line, node.col_offset)
            if match is None:
                raise SystemExit(f"{path}:{node.lineno}: cannot parse import")
            if match.group(1) != target:
                edits.append((node.lineno - 1, match.start(1), match.group(1), target))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                target = new_dotted(alias.name)
                if target != alias.name:
                    edits.append((node.lineno - 1, -1, alias.name, target))
    for index, col, old, new in sorted(edits, reverse=True):
        line = lines[index]
        if col < 0:
            col = line.index(old)
        assert line[col: col + len(old)] == old, (path, index, old)
        lines[index] = line[:col] + new + line[col + len(old):]
    return "".join(lines)


def rewrite_text(text: str) -> str:
    """Dotted names and file paths of moved modules anywhere in text (strings, docs, configs)."""
    for old in sorted(MODULES, key=len, reverse=True):
        new = MODULES[old]
        text = re.sub(rf"nbia_audit/{old}\.py\b", f"nbia_audit/{new.replace('.', '/')}.py", text)
        if old not in PACKAGE_DOCS:  # ``nbia_audit.verify`` etc. now names the package
            text = re.sub(rf"\bnbia_audit\.{old}\b(?![./\w])", f"nbia_audit.{new}", text)
            text = re.sub(rf"\bnbia_audit\.{old}\.", f"nbia_audit.{new}.", text)
    for old, folder in TEST_FOLDERS.items():
        new_name = TEST_RENAMES.get(old, old)
        target = f"tests/{new_name}" if folder == "." else f"tests/{folder}/{new_name}"
        text = re.sub(rf"\btests/{re.escape(old)}", target, text)
    return text


def move_modules() -> None:
    # Old modules named like their new package (verify.py vs verify/) step aside first.
    for old in MODULES:
        if old in PACKAGE_DOCS or old == "store" or old == "archive":
            git("mv", f"nbia_audit/{old}.py", f"nbia_audit/_moving_{old}.py")
    for package, doc in PACKAGE_DOCS.items():
        folder = PKG / package
        folder.mkdir(exist_ok=True)
        (folder / "__init__.py").write_text(f'"""{doc}"""\n')
    for old, new in MODULES.items():
        source = PKG / f"_moving_{old}.py"
        if not source.exists():
            source = PKG / f"{old}.py"
        git("mv", str(source.relative_to(ROOT)), "nbia_audit/" + new.replace(".", "/") + ".py")
    git("add", "nbia_audit")


def move_tests() -> None:
    tests = ROOT / "tests"
    (tests / "__init__.py").write_text('"""The test suite; folders mirror the packages."""\n')
    for folder in sorted(set(TEST_FOLDERS.values()) | {"support"}):
        if folder != ".":
            (tests / folder).mkdir(exist_ok=True)
            init = tests / folder / "__init__.py"
            if not init.exists():
                init.write_text("")
    for old, folder in TEST_FOLDERS.items():
        new_name = TEST_RENAMES.get(old, old)
        dest = f"tests/{new_name}" if folder == "." else f"tests/{folder}/{new_name}"
        if dest != f"tests/{old}":
            git("mv", f"tests/{old}", dest)
    for old, new in SUPPORT.items():
        if old == "conftest":
            continue
        git("mv", f"tests/{old}.py", f"tests/support/{new}.py")
    git("add", "tests")


def text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout.split()
    return [ROOT / p for p in out if (ROOT / p).suffix in TEXT_SUFFIXES and (ROOT / p).is_file()
            and not p.startswith("scripts/house_move")]


def main() -> None:
    # Record each module's old dotted name before moving, to resolve its relative imports.
    old_names: dict[Path, str] = {}
    for path in PKG.rglob("*.py"):
        old_names[path.relative_to(ROOT)] = old_module_of(path)
    move_modules()
    move_tests()
    moved_back = {("nbia_audit/" + new.replace(".", "/") + ".py"): f"nbia_audit.{old}"
                  for old, new in MODULES.items()}
    for path in text_files():
        rel = str(path.relative_to(ROOT))
        text = path.read_text()
        if path.suffix == ".py":
            old_module = moved_back.get(rel) or old_names.get(Path(rel))
            text = rewrite_imports(path, text, old_module)
        new_text = rewrite_text(text)
        if new_text != path.read_text():
            path.write_text(new_text)
    print("moved", len(MODULES), "modules and", len(TEST_FOLDERS), "test files", file=sys.stderr)


if __name__ == "__main__":
    main()
