"""Fixtures of the engine tests: one emulator, lock and tampered copy per module.

Each module names its corpus in ``SPEC``. The tampered copy holds every kind of difference a
sharded run must judge exactly as one process does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nbia_audit.emulator import Emulator
from tests.support.verify import (
    backdate,
    download_all,
    flip_bit_keep_mtime,
    foreign_dicom,
    image_files,
    make_lock,
    materialise,
)


@pytest.fixture(scope="module")
def emu(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    with Emulator.from_spec(request.module.SPEC) as running:
        yield running


@pytest.fixture(scope="module")
def lock(emu: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lock(tmp_path_factory.mktemp("lock"), emu)


@pytest.fixture(scope="module")
def tampered(emu: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy with a missing, a modified, an unexpected and a duplicated file.

    The duplicate sits in another series' folder, so with shards it is likely found by a
    shard other than its original's.
    """
    root = tmp_path_factory.mktemp("tampered") / "copy"
    materialise(emu, download_all(emu, tmp_path_factory.mktemp("zips")), root, "ours")
    backdate(root)
    files = list(image_files(root))
    files[0].unlink()
    flip_bit_keep_mtime(files[3])
    (files[5].parent / "stranger.dcm").write_bytes(foreign_dicom())
    (files[-1].parent / "copy-of-another.dcm").write_bytes(files[7].read_bytes())
    return root
