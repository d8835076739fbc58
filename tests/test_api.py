"""The public API: ``nbia_audit.__all__``, the examples in docs/api.md, the archive argument.

The examples are run exactly as the document shows them, against the real emulator over
loopback, so the document cannot drift from the code.
"""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import nbia_audit
from nbia_audit.archive.resolve import open_archive
from nbia_audit.archive.view import ArchiveView
from nbia_audit.client import Credentials, NbiaClient
from nbia_audit.emulator import Emulator
from nbia_audit.errors import SpecError
from tests.support.corpus import SMALL_SPEC, USERS

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)

# Every package that names its public face in its __init__ (archive/ joins when its own
# reorganisation lands).
PACKAGES = (
    "cli",
    "client",
    "demo",
    "dicom",
    "doctor",
    "drift",
    "emulator",
    "fetch",
    "lock",
    "report",
    "spec",
    "store",
    "verify",
)

VERBS = (
    "lock_spec",
    "check_lock_staleness",
    "fetch_copy",
    "verify_copy",
    "detect_drift",
    "build_supplement",
)


def _blocks() -> list[str]:
    return PYTHON_BLOCK.findall(DOC.read_text(encoding="utf-8"))


def test_the_examples_in_docs_api_run_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = _blocks()
    assert len(blocks) >= 8, "docs/api.md lost its examples"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "docs_api"}
    try:
        for number, block in enumerate(blocks, 1):
            code = compile(block, f"docs/api.md python block {number}", "exec")
            exec(code, namespace)
    finally:
        emu = namespace.get("emu")
        if isinstance(emu, Emulator):
            emu.stop()
    # The walk-through went all the way: a lock pair, a fetched copy, a stopped emulator.
    assert (tmp_path / "dataset.lock").is_file()
    assert (tmp_path / "dataset.lock.db").is_file()
    assert any((tmp_path / "data").rglob("*.dcm"))


def test_the_examples_exercise_every_verb() -> None:
    code = "\n".join(_blocks())
    for verb in VERBS:
        assert f"nbia_audit.{verb}(" in code, f"docs/api.md has no example of {verb}"


@pytest.mark.parametrize("name", nbia_audit.__all__)
def test_every_public_name_resolves_is_explained_and_documented(name: str) -> None:
    value = getattr(nbia_audit, name)
    assert value is not None
    assert f"`{name}`" in DOC.read_text(encoding="utf-8"), f"{name} is not in docs/api.md"
    if name.startswith("__"):
        return
    doc = inspect.getdoc(value) or ""
    # A dataclass without a docstring gets its signature as __doc__: that explains nothing.
    assert doc and not doc.startswith(f"{name}("), f"{name} has no docstring"


def test_the_public_names_are_exactly_all_and_nothing_else_resolves() -> None:
    assert len(set(nbia_audit.__all__)) == len(nbia_audit.__all__)
    assert set(nbia_audit.__all__) <= set(dir(nbia_audit))
    assert set(VERBS) <= set(nbia_audit.__all__)
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = nbia_audit.no_such_name


def test_no_public_name_is_also_a_subpackage() -> None:
    # Importing nbia_audit.lock binds the package over a function nbia_audit.lock: the name
    # would change meaning the moment any verb ran.
    root = Path(nbia_audit.__file__).parent
    packages = {p.parent.name for p in root.glob("*/__init__.py")}
    modules = {p.stem for p in root.glob("*.py")}
    assert not (packages | modules) & set(nbia_audit.__all__)


def test_a_verb_is_the_function_its_package_exports() -> None:
    assert nbia_audit.lock_spec is importlib.import_module("nbia_audit.lock").lock_spec
    assert nbia_audit.fetch_copy is importlib.import_module("nbia_audit.fetch").fetch_copy
    assert nbia_audit.verify_copy is importlib.import_module("nbia_audit.verify").verify_copy
    assert nbia_audit.detect_drift is importlib.import_module("nbia_audit.drift").detect_drift


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_names_its_public_face(package: str) -> None:
    module = importlib.import_module(f"nbia_audit.{package}")
    assert inspect.getdoc(module), f"nbia_audit.{package} has no docstring"
    names = getattr(module, "__all__", None)
    assert names, f"nbia_audit.{package}.__init__ has no __all__"
    for name in names:
        assert hasattr(module, name), f"nbia_audit.{package}.{name} does not resolve"


def _modules_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint('\\n'.join(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def test_importing_nbia_audit_loads_no_verb_no_client_and_no_pydicom() -> None:
    loaded = _modules_after("import nbia_audit\nimport nbia_audit.errors\nnbia_audit.__version__")
    heavy = {"pydicom", "numpy", "requests", "nbia_audit.emulator", "nbia_audit.lock"}
    assert not heavy & loaded, sorted(heavy & loaded)


def test_a_verb_loads_what_it_needs_and_not_the_emulator() -> None:
    loaded = _modules_after("from nbia_audit import verify_copy, lock_spec")
    assert "nbia_audit.verify.run" in loaded
    assert "nbia_audit.emulator" not in loaded


# -- the archive argument -------------------------------------------------------------------


@pytest.fixture
def emu_with_alice() -> Iterator[Emulator]:
    with Emulator.from_spec(SMALL_SPEC, users=USERS) as emu:
        yield emu


@pytest.fixture
def locked(emu_with_alice: Emulator, tmp_path: Path) -> Path:
    spec = _write_spec(emu_with_alice, tmp_path)
    assert nbia_audit.lock_spec(spec).written
    return spec


def _write_spec(emu: Emulator, folder: Path) -> Path:
    """A spec selecting the emulator's first collection, its server the emulator's URL."""
    spec = folder / "dataset.yaml"
    name = emu.corpus.collections[0].name
    spec.write_text(f"name: t\nserver: {emu.base_url}\nselect:\n  - collection: {name}\n")
    return spec


def _logouts(emu: Emulator) -> int:
    return sum(1 for r in emu.requests if r.endpoint == "logout")


def test_a_client_made_from_a_url_is_logged_out_when_the_verb_returns(
    emu_with_alice: Emulator, locked: Path
) -> None:
    alice = Credentials("alice", "secret")
    emu_with_alice.reset_request_log()
    report = nbia_audit.detect_drift(
        locked.with_suffix(".lock"), emu_with_alice.base_url, credentials=alice
    )
    assert report.clean
    assert any(r.endpoint == "token" for r in emu_with_alice.requests), "alice never logged in"
    assert _logouts(emu_with_alice) == 1


def test_a_client_passed_in_stays_open_for_the_caller(
    emu_with_alice: Emulator, locked: Path
) -> None:
    with NbiaClient(emu_with_alice.base_url, credentials=Credentials("alice", "secret")) as c:
        emu_with_alice.reset_request_log()
        assert not nbia_audit.check_lock_staleness(locked, c).stale
        assert nbia_audit.detect_drift(locked.with_suffix(".lock"), ArchiveView(c)).clean
        assert _logouts(emu_with_alice) == 0
        assert c.collections()  # still usable, same session
    assert _logouts(emu_with_alice) == 1


def test_every_archive_form_reaches_the_same_archive(
    emu_with_alice: Emulator, locked: Path
) -> None:
    lock = locked.with_suffix(".lock")
    with NbiaClient(emu_with_alice.base_url) as client:
        forms: list[str | NbiaClient | ArchiveView | None] = [
            None,
            emu_with_alice.base_url,
            client,
            ArchiveView(client),
        ]
        for form in forms:
            check = nbia_audit.check_lock_staleness(locked, form)
            assert not check.stale and check.requests > 0, form
            assert nbia_audit.detect_drift(lock, form).clean, form


def test_open_archive_refuses_a_bad_server_and_options_it_would_ignore() -> None:
    with pytest.raises(ValueError, match="unknown NBIA server 'nowhere'"):
        open_archive("nowhere")
    with pytest.raises(ValueError, match="API family"):
        open_archive("public", api="v9")  # type: ignore[arg-type]
    view = open_archive("public")  # nothing is sent until the first call
    assert view.base_url.startswith("https://") and view.client.api == "v4"
    with pytest.raises(ValueError, match="give them to the NbiaClient"):
        open_archive(view.client, credentials=Credentials("alice", "secret"))
    assert open_archive(view) is view
    view.client.close()


def test_a_verb_names_a_bad_archive_argument_as_a_spec_error(
    emu_with_alice: Emulator, locked: Path
) -> None:
    with pytest.raises(SpecError, match="^archive: unknown NBIA server 'nowhere'"):
        nbia_audit.detect_drift(locked.with_suffix(".lock"), "nowhere")
    with NbiaClient(emu_with_alice.base_url) as client, pytest.raises(SpecError, match="give"):
        nbia_audit.check_lock_staleness(locked, client, credentials=Credentials("a", "b"))


def test_a_bad_archive_argument_is_refused_before_anything_is_written(
    emu_with_alice: Emulator, tmp_path: Path
) -> None:
    spec = _write_spec(emu_with_alice, tmp_path)
    with pytest.raises(SpecError, match="nowhere"):
        nbia_audit.lock_spec(spec, "nowhere")
    assert not spec.with_suffix(".lock").exists()
