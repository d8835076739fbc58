"""`nbia-audit fetch --merge RUN` against a destination changed since its shards ran, and
against run folders holding files no shard of this run wrote: a file gone or changed makes
its series failed (exit 1) and is never recorded; a file with another spelling of a shard's
name, another schema or malformed contents is refused by name in one line (exit 3), never
merged and never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nbia_audit.cli.common import ExitCode
from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.shards import assign_series
from nbia_audit.store.statefolder import STATE_DIR
from nbia_audit.store.textlock import read_text_lock
from tests.support.cli import run_cli
from tests.support.fetch import classic_paths, make_lock, state_paths, tree

SPEC = CorpusSpec(seed=21, collections=1, patients=2, studies=1, series=2, images=2)


def run(*args: object) -> tuple[int, str, str]:
    result = run_cli("fetch", *args)
    return result.exit_code, result.stdout, result.stderr


def shard_of(lock: Path, path: str) -> int:
    """The shard (of 2) that places ``path`` (classic layout: its fourth part is the series)."""
    series = read_text_lock(lock).series
    return assign_series(((s.series_uid, s.bytes) for s in series), 2)[path.split("/")[3]]


def test_a_file_gone_or_changed_since_its_shard_fails_its_series_and_is_not_recorded(
    tmp_path: Path, emu: Emulator
) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    dest, run_dir = tmp_path / "data", tmp_path / "run"
    for index in (1, 2):
        assert run(lock, "--dest", dest, "--shard", f"{index}/2", "--shard-dir", run_dir)[0] == 0
    by_shard = {k: [p for p in sorted(tree(dest)) if shard_of(lock, p) == k] for k in (1, 2)}
    gone, changed = by_shard[1][0], by_shard[2][0]
    (dest / gone).unlink()
    stamp = os.stat(dest / changed).st_mtime_ns
    os.utime(dest / changed, ns=(stamp, stamp + 1_000_000_000))  # same bytes, not the same file
    code, out, err = run(lock, "--dest", dest, "--merge", run_dir)
    assert code == ExitCode.FINDINGS, err
    assert "2 failed." in out
    assert f"{gone}: gone" in err and f"{changed}: changed" in err
    assert "--shard 1/2 --shard-dir" in err and "--shard 2/2 --shard-dir" in err
    assert "Could not verify 2 series (run their shards again, then merge again):" in err
    # Only what is still in place was recorded.
    assert state_paths(dest) == {p: m for p, m in classic_paths(emu).items() if p != changed
                                 and p != gone}  # fmt: skip
    # What the message says to do works: run those shards again, merge again.
    for index in (1, 2):
        assert run(lock, "--dest", dest, "--shard", f"{index}/2", "--shard-dir", run_dir)[0] == 0
    code, out, err = run(lock, "--dest", dest, "--merge", run_dir)
    assert code == ExitCode.CLEAN, err
    assert "0 failed." in out
    assert state_paths(dest) == tree(dest) == classic_paths(emu)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    """A lock, its destination, and a run folder with both shards of a finished fetch; the
    tests below copy the run folder and merge the copy (which they spoil) into the
    destination, so nothing is fetched twice."""
    base = tmp_path_factory.mktemp("finished")
    with Emulator.from_spec(SPEC) as emu:
        lock = make_lock(base / "lock", emu)
        dest, run_dir = base / "data", base / "run"
        for index in (1, 2):
            code, _, err = run(lock, "--dest", dest, "--shard", f"{index}/2", "--shard-dir",
                               run_dir, "-q")  # fmt: skip
            assert code == ExitCode.CLEAN, err
        yield lock, dest, run_dir


def spoiled_run(tmp_path: Path, run_dir: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


def assert_refused(lock: Path, dest: Path, run_dir: Path, *names: str) -> str:
    state = dest / STATE_DIR / "state.db"
    before = state.read_bytes() if state.exists() else None
    code, out, err = run(lock, "--dest", dest, "--merge", run_dir)
    assert code == ExitCode.ENVIRONMENT, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert "refused" in err and all(name in err for name in names), err
    assert "Fetched" not in out
    assert (state.read_bytes() if state.exists() else None) == before  # nothing recorded
    return err


@pytest.mark.parametrize(
    ("spelling", "words"),
    [
        ("fetch-01-of-2.db", "no leading zeros"),
        ("fetch-1-of-02.db", "no leading zeros"),
        ("fetch-\u0661-of-2.db", "ASCII digits"),  # ARABIC-INDIC DIGIT ONE
        ("fetch-\uff11-of-2.db", "ASCII digits"),  # FULLWIDTH DIGIT ONE
        ("fetch-3-of-2.db", "shard 3/2 does not exist"),
        ("fetch-1-of-0.db", "shard count 0 is out of range"),
    ],
)
def test_another_spelling_of_a_shards_name_is_refused(
    tmp_path: Path, finished: tuple[Path, Path, Path], spelling: str, words: str
) -> None:
    lock, dest, run_dir = finished
    copy = spoiled_run(tmp_path, run_dir)
    shutil.copy(copy / "fetch-1-of-2.db", copy / spelling)  # a second file for shard 1
    err = assert_refused(lock, dest, copy, repr(spelling))
    assert words in err


def sql(*statements: str) -> Callable[[Path], None]:
    def spoil(path: Path) -> None:
        conn = sqlite3.connect(path)
        try:
            for statement in statements:
                conn.execute(statement)
            conn.commit()
        finally:
            conn.close()

    return spoil


def meta(key: str, value: object) -> Callable[[Path], None]:
    if value is None:
        return sql(f"DELETE FROM shard WHERE key = '{key}'")
    return sql(f"UPDATE shard SET value = '{json.dumps(value)}' WHERE key = '{key}'")


def a_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def garbage(path: Path) -> None:
    path.write_bytes(b"not a database at all" * 100)


SPOILERS: dict[str, Callable[[Path], None]] = {
    "a view": sql("CREATE VIEW everything AS SELECT * FROM files"),
    "a trigger": sql("CREATE TRIGGER t AFTER INSERT ON pins BEGIN SELECT 1; END"),
    "an extra table": sql("CREATE TABLE extra (x)"),
    "outcomes as a view": sql(
        "CREATE TABLE o2 AS SELECT * FROM outcomes",
        "DROP TABLE outcomes",
        "CREATE VIEW outcomes AS SELECT * FROM o2",
    ),  # fmt: skip
    "no files table": sql("DROP TABLE files"),
    "no outcomes table": sql("DROP TABLE outcomes"),
    "no pins table": sql("DROP TABLE pins"),
    "a column less": sql("ALTER TABLE files DROP COLUMN checked_at"),
    "no identity": meta("identity", None),
    "identity a list": meta("identity", [1, 2]),
    "identity without dest": sql(
        "UPDATE shard SET value = json_remove(value, '$.dest') WHERE key = 'identity'"
    ),
    "count as text": sql(
        "UPDATE shard SET value = json_set(value, '$.count', '2') WHERE key = 'identity'"
    ),
    "no bytes_received": meta("bytes_received", None),
    "bytes_received as text": meta("bytes_received", "12"),
    "index a bool": meta("index", True),
    "no seconds": meta("seconds", None),
    "an extra key": sql("INSERT INTO shard VALUES ('extra', '1')"),
    "shard table not JSON": sql("UPDATE shard SET value = 'x' WHERE key = 'seconds'"),
    "an outcome not JSON": sql("UPDATE outcomes SET outcome = 'x'"),
    "an outcome empty": sql("UPDATE outcomes SET outcome = '{}'"),
    "an outcome of another status": sql(
        "UPDATE outcomes SET outcome = json_set(outcome, '$.status', 'done')"
    ),
    "an outcome's images as text": sql(
        "UPDATE outcomes SET outcome = json_set(outcome, '$.images', '2')"
    ),
    "an outcome of another shard's series": sql(
        "UPDATE outcomes SET series_uid = series_uid || '.9', "
        "outcome = json_set(outcome, '$.series_uid', json_extract(outcome, '$.series_uid') || '.9')"
    ),
    "a folder": a_folder,
    "not a database": garbage,
}


@pytest.mark.parametrize("case", sorted(SPOILERS))
def test_a_malformed_shard_file_is_refused_in_one_line(
    tmp_path: Path, finished: tuple[Path, Path, Path], case: str
) -> None:
    lock, dest, run_dir = finished
    copy = spoiled_run(tmp_path, run_dir)
    SPOILERS[case](copy / "fetch-1-of-2.db")
    assert_refused(lock, dest, copy, "fetch-1-of-2.db")


def test_the_unspoiled_run_merges_clean(finished: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """The control for the cases above (last: it records into the shared destination)."""
    lock, dest, run_dir = finished
    code, out, err = run(lock, "--dest", dest, "--merge", spoiled_run(tmp_path, run_dir))
    assert code == ExitCode.CLEAN, err
    assert "0 failed." in out


def test_a_shard_file_damaged_past_its_schema_stops_the_merge_in_one_line(
    tmp_path: Path, finished: tuple[Path, Path, Path]
) -> None:
    """The schema, facts and outcomes read well; the page of its records does not (a disk or
    copy error): a one-line error naming the file, exit 3."""
    lock, dest, run_dir = finished
    copy = spoiled_run(tmp_path, run_dir)
    shard = copy / "fetch-1-of-2.db"
    conn = sqlite3.connect(shard)
    try:
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'files'").fetchone()
    finally:
        conn.close()
    with shard.open("r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(b"\xff" * page_size)
    code, out, err = run(lock, "--dest", dest, "--merge", copy)
    assert code == ExitCode.ENVIRONMENT, (out, err)
    assert len(err.strip().splitlines()) == 1 and str(shard) in err, err
    assert "cannot read the shard's file" in err and "Fetched" not in out
