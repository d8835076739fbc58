"""The local state database: records survive reopening, are replaced per path, refuse newer."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from nbia_audit.errors import LockFormatTooNew
from nbia_audit.store.localstate import FileRecord, LocalState, stat_key


def record(path: str, md5: str = "a" * 32) -> FileRecord:
    return FileRecord(path, "1.2.3." + path, "1.2", 1, 2, 3, 4, 5, md5, "b" * 32,
                      "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "sha256:x")  # fmt: skip


def test_records_round_trip_and_upsert(tmp_path: Path) -> None:
    with LocalState(tmp_path) as state:
        state.upsert([record("b.dcm"), record("a.dcm")])
        state.upsert([record("a.dcm", md5="c" * 32)])
    with LocalState(tmp_path) as state:
        assert [r.path for r in state.records()] == ["a.dcm", "b.dcm"]
        got = state.get("a.dcm")
        assert got is not None and got.md5 == "c" * 32
        state.forget(["a.dcm"])
        assert state.get("a.dcm") is None
    assert (tmp_path / ".nbia-audit" / "state.db").is_file()


def test_concurrent_writers_are_serialised(tmp_path: Path) -> None:
    with LocalState(tmp_path) as state:
        threads = [
            threading.Thread(target=state.upsert, args=([record(f"{t}-{i}") for i in range(50)],))
            for t in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(list(state.records())) == 400


def test_newer_state_database_is_refused(tmp_path: Path) -> None:
    LocalState(tmp_path).close()
    conn = sqlite3.connect(tmp_path / ".nbia-audit" / "state.db")
    conn.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES (?, ?, ?)",
        ("nbia-audit-state", "m999", "2030-01-01"),
    )
    conn.commit()
    conn.close()
    with pytest.raises(LockFormatTooNew, match="newer nbia-audit"):
        LocalState(tmp_path)


def test_stat_key_changes_when_the_file_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"one")
    before = stat_key(path)
    path.write_bytes(b"two!")
    assert stat_key(path) != before


def test_a_half_made_state_database_is_completed_not_refused(tmp_path: Path) -> None:
    """A run killed while creating the state database leaves its migrations table and no
    more; the next run completes it (a shape check that refused it lost a soak's fetch)."""
    import sqlite3

    import sqlite_utils

    from nbia_audit.store.localstate import state_migrations

    (tmp_path / ".nbia-audit").mkdir()
    conn = sqlite3.connect(tmp_path / ".nbia-audit" / "state.db")
    state_migrations.ensure_migrations_table(sqlite_utils.Database(conn))
    conn.commit()
    conn.close()
    with LocalState(tmp_path) as state:
        assert list(state.records()) == []


def test_the_state_database_uses_a_rollback_journal_and_converts_a_wal_one(
    tmp_path: Path,
) -> None:
    """WAL needs a shared-memory index that NFS, Lustre and GPFS clients cannot share: the
    state database keeps a rollback journal, and one an older release left in WAL mode is
    converted when it is opened."""
    folder = tmp_path / ".nbia-audit"
    folder.mkdir()
    old = sqlite3.connect(folder / "state.db")
    assert old.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
    old.close()
    with LocalState(tmp_path) as state:
        state.upsert([record("a.dcm")])
        assert state.db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert not (folder / "state.db-wal").exists()
    conn = sqlite3.connect(folder / "state.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


def test_a_state_database_of_format_1_is_migrated_and_its_records_hashed_once(
    tmp_path: Path,
) -> None:
    """Format 1 keyed records by st_dev ("device"); format 2 by the file system's identity
    (fs_id). A format-1 record has none, so it is never trusted (fs -1): re-hashed once."""
    import sqlite_utils

    from nbia_audit.store.localstate import m001_files, state_migrations

    (tmp_path / ".nbia-audit").mkdir()
    conn = sqlite3.connect(tmp_path / ".nbia-audit" / "state.db")
    db = sqlite_utils.Database(conn)
    state_migrations.ensure_migrations_table(db)
    m001_files(db)
    db["_sqlite_migrations"].insert(
        {"migration_set": "nbia-audit-state", "name": "m001_files", "applied_at": "2026-01-01"}
    )
    conn.execute(
        "INSERT INTO files (path, sop_uid, series_uid, device, inode, size, mtime_ns, ctime_ns,"
        " md5, xxh3_128, verified_at, checked_at, lock_root)"
        " VALUES ('a.dcm', '1.2.3', '1.2', 65024, 2, 3, 4, 5, ?, '', 't', 't', 'sha256:x')",
        ("a" * 32,),
    )
    conn.commit()
    conn.close()
    with LocalState(tmp_path) as state:
        old = state.get("a.dcm")
        assert old is not None and old.fs_id == -1 and old.md5 == "a" * 32
        state.upsert([record("b.dcm")])
        assert [r.fs_id for r in state.records()] == [-1, 1]
