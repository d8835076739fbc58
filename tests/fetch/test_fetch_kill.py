"""SIGKILL the real `fetch` command at each named crash point, and at random moments.

After every kill, nothing unverified may be in place (each file present is complete, at its
own path, with the locked bytes) and a series-only lock database must hold each series'
images completely or not at all. After a final clean run the tree is complete, verified,
recorded and free of strays. Two scenarios alternate: a fully pinned lock, and a
series-only lock that fetch fills in as it goes.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from nbia_audit.crashpoints import CRASHPOINT_ENV
from nbia_audit.emulator import CorpusSpec, Emulator, Fault
from nbia_audit.store.database import LockDatabase
from nbia_audit.store.textlock import database_path, recover_interrupted
from tests.support.fetch import (
    classic_paths,
    make_lock,
    private_files,
    read_lock,
    state_paths,
    tree,
)

SPEC = CorpusSpec(
    seed=17, collections=1, patients=2, studies=1, series=3, images=6, image_bytes=24_000
)
ROUNDS = 14
COMMAND = [sys.executable, "-c", "from nbia_audit.cli.fetch import fetch; fetch()"]


@dataclass
class Scenario:
    lock: Path
    dest: Path
    pristine_db: Path
    series_only: bool

    def start(self, crashpoint: str | None = None) -> subprocess.Popen[bytes]:
        args = [str(self.lock), "--dest", str(self.dest), "-q", "--workers", "2"]
        env = {k: v for k, v in os.environ.items() if k != CRASHPOINT_ENV}
        if crashpoint is not None:
            env[CRASHPOINT_ENV] = crashpoint
        return subprocess.Popen(
            [*COMMAND, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )

    def reset(self) -> None:
        """Start over (the previous run finished before the kill came)."""
        shutil.rmtree(self.dest, ignore_errors=True)
        db = database_path(self.lock)
        db.with_name(db.name + "-journal").unlink(missing_ok=True)
        shutil.copyfile(self.pristine_db, db)


def scenario(tmp_path: Path, emu: Emulator, name: str, series_only: bool) -> Scenario:
    lock = make_lock(tmp_path / name, emu, series_only=series_only)
    pristine = tmp_path / f"{name}.pristine.db"
    shutil.copyfile(database_path(lock), pristine)
    return Scenario(lock, tmp_path / f"{name}-data", pristine, series_only)


def assert_nothing_unverified(emu: Emulator, case: Scenario) -> None:
    expected = classic_paths(emu)
    for path, md5 in tree(case.dest).items():
        assert expected.get(path) == md5, f"unverified or misplaced file in place: {path}"
    if not case.series_only:
        return
    recover_interrupted(case.lock)
    with LockDatabase(database_path(case.lock)) as db:
        assert db.integrity_ok()
    locked = read_lock(case.lock)
    for series in locked.series:
        pinned = {
            (i.sop_uid, i.archive_md5) for i in locked.images if i.series_uid == series.series_uid
        }
        truth = {(i.sop_uid, i.stored_md5) for i in emu.corpus.images_of(series.series_uid)}
        assert pinned == (truth if series.images_pinned else set()), series.series_uid


# Where fetch kills itself (crashpoints.py), each the 2nd time any worker reaches it: one
# series may be done, another is at that point. Between them they cover a download cut
# short, a lock database filled but nothing placed, a series half placed, placed but not
# recorded, and recorded.
FETCH_CRASHPOINTS = (
    "fetch:bytes-received@3",
    "fetch:claimed@2",
    "fetch:lock-filled@2",
    "fetch:one-file-placed@8",
    "fetch:placed@2",
    "fetch:recorded@2",
)


def assert_complete(emu: Emulator, case: Scenario, seed: object) -> None:
    process = case.start()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, (seed, err.decode())
    expected = classic_paths(emu)
    assert tree(case.dest) == expected, seed
    assert state_paths(case.dest) == expected, seed
    assert private_files(case.dest) == {"state.db", "fetch.lock"}, seed
    assert_nothing_unverified(emu, case)
    if case.series_only:
        assert all(s.images_pinned for s in read_lock(case.lock).series)


@pytest.mark.parametrize("point", FETCH_CRASHPOINTS)
@pytest.mark.parametrize("series_only", [False, True], ids=["pinned", "series-only"])
def test_sigkill_at_each_crash_point_then_rerun_is_complete_and_verified(
    tmp_path: Path, point: str, series_only: bool
) -> None:
    with Emulator.from_spec(SPEC) as emu:
        case = scenario(tmp_path, emu, "case", series_only=series_only)
        process = case.start(crashpoint=point)
        _, err = process.communicate(timeout=120)
        assert process.returncode == -signal.SIGKILL, (point, err.decode())  # reached it
        assert_nothing_unverified(emu, case)
        assert_complete(emu, case, point)


def test_sigkill_at_random_moments_then_rerun_is_complete_and_verified(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    with Emulator.from_spec(SPEC) as emu:
        cases = [
            scenario(tmp_path, emu, "pinned", series_only=False),
            scenario(tmp_path, emu, "series-only", series_only=True),
        ]
        emu.add_fault(Fault("latency", delay=0.03))
        started = time.monotonic()
        first = cases[0].start()
        assert first.communicate(timeout=60) and first.returncode == 0
        whole_run = time.monotonic() - started  # kill moments spread over a whole run
        cases[0].reset()
        for round_number in range(ROUNDS):
            case = cases[round_number % 2]
            process = case.start()
            time.sleep(rng.uniform(0.02, whole_run))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            _, err = process.communicate()
            if process.returncode == 0:
                case.reset()
            else:
                assert process.returncode == -signal.SIGKILL, (seed, err.decode())
                assert_nothing_unverified(emu, case)
        # How many kills land depends on the machine's load, so it is not asserted: the
        # crash-point test above guarantees a kill at every stage; these explore the moments
        # in between, and each one that lands is checked.
        for case in cases:
            assert_complete(emu, case, seed)
