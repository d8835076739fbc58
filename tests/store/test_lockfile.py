"""The text lock, the lock database, and the atomic replacement of the pair."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import pytest

from nbia_audit.crashpoints import CRASHPOINT_ENV
from nbia_audit.errors import LockFormatTooNew, LockNotFound, StoreError
from nbia_audit.models import LOCK_FORMAT, HashNode, LockedImage, LockedSeries, LockHeader
from nbia_audit.store.database import LockDatabase, write_lock_database
from nbia_audit.store.textlock import (
    COMMIT_CRASHPOINTS,
    COMMITTED_FROM,
    commit_lock,
    database_path,
    read_text_lock,
    recover_interrupted,
    render_text_lock,
    root_digest,
)


def make_series(uid: str, patient: str = "P1", images: int = 2) -> LockedSeries:
    return LockedSeries(
        series_uid=uid,
        collection="COLL",
        patient_id=patient,
        study_uid="1.2.3",
        modality="CT",
        description='CHEST "W/O" contrast',
        series_number="2",
        body_part="CHEST",
        manufacturer="ACME",
        image_count=images,
        bytes=1000 * images,
        series_hash="ab" * 16,
        released="2020-01-02",
        max_submission="2020-01-01T10:00:00",
        license_name="CC BY 4.0",
        license_url="https://creativecommons.org/licenses/by/4.0/",
        doi="https://doi.org/10.7937/X",
        third_party=False,
        images_pinned=True,
    )


SERIES = [make_series("1.2.3.9", "P2"), make_series("1.2.3.4"), make_series("1.2.3.5")]
IMAGES = [
    LockedImage("1.2.3.4.1", "1.2.3.4", "0" * 32, 1000),
    LockedImage("1.2.3.4.2", "1.2.3.4", "1b6a", None),
    LockedImage("1.2.3.5.1", "1.2.3.5", None, None),
]


def make_header(resolved_at: str = "2026-11-25T06:00:00Z") -> LockHeader:
    return LockHeader(
        format=1,
        name="demo",
        spec_digest="sha256:" + "0" * 64,
        server="public",
        base_url="https://services.cancerimagingarchive.net/nbia-api/services",
        api="v4",
        tool_version="0.1.0",
        resolved_at=resolved_at,
        root_digest=root_digest(SERIES),
        series_count=len(SERIES),
        image_count=6,
        total_bytes=6000,
        series_only=False,
    )


def writer(path: Path) -> None:
    write_lock_database(path, make_header(), '{"name":"demo"}', SERIES, IMAGES, [])


def test_text_lock_is_toml_sorted_and_deterministic() -> None:
    text = render_text_lock(make_header(), '{"name":"demo"}', SERIES)
    assert text == render_text_lock(make_header(), '{"name":"demo"}', list(reversed(SERIES)))
    data = tomllib.loads(text)
    assert data["lock"]["root-digest"] == root_digest(SERIES)
    assert [s["uid"] for s in data["dataset"]["series"]] == ["1.2.3.4", "1.2.3.5", "1.2.3.9"]
    series_lines = [line for line in text.splitlines() if line.startswith("  { uid")]
    assert len(series_lines) == 3  # one line per series, so git diffs name the series


def test_root_digest_commits_to_series_hashes_and_ignores_metadata() -> None:
    changed_hash = [dataclasses.replace(SERIES[0], series_hash="cd" * 16), *SERIES[1:]]
    relicensed = [dataclasses.replace(SERIES[0], license_name="other"), *SERIES[1:]]
    assert root_digest(changed_hash) != root_digest(SERIES)
    assert root_digest(relicensed) == root_digest(SERIES)
    assert root_digest(reversed(SERIES)) == root_digest(SERIES)


def test_root_digest_vector() -> None:
    # The root digest is what a paper cites: its formula must never drift. From coreutils:
    #   h=abababababababababababababababab
    #   printf '%s\n' "1.2.3.4 $h 2" "1.2.3.5 $h 2" "1.2.3.9 $h 2" | sha256sum
    expected = "23ea3b889a360f6645f7c968c273077b0a18c12ca6d3698da6dcbc4220c9e094"
    assert root_digest(SERIES) == "sha256:" + expected


def test_read_text_lock_round_trips_the_header(tmp_path: Path) -> None:
    path = tmp_path / "d.lock"
    path.write_text(render_text_lock(make_header(), "{}", SERIES))
    lock = read_text_lock(path)
    assert lock.header == make_header()
    assert len(lock.series) == 3


@pytest.mark.parametrize("newer", [LOCK_FORMAT + 1, 99])
def test_newer_text_lock_format_is_refused(tmp_path: Path, newer: int) -> None:
    path = tmp_path / "d.lock"
    path.write_text(
        render_text_lock(dataclasses.replace(make_header(), format=newer), "{}", SERIES)
    )
    with pytest.raises(LockFormatTooNew, match="upgrade"):
        read_text_lock(path)


def test_missing_and_garbage_text_locks(tmp_path: Path) -> None:
    with pytest.raises(LockNotFound):
        read_text_lock(tmp_path / "none.lock")
    bad = tmp_path / "bad.lock"
    bad.write_text("[lock\n")
    with pytest.raises(StoreError, match="not a readable"):
        read_text_lock(bad)


def test_database_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "d.lock.db"
    node = HashNode("study", "1.2.3", "ef" * 16, "ef" * 16, True)
    write_lock_database(path, make_header(), '{"a":1}', SERIES, IMAGES, [node])
    with LockDatabase(path) as db:
        assert db.header() == make_header()
        assert db.spec_json() == '{"a":1}'
        assert [s.series_uid for s in db.series()] == ["1.2.3.4", "1.2.3.5", "1.2.3.9"]
        assert list(db.images("1.2.3.4")) == IMAGES[:2]
        assert list(db.images())[2].archive_md5 is None  # NULL survives
        assert list(db.nodes()) == [node]
        assert db.integrity_ok()


def test_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.lock.db"
    writer(path)
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES (?, ?, ?)",
        ("nbia-audit-lock", "m999_future", "2030-01-01"),
    )
    conn.commit()
    conn.close()
    with pytest.raises(LockFormatTooNew, match="newer nbia-audit"):
        LockDatabase(path)


def test_not_a_lock_database(tmp_path: Path) -> None:
    with pytest.raises(LockNotFound):
        LockDatabase(tmp_path / "absent.db")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(StoreError, match="not an nbia-audit lock database"):
        LockDatabase(other)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StoreError):
        LockDatabase(junk)


def test_commit_replaces_both_files_and_leaves_no_temporaries(tmp_path: Path) -> None:
    lock = tmp_path / "d.lock"
    commit_lock(lock, "first\n", writer)
    commit_lock(lock, render_text_lock(make_header(), "{}", SERIES), writer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.lock", "d.lock.db"]
    assert LockDatabase(database_path(lock)).integrity_ok()


def test_failed_database_write_leaves_previous_lock_untouched(tmp_path: Path) -> None:
    lock = tmp_path / "d.lock"
    commit_lock(lock, render_text_lock(make_header(), "{}", SERIES), writer)
    before = (lock.read_bytes(), database_path(lock).read_bytes())

    def failing(path: Path) -> None:
        path.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(StoreError, match="No space left on device"):
        commit_lock(lock, "new text\n", failing)
    assert (lock.read_bytes(), database_path(lock).read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.lock", "d.lock.db"]


def test_recovery_rolls_back_when_text_did_not_land(tmp_path: Path) -> None:
    lock = tmp_path / "d.lock"
    old_header = make_header("2026-01-01T00:00:00Z")
    old_text = render_text_lock(old_header, "{}", SERIES)
    commit_lock(
        lock,
        old_text,
        lambda p: write_lock_database(p, old_header, "{}", SERIES, IMAGES, []),
    )
    old_db = database_path(lock).read_bytes()
    # Simulate a crash right after the new database was renamed into place.
    os.link(database_path(lock), tmp_path / "d.lock.db.old")
    database_path(lock).unlink()
    writer(database_path(lock))
    recover_interrupted(lock)
    assert database_path(lock).read_bytes() == old_db
    assert not (tmp_path / "d.lock.db.old").exists()


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {root!r})
    import tests.store.test_lockfile as t
    from nbia_audit.crashpoints import crashpoint
    from nbia_audit.store.textlock import commit_lock, render_text_lock
    from nbia_audit.store.database import write_lock_database

    lock = Path(sys.argv[1])
    header = t.make_header("2026-11-25T06:00:59Z")
    def write(path):
        path.write_bytes(b"SQLite format 3\\x00 half a database")
        crashpoint("test:database-half-written")
        path.unlink()
        write_lock_database(path, header, "{{}}", t.SERIES, t.IMAGES, [])
    commit_lock(lock, render_text_lock(header, "{{}}", t.SERIES), write)
    """
)


@pytest.mark.parametrize("point", ("test:database-half-written", *COMMIT_CRASHPOINTS))
def test_sigkill_at_each_commit_point_leaves_a_consistent_pair(tmp_path: Path, point: str) -> None:
    # The process kills itself at one named point of commit_lock (no sleep-then-kill: every
    # point is reached however slow the machine is). Before the text lock's rename the old
    # pair must be in force after recovery, from it on the new pair, never a mix.
    lock = tmp_path / "d.lock"
    old = make_header()
    commit_lock(lock, render_text_lock(old, "{}", SERIES), writer)
    script = KILL_SCRIPT.format(root=str(Path(__file__).resolve().parents[2]))
    env = {**os.environ, CRASHPOINT_ENV: point}
    proc = subprocess.run([sys.executable, "-c", script, str(lock)], env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    recover_interrupted(lock)
    text = read_text_lock(lock)
    with LockDatabase(database_path(lock)) as db:
        assert db.integrity_ok()
        assert db.header() == text.header  # never an old text with a new database
    committed = point in COMMIT_CRASHPOINTS and COMMIT_CRASHPOINTS.index(
        point
    ) >= COMMIT_CRASHPOINTS.index(COMMITTED_FROM)
    assert (text.header == old) != committed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.lock", "d.lock.db"]


def test_recovery_waits_for_a_commit_in_progress(tmp_path: Path) -> None:
    from nbia_audit.store.textlock import _pair_guard

    lock = tmp_path / "d.lock"
    commit_lock(lock, render_text_lock(make_header(), "{}", SERIES), writer)
    script = (
        "import sys; from pathlib import Path;"
        " from nbia_audit.store.textlock import recover_interrupted;"
        " recover_interrupted(Path(sys.argv[1]))"
    )
    with _pair_guard(lock):  # as a commit holds it while it writes and renames
        lock.with_name("d.lock.new").write_text("half written")  # what that commit has so far
        waiting = subprocess.Popen([sys.executable, "-c", script, str(lock)])
        time.sleep(0.5)
        assert waiting.poll() is None  # the other process waits for the guard
    assert waiting.wait(timeout=30) == 0


def test_an_unstamped_old_database_is_rolled_back_to(tmp_path: Path) -> None:
    lock = tmp_path / "d.lock"
    old_text = render_text_lock(make_header("2026-01-01T00:00:00Z"), "{}", SERIES)
    lock.write_text(old_text)
    writer(tmp_path / "d.lock.db.old")  # an old database from before the identity stamp
    writer(database_path(lock))  # the new one, renamed in before the text was
    conn = sqlite3.connect(database_path(lock))
    conn.execute("INSERT INTO meta VALUES ('text_sha256', 'not-the-old-text')")
    conn.commit()
    conn.close()
    recover_interrupted(lock)
    assert not (tmp_path / "d.lock.db.old").exists()
    with LockDatabase(database_path(lock)) as db:
        assert "text_sha256" not in {r["key"] for r in db.db.table("meta").rows}


def consistent_text(series: list[LockedSeries], **header_changes: object) -> str:
    """A text lock whose root digest and totals agree with ``series``: only the check that
    an edit targets can refuse it."""
    header = dataclasses.replace(
        make_header(),
        root_digest=root_digest(series),
        series_count=len(series),
        image_count=sum(s.image_count for s in series),
        total_bytes=sum(s.bytes for s in series),
    )
    return render_text_lock(dataclasses.replace(header, **header_changes), "{}", series)  # type: ignore[arg-type]


def with_line_edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


EDITED_TEXT_LOCKS = {
    "series-count": (consistent_text(SERIES, series_count=4), "series-count is 4"),
    "image-count": (consistent_text(SERIES, image_count=7), "image-count is 7"),
    "total-bytes": (consistent_text(SERIES, total_bytes=1), "total-bytes is 1"),
    "series-pinned-twice": (
        consistent_text([*SERIES, SERIES[0]]),
        "series 1.2.3.9 is pinned twice",
    ),
    "upper-case-series-hash": (
        consistent_text([dataclasses.replace(SERIES[0], series_hash="AB" * 16), *SERIES[1:]]),
        "not an NBIA series hash",
    ),
    "negative-image-count": (
        consistent_text([dataclasses.replace(SERIES[0], image_count=-1), *SERIES[1:]]),
        "must be a whole number",
    ),
    "empty-uid": (
        consistent_text([dataclasses.replace(SERIES[0], series_uid=""), *SERIES[1:]]),
        "has an empty uid",
    ),
    "unknown-header-key": (
        with_line_edit(consistent_text(SERIES), "\napi = ", '\nmirror = "x"\napi = '),
        "has a key this version does not write: mirror",
    ),
    "extra-series-field": (
        with_line_edit(
            consistent_text(SERIES), 'uid = "1.2.3.4", ', 'uid = "1.2.3.4", mirror = "x", '
        ),
        "series entry 1 does not have exactly the fields",
    ),
    "lone-surrogate-escape": (
        with_line_edit(
            consistent_text(SERIES), 'uid = "1.2.3.4", ', 'uid = "1.2.3.4\\uD835", '
        ),
        "not a readable nbia-audit lock",
    ),
}


@pytest.mark.parametrize("case", sorted(EDITED_TEXT_LOCKS))
def test_a_self_consistent_edit_of_the_text_lock_is_refused_by_its_own_check(
    tmp_path: Path, case: str
) -> None:
    text, message = EDITED_TEXT_LOCKS[case]
    path = tmp_path / "d.lock"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(StoreError, match=re.escape(message)):
        read_text_lock(path)
