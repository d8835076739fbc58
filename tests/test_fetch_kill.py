"""SIGKILL the real `fetch` command at random moments, many times in a row.

After every kill, nothing unverified may be in place (each file present is complete, at its
own path, with the locked bytes) and a series-only lock database must hold each series'
images completely or not at all. After a final clean run the tree is complete, verified,
recorded and free of strays. Two scenarios alternate: a fully pinned lock, and a
series-only lock that fetch fills in as it goes.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fetch_support import classic_paths, make_lock, private_files, read_lock, state_paths, tree

from nbia_audit.emulator import CorpusSpec, Emulator, Fault
from nbia_audit.lockfile import database_path, recover_interrupted
from nbia_audit.store import LockDatabase

SPEC = CorpusSpec(
    seed=17, collections=1, patients=2, studies=1, series=3, images=6, image_bytes=24_000
)
ROUNDS = 14
COMMAND = [sys.executable, "-c", "from nbia_audit.cli_fetch import fetch; fetch()"]


@dataclass
class Scenario:
    lock: Path
    dest: Path
    pristine_db: Path
    series_only: bool

    def start(self) -> subprocess.Popen[bytes]:
        args = [str(self.lock), "--dest", str(self.dest), "-q", "--workers", "2"]
        return subprocess.Popen(
            [*COMMAND, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
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
        kills = 0
        for round_number in range(ROUNDS):
            case = cases[round_number % 2]
            process = case.start()
            time.sleep(rng.uniform(0.02, whole_run))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            _, err = process.communicate()
            if process.returncode == 0:
                case.reset()
            else:
                assert process.returncode == -signal.SIGKILL, (seed, err.decode())
                assert_nothing_unverified(emu, case)
        assert kills >= ROUNDS // 2, f"too few kills landed (seed {seed})"
        for case in cases:
            process = case.start()
            _, err = process.communicate(timeout=60)
            assert process.returncode == 0, (seed, err.decode())
            expected = classic_paths(emu)
            assert tree(case.dest) == expected, seed
            assert state_paths(case.dest) == expected, seed
            assert private_files(case.dest) == {"state.db", "fetch.lock"}, seed
            assert_nothing_unverified(emu, case)
            if case.series_only:
                assert all(s.images_pinned for s in read_lock(case.lock).series)
