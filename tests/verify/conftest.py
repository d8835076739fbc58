"""Fixtures of the verify tests: one emulator, lock, download and pristine copy per module.

Each module names its corpus in a module-level ``SPEC``; the fixtures are module-scoped so a
module's tests share one download (tests that change a copy clone ``pristine`` first).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nbia_audit.emulator import Emulator
from tests.support.verify import Download, backdate, download_all, make_lock, materialise


@pytest.fixture(scope="module")
def emu(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    with Emulator.from_spec(request.module.SPEC) as running:
        yield running


@pytest.fixture(scope="module")
def lock(emu: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lock(tmp_path_factory.mktemp("lock"), emu)


@pytest.fixture(scope="module")
def downloads(emu: Emulator, tmp_path_factory: pytest.TempPathFactory) -> list[Download]:
    return download_all(emu, tmp_path_factory.mktemp("zips"))


@pytest.fixture(scope="module")
def pristine(
    emu: Emulator, downloads: list[Download], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    root = tmp_path_factory.mktemp("pristine") / "copy"
    materialise(emu, downloads, root, "ours")
    backdate(root)
    return root
