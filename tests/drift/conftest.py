"""Fixtures of the drift tests: one lock of ``CORPUS`` per module, a fresh emulator per test.

The emulator is deterministic for a ``CorpusSpec``, so the lock made once (``template``) is a
valid lock for every fresh emulator; each test gets its own copy (``lock``) and its own
emulator to mutate.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nbia_audit.emulator import Emulator
from tests.support.drift import CORPUS, copy_lock, make_lock


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lock of CORPUS, made once per module; each test gets its own copy (``lock``)."""
    with Emulator.from_spec(CORPUS) as emu:
        return make_lock(emu, tmp_path_factory.mktemp("drift-lock"))


@pytest.fixture
def emu() -> Iterator[Emulator]:
    """A fresh emulator of CORPUS per test: mutations never leak between tests."""
    with Emulator.from_spec(CORPUS) as running:
        yield running


@pytest.fixture
def lock(template: Path, tmp_path: Path) -> Path:
    return copy_lock(template, tmp_path)
