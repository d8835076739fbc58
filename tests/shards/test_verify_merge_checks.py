"""`verify --merge` refuses what cannot stand for one run of the copy as it is now.

Red-team findings (issue 14): a stale shard over a changed copy, a path no shard owns (the
state changed between shards), another copy at the same path, shard names in other
spellings, shard files with another schema, malformed shard files. Every refusal is exit 3
in one line, never a verdict and never a traceback. Real shard runs over a real copy.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nbia_audit.cli.common import ExitCode
from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.shards import shard_of_path
from tests.support.cli import run_cli
from tests.support.verify import (
    backdate,
    download_all,
    flip_bit_keep_mtime,
    image_files,
    make_lock,
    materialise,
)

SPEC = CorpusSpec(seed=15, collections=1, patients=2, studies=1, series=2, images=2)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    base = tmp_path_factory.mktemp("mergechecks")
    with Emulator.from_spec(SPEC) as emu:
        lock = make_lock(base / "lock", emu)
        root = base / "copy"
        materialise(emu, download_all(emu, base / "zips"), root, "ours")
        backdate(root)
    yield lock, root


def run(*args: object) -> tuple[int, str, str]:
    result = run_cli("verify", *args)
    return result.exit_code, result.stdout, result.stderr


def shard(lock: Path, root: Path, run_dir: Path, index: int, count: int = 2) -> None:
    code, _, err = run(lock, root, "--shard", f"{index}/{count}", "--shard-dir", run_dir)
    assert code == ExitCode.CLEAN, err


def merge(lock: Path, root: Path, run_dir: Path) -> tuple[int, str, str]:
    return run(lock, root, "--merge", run_dir, "--format", "json")


def refused(result: tuple[int, str, str], *words: str) -> None:
    code, out, err = result
    assert code == ExitCode.ENVIRONMENT, err
    assert out == ""  # nothing that could read as a verdict
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, (word, err)


def walked_by(run_dir: Path, index: int, count: int = 2) -> list[str]:
    conn = sqlite3.connect(run_dir / f"verify-{index}-of-{count}.db")
    try:
        return [p for (p,) in conn.execute("SELECT path FROM walked") if p.endswith(".dcm")]
    finally:
        conn.close()


@pytest.fixture
def copy(made: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path, Path]:
    lock, pristine = made
    root = tmp_path / "copy"
    shutil.copytree(pristine, root)
    return lock, root, tmp_path / "run"


# -- F1: a stale shard is true of an unchanged copy, refused over a changed one ----------------


def test_a_stale_shard_merges_while_the_copy_is_unchanged(copy: tuple[Path, Path, Path]) -> None:
    lock, root, run_dir = copy
    shard(lock, root, run_dir, 1)
    shard(lock, root, run_dir, 2)
    shard(lock, root, run_dir, 1)  # run again: shard 2's file is now the older
    code, _, err = merge(lock, root, run_dir)
    assert code == ExitCode.CLEAN, err


def test_a_stale_shard_over_a_changed_copy_is_refused_naming_it(
    copy: tuple[Path, Path, Path],
) -> None:
    lock, root, run_dir = copy
    shard(lock, root, run_dir, 1)
    shard(lock, root, run_dir, 2)
    victim = walked_by(run_dir, 2)[0]
    flip_bit_keep_mtime(root / victim)  # the copy is damaged after shard 2 ran
    shard(lock, root, run_dir, 1)  # only shard 1 runs again
    refused(merge(lock, root, run_dir), victim, "changed since shard 2/2", "run shard 2/2")


@pytest.mark.parametrize("change", ["added", "removed", "now a FIFO"])
def test_a_copy_changed_after_the_shards_is_refused(
    copy: tuple[Path, Path, Path], change: str
) -> None:
    lock, root, run_dir = copy
    shard(lock, root, run_dir, 1)
    shard(lock, root, run_dir, 2)
    victim = next(image_files(root))
    rel = victim.relative_to(root).as_posix()
    if change == "added":
        shutil.copy(victim, victim.parent / "extra.dcm")
        words: tuple[str, ...] = ("extra.dcm", "is in no shard", "run every shard")
    elif change == "removed":
        victim.unlink()
        words = (rel, "is gone since")
    else:
        victim.unlink()
        os.mkfifo(victim)
        words = (rel, "blocked since")
    refused(merge(lock, root, run_dir), *words)


# -- F4: the state changed between two shards: a file owned by no shard -----------------------


def test_a_file_no_shard_owned_is_refused(copy: tuple[Path, Path, Path]) -> None:
    lock, root, run_dir = copy
    shard(lock, root, run_dir, 1)
    # Between the shards a file appears that shard 1 owns (by its path: no record knows it):
    # shard 1 never saw it, shard 2 passes it over. Walked by no shard.
    source = next(image_files(root))
    rel = next(
        r
        for r in (f"{source.parent.relative_to(root).as_posix()}/dup-{i}.dcm" for i in range(99))
        if shard_of_path(r, 2) == 1
    )
    shutil.copy(source, root / rel)
    shard(lock, root, run_dir, 2)
    assert rel not in walked_by(run_dir, 1) + walked_by(run_dir, 2)
    refused(merge(lock, root, run_dir), rel, "is in no shard")


def test_a_path_two_shards_walked_is_refused(copy: tuple[Path, Path, Path]) -> None:
    lock, root, run_dir = copy
    shard(lock, root, run_dir, 1)
    shard(lock, root, run_dir, 2)
    theirs = walked_by(run_dir, 2)[0]
    conn = sqlite3.connect(run_dir / "verify-1-of-2.db")
    other = sqlite3.connect(run_dir / "verify-2-of-2.db")
    row = other.execute("SELECT * FROM walked WHERE path = ?", (theirs,)).fetchone()
    other.close()
    with conn:
        conn.execute("INSERT INTO walked VALUES (?, ?, ?, ?, ?, ?)", row)
    conn.close()
    refused(merge(lock, root, run_dir), theirs, "walked by both")


# -- F8: another copy at the same path -----------------------------------------------------------


def test_a_shard_of_another_copy_at_the_same_path_is_refused(
    copy: tuple[Path, Path, Path],
) -> None:
    lock, root, run_dir = copy
    shard(lock, root, run_dir, 1)
    shard(lock, root, run_dir, 2)
    # Another copy now answers to the path (another mount, another node's scratch disk).
    root.rename(root.with_name("first"))
    shutil.copytree(root.with_name("first"), root)
    refused(merge(lock, root, run_dir), "another copy", "another file system or folder")


# -- F2: one spelling of a shard's name -----------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["verify-01-of-2.db", "verify-\u0661-of-2.db", "verify-1-of-02.db"]
)
def test_a_shard_named_in_another_spelling_is_refused(
    copy: tuple[Path, Path, Path], name: str
) -> None:
    lock, root, run_dir = copy
    shard(lock, root, run_dir, 1)
    shard(lock, root, run_dir, 2)
    # A second file for shard 1 (an older run's, say) beside the genuine one.
    shutil.copy(run_dir / "verify-1-of-2.db", run_dir / name)
    refused(merge(lock, root, run_dir), repr(name), "not a shard file name")


# -- F3 and malformed files: only the schema nbia-audit writes; one line, never a traceback ----


def _sql(*statements: str) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        conn = sqlite3.connect(path)
        with conn:
            for statement in statements:
                conn.execute(statement)
        conn.close()

    return edit


def _as_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _garbage(path: Path) -> None:
    path.write_bytes(b"SQLite format 3\x00" + bytes(100))


MALFORMED: dict[str, tuple[Callable[[Path], None], str]] = {
    "a view for a table": (
        _sql("DROP TABLE strays", "CREATE VIEW strays AS SELECT 'x' AS finding WHERE 0"),
        "tables are not those nbia-audit writes",
    ),
    "a trigger": (
        _sql("CREATE TRIGGER t AFTER INSERT ON walked BEGIN SELECT 1; END"),
        "tables are not those nbia-audit writes",
    ),
    "a table missing": (_sql("DROP TABLE placed"), "tables are not those nbia-audit writes"),
    "a column missing": (
        _sql("ALTER TABLE files DROP COLUMN checked_at"),  # was a traceback in record_rows
        "tables are not those nbia-audit writes",
    ),
    "no shard table rows": (_sql("DELETE FROM shard"), "not a verify shard's file"),
    "wrong types": (
        _sql("UPDATE shard SET value = '\"x\"' WHERE key = 'files'"),
        "not a complete verify shard's file",
    ),
    "a folder": (_as_folder, "not a regular file"),
    "not a database": (_garbage, "not a readable shard file"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_shard_file_is_refused_in_one_line(
    copy: tuple[Path, Path, Path], case: str
) -> None:
    lock, root, run_dir = copy
    shard(lock, root, run_dir, 1)
    shard(lock, root, run_dir, 2)
    edit, words = MALFORMED[case]
    edit(run_dir / "verify-2-of-2.db")
    refused(merge(lock, root, run_dir), "verify-2-of-2.db", words)
