"""The public API refuses what it cannot stand behind: a non-archive, a report of the wrong kind
or of another lock. None of these may end in a deep AttributeError or in a supplement that
calls a copy nobody checked "clean"."""

from __future__ import annotations

from pathlib import Path

import pytest

import nbia_audit
from nbia_audit.emulator import Emulator
from nbia_audit.errors import SpecError
from tests.support.corpus import SMALL_SPEC


def _spec(emu: Emulator, folder: Path, collection: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "dataset.yaml"
    name = emu.corpus.collections[collection].name
    spec.write_text(f"name: t\nserver: {emu.base_url}\nselect:\n  - collection: {name}\n")
    return spec


@pytest.mark.parametrize("target", [123, None, b"public", Path("public"), object()])
def test_open_archive_refuses_what_is_not_an_archive(target: object) -> None:
    with pytest.raises(ValueError, match="not an archive"):
        nbia_audit.open_archive(target)  # type: ignore[arg-type]


def test_a_verb_given_a_non_archive_names_it_as_a_spec_error(tmp_path: Path) -> None:
    with Emulator.from_spec(SMALL_SPEC) as emu:
        spec = _spec(emu, tmp_path, 0)
        with pytest.raises(SpecError, match="not an archive"):
            nbia_audit.lock_spec(spec, 123)  # type: ignore[arg-type]
    assert not (tmp_path / "dataset.lock").exists()


def test_read_lock_takes_a_path_as_text(tmp_path: Path) -> None:
    with Emulator.from_spec(SMALL_SPEC) as emu:
        lock = nbia_audit.lock_spec(_spec(emu, tmp_path, 0)).lock_path
    assert nbia_audit.read_lock(str(lock)).header.root_digest.startswith("sha256:")


def test_a_supplement_takes_only_a_verify_report_of_its_own_lock(tmp_path: Path) -> None:
    with Emulator.from_spec(SMALL_SPEC) as emu:
        first = nbia_audit.lock_spec(_spec(emu, tmp_path / "a", 0)).lock_path
        other = nbia_audit.lock_spec(_spec(emu, tmp_path / "b", 1)).lock_path
        assert nbia_audit.fetch_copy(first, tmp_path / "data").ok
        audit = nbia_audit.verify_copy(first, tmp_path / "data")
        drift = nbia_audit.detect_drift(first)
    assert audit.verified and drift.clean
    assert nbia_audit.build_supplement(first, audit).verification is not None
    with pytest.raises(ValueError, match="another lock"):
        nbia_audit.build_supplement(other, audit)
    with pytest.raises(ValueError, match="must be a verify report"):
        nbia_audit.build_supplement(first, drift)
