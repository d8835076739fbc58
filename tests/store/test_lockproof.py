"""The lock pair proves itself: no single edit of it lets any verb exit 0 or say clean.

A real lock of the emulator, a real fetched copy, then one edit of the pair per case (of the
database: an image MD5, a series hash, the stamp, a deleted or added row, metadata beyond the
text lock, another lock's database; of the text: cut short, a line edited or deleted) and every
verb run on the command line against it: verify at every level, report --verify, drift,
lock --check --offline and fetch. Each must exit non-zero and never print a clean verdict.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nbia_audit.archive.view import ArchiveView
from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.errors import LockNotFound, StoreError
from nbia_audit.lock.run import lock_dataset
from nbia_audit.store.reader import LockProofError, read_lock
from nbia_audit.store.textlock import database_path, read_text_lock
from tests.support.cli import run_cli
from tests.support.verify import client_for

SPEC = CorpusSpec(seed=23, collections=2, patients=2, studies=1, series=2, images=3)


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator.from_spec(SPEC) as running:
        yield running


def _lock(
    emu: Emulator, workdir: Path, collections: list[str], *, series_only: bool = False
) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    select = "".join(f"  - collection: {c}\n" for c in collections)
    spec = workdir / "dataset.yaml"
    spec.write_text(f"name: t\nserver: {emu.base_url}\nselect:\n{select}", encoding="utf-8")
    with client_for(emu) as client:
        return lock_dataset(spec, ArchiveView(client), series_only=series_only).lock_path


@pytest.fixture(scope="module")
def original(emu: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _lock(
        emu, tmp_path_factory.mktemp("orig"), sorted(c.name for c in emu.corpus.collections)
    )


@pytest.fixture(scope="module")
def other(emu: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another lock of the same archive (one collection only)."""
    return _lock(emu, tmp_path_factory.mktemp("other"), [emu.corpus.collections[0].name])


@pytest.fixture(scope="module")
def copy(original: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("copy") / "data"
    result = run_cli("fetch", str(original), "--dest", str(dest), "-q")
    assert result.exit_code == 0, result.output
    return dest


def pair_in(src_lock: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("dataset.yaml", "dataset.lock", "dataset.lock.db"):
        shutil.copy2(src_lock.with_name(name), dest / name)
    return dest / "dataset.lock"


def sql(lock: Path, statement: str, *args: object) -> None:
    conn = sqlite3.connect(database_path(lock))
    try:
        with conn:
            conn.execute("PRAGMA foreign_keys = OFF")
            assert conn.execute(statement, args).rowcount != 0, statement
    finally:
        conn.close()


def first_image(lock: Path) -> tuple[str, str]:
    conn = sqlite3.connect(database_path(lock))
    try:
        layout1 = "series_key" not in {r[1] for r in conn.execute("PRAGMA table_info(images)")}
        row = conn.execute(
            "SELECT sop_uid, series_uid FROM images ORDER BY sop_uid"
            if layout1
            else "SELECT sop_uid, series_uid FROM images JOIN series USING (series_key)"
            " ORDER BY sop_uid"
        ).fetchone()
    finally:
        conn.close()
    return str(row[0]), str(row[1])


def edit_text(lock: Path, change: Callable[[str], str]) -> None:
    text = lock.read_text(encoding="utf-8")
    changed = change(text)
    assert changed != text
    lock.write_text(changed, encoding="utf-8")


def _series_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("  { uid = ")]


Edit = Callable[[Path, Path], None]  # (the lock to edit, another lock's path)

KEY_OF = "(SELECT series_key FROM series WHERE series_uid = ?)"  # a series' number (layout 2)

EDITS: dict[str, Edit] = {
    "db: one image's archive MD5": lambda lock, _o: sql(
        lock, "UPDATE images SET archive_md5 = ? WHERE sop_uid = ?", bytes(16), first_image(lock)[0]
    ),
    "db: one image's archive MD5 as text": lambda lock, _o: sql(
        lock, "UPDATE images SET archive_md5 = ? WHERE sop_uid = ?", "0" * 32, first_image(lock)[0]
    ),
    "db: one image's archive MD5 set to NULL": lambda lock, _o: sql(
        lock, "UPDATE images SET archive_md5 = NULL WHERE sop_uid = ?", first_image(lock)[0]
    ),
    "db: a series hash": lambda lock, _o: sql(
        lock,
        "UPDATE series SET series_hash = ? WHERE series_uid = ?",
        "f" * 32,
        first_image(lock)[1],
    ),
    "db: the images table behind a view of the same rows": lambda lock, _o: _behind_view(lock),
    "db: a trigger added": lambda lock, _o: sql(
        lock, "CREATE TRIGGER t AFTER INSERT ON problems BEGIN DELETE FROM images; END"
    ),
    "db: the stamp set to garbage": lambda lock, _o: sql(
        lock, "UPDATE meta SET value = 'garbage' WHERE key = 'text_sha256'"
    ),
    "db: the stamp deleted": lambda lock, _o: sql(
        lock, "DELETE FROM meta WHERE key = 'text_sha256'"
    ),
    "db: a series row deleted": lambda lock, _o: _delete_series(lock),
    "db: a series row deleted, its images kept": lambda lock, _o: sql(
        lock, "DELETE FROM series WHERE series_uid = ?", first_image(lock)[1]
    ),
    "db: an image row deleted": lambda lock, _o: sql(
        lock, "DELETE FROM images WHERE sop_uid = ?", first_image(lock)[0]
    ),
    "db: an image row added": lambda lock, _o: sql(
        lock,
        f"INSERT INTO images (series_key, sop_uid, archive_md5, size) VALUES ({KEY_OF}, ?, ?, 10)",
        first_image(lock)[1],
        "1.2.3.999",
        bytes.fromhex("a" * 32),
    ),
    "db: an image moved to another series": lambda lock, _o: sql(
        lock,
        "UPDATE images SET series_key = (SELECT series_key FROM series WHERE series_uid ="
        " (SELECT max(series_uid) FROM series)) WHERE sop_uid = ?",
        first_image(lock)[0],
    ),
    "db: a series renumbered away from its images": lambda lock, _o: sql(
        lock, "UPDATE series SET series_key = 9999 WHERE series_uid = ?", first_image(lock)[1]
    ),
    "db: an image renamed to a SOP UID another series pins": lambda lock, _o: sql(
        lock,
        "UPDATE images SET sop_uid = ? WHERE sop_uid = (SELECT min(sop_uid) FROM images"
        f" WHERE series_key != {KEY_OF})",
        first_image(lock)[0],
        first_image(lock)[1],
    ),
    "db: a series marked as pinned by hash only": lambda lock, _o: sql(
        lock, "UPDATE series SET images_pinned = 0 WHERE series_uid = ?", first_image(lock)[1]
    ),
    "db: a series description": lambda lock, _o: sql(
        lock, "UPDATE series SET description = 'edited' WHERE series_uid = ?", first_image(lock)[1]
    ),
    "db: a license's commercial-use flag": lambda lock, _o: sql(
        lock, "UPDATE licenses SET commercial_use = 'YES-EDITED'"
    ),
    "db: a problem added": lambda lock, _o: sql(
        lock, "INSERT INTO problems VALUES (?, 'image-count-mismatch', 'made up')", "1.2.3"
    ),
    "db: a hash node": lambda lock, _o: sql(
        lock, "UPDATE nodes SET archive_hash = ? WHERE rowid = 1", "e" * 32
    ),
    "db: the header's name": lambda lock, _o: sql(
        lock, "UPDATE meta SET value = 'other' WHERE key = 'name'"
    ),
    "db: the embedded spec": lambda lock, _o: sql(
        lock, "UPDATE meta SET value = '{}' WHERE key = 'spec'"
    ),
    "db: another lock's database": lambda lock, other: _copy(
        database_path(other), database_path(lock)
    ),
    "db: not a database at all": lambda lock, _o: database_path(lock).write_bytes(b"junk" * 100),
    "text: cut in the header": lambda lock, _o: lock.write_bytes(lock.read_bytes()[:300]),
    "text: cut in the series list": lambda lock, _o: lock.write_bytes(
        lock.read_bytes()[: len(lock.read_bytes()) * 3 // 4]
    ),
    "text: cut after the last series line": lambda lock, _o: lock.write_bytes(
        lock.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[0] + b"\n"
    ),
    "text: a series hash edited": lambda lock, _o: edit_text(
        lock, lambda t: re.sub(r'hash = "[0-9a-f]{32}"', 'hash = "' + "1" * 32 + '"', t, count=1)
    ),
    "text: a series line deleted": lambda lock, _o: edit_text(
        lock, lambda t: t.replace(_series_lines(t)[0] + "\n", "")
    ),
    "text: a series line deleted and the digest and counts made to agree": lambda lock, _o: (
        _reroot_without_first_series(lock)
    ),
}


def _behind_view(lock: Path) -> None:
    sql(lock, "ALTER TABLE images RENAME TO images_real")
    sql(lock, "CREATE VIEW images AS SELECT * FROM images_real")


def _delete_series(lock: Path) -> None:
    series = first_image(lock)[1]
    sql(lock, f"DELETE FROM images WHERE series_key = {KEY_OF}", series)
    sql(lock, "DELETE FROM series WHERE series_uid = ?", series)


def _copy(src: Path, dst: Path) -> None:
    shutil.copy2(src, dst)


def _reroot_without_first_series(lock: Path) -> None:
    """The text lock consistently edited (a new root): its database no longer belongs to it."""
    from nbia_audit.store.textlock import render_text_lock, root_digest

    text = read_text_lock(lock)
    kept = text.series[1:]
    header = text.header.__class__(
        **{
            **{f: getattr(text.header, f) for f in text.header.__dataclass_fields__},
            "root_digest": root_digest(kept),
            "series_count": len(kept),
            "image_count": sum(s.image_count for s in kept),
            "total_bytes": sum(s.bytes for s in kept),
        }
    )
    lock.write_text(render_text_lock(header, text.spec_json, kept), encoding="utf-8")


@pytest.mark.parametrize("case", sorted(EDITS))
def test_no_single_edit_of_a_lock_pair_reads_clean(
    case: str, original: Path, other: Path, copy: Path, tmp_path: Path
) -> None:
    lock = pair_in(original, tmp_path / "pair")
    # A clean stat pass first, so a memo of it exists for this very lock path: the edit must
    # not hide behind it.
    assert run_cli("verify", str(lock), str(copy), "--level", "stat", "-q").exit_code == 0
    EDITS[case](lock, other)

    for level in ("stat", "quick", "full"):  # stat first: a full pass forgets the memo
        result = run_cli("verify", str(lock), str(copy), "--level", level, "--format", "json")
        assert result.exit_code in (1, 3), (case, level, result.output)
        if result.exit_code == 1:
            document = json.loads(result.output)
            assert document["clean"] is False, (case, level)
            assert any(f["kind"] == "lock-database-rejected" for f in document["findings"]) or (
                case.startswith("text")
            ), (case, level)
    result = run_cli("report", str(lock), "--verify", str(copy), "--format", "json")
    assert result.exit_code in (1, 3), (case, result.output)
    assert '"clean": true' not in result.output
    assert run_cli("drift", str(lock), "-q").exit_code == 3, case
    spec = lock.with_name("dataset.yaml")
    assert run_cli("lock", "--check", "--offline", spec).exit_code in (1, 3), case
    dest = tmp_path / "fetched"
    assert run_cli("fetch", str(lock), "--dest", str(dest), "-q").exit_code == 3, case
    assert not [p for p in dest.rglob("*.dcm")] if dest.exists() else True


# The edits of the images table in layout 1 (nbia-audit's databases before layout 2), whose
# images name their series by UID; every other edit above is the same SQL in both layouts.
LAYOUT1_IMAGE_EDITS: dict[str, Edit] = {
    "db: one image's archive MD5": lambda lock, _o: sql(
        lock, "UPDATE images SET archive_md5 = ? WHERE sop_uid = ?", "0" * 32, first_image(lock)[0]
    ),
    "db: a series row deleted": lambda lock, _o: _delete_series_layout1(lock),
    "db: an image row added": lambda lock, _o: sql(
        lock,
        "INSERT INTO images (sop_uid, series_uid, archive_md5, size) VALUES (?, ?, ?, 10)",
        "1.2.3.999",
        first_image(lock)[1],
        "a" * 32,
    ),
    "db: an image moved to another series": lambda lock, _o: sql(
        lock,
        "UPDATE images SET series_uid = (SELECT max(series_uid) FROM series) WHERE sop_uid = ?",
        first_image(lock)[0],
    ),
}


def _delete_series_layout1(lock: Path) -> None:
    series = first_image(lock)[1]
    sql(lock, "DELETE FROM images WHERE series_uid = ?", series)
    sql(lock, "DELETE FROM series WHERE series_uid = ?", series)


LAYOUT2_ONLY = {
    "db: one image's archive MD5 as text",  # layout 1 holds every MD5 as text
    "db: a series renumbered away from its images",  # layout 1 has no numbers
    "db: an image renamed to a SOP UID another series pins",  # layout 1's key forbids it
}


@pytest.mark.parametrize("case", sorted(c for c in EDITS if c.startswith("db")))
def test_no_database_edit_of_a_layout_1_pair_reads_clean(
    case: str, original: Path, other: Path, copy: Path, tmp_path: Path
) -> None:
    """The databases nbia-audit wrote before layout 2 are proven as firmly."""
    from tests.support.layout1 import rewrite_as_layout1

    lock = pair_in(original, tmp_path / "pair")
    rewrite_as_layout1(lock)
    assert read_lock(lock).database_layout == 1
    if case in LAYOUT2_ONLY:
        return
    LAYOUT1_IMAGE_EDITS.get(case, EDITS[case])(lock, other)
    with pytest.raises(StoreError):
        read_lock(lock)
    result = run_cli("verify", str(lock), str(copy), "--level", "stat", "--format", "json")
    assert result.exit_code in (1, 3) and '"clean": true' not in result.output, case


def test_a_layout_1_pair_serves_every_verb_and_migrates(
    original: Path, copy: Path, tmp_path: Path
) -> None:
    from tests.support.layout1 import layout_migrations, rewrite_as_layout1

    lock = pair_in(original, tmp_path / "pair")
    images = {u: v for u, v in read_lock(lock).images.items()}
    rewrite_as_layout1(lock)
    assert layout_migrations(database_path(lock)) == {"m001_initial"}
    assert dict(read_lock(lock).images.items()) == images
    for level in ("stat", "quick", "full"):
        result = run_cli("verify", str(lock), str(copy), "--level", level, "--format", "json")
        assert result.exit_code == 0 and json.loads(result.output)["clean"], result.output
    assert run_cli("report", str(lock), "--verify", str(copy)).exit_code == 0
    assert run_cli("drift", str(lock), "-q").exit_code == 0
    assert run_cli("lock", "--check", "--offline", lock.with_name("dataset.yaml")).exit_code == 0
    dest = tmp_path / "fetched"
    assert run_cli("fetch", str(lock), "--dest", str(dest), "-q").exit_code == 0
    assert run_cli("verify", str(lock), str(dest), "-q").exit_code == 0
    assert layout_migrations(database_path(lock)) == {"m001_initial"}  # read, never changed

    assert run_cli("migrate", str(lock)).exit_code == 0
    assert layout_migrations(database_path(lock)) == {"m001_initial", "m002_compact"}
    assert dict(read_lock(lock).images.items()) == images
    assert run_cli("verify", str(lock), str(copy), "--level", "full", "-q").exit_code == 0


@pytest.mark.parametrize("layout", [1, 2])
def test_fetch_fills_the_images_of_a_series_only_lock_in_either_layout(
    emu: Emulator, original: Path, tmp_path: Path, layout: int
) -> None:
    from tests.support.layout1 import layout_migrations, rewrite_as_layout1

    collections = sorted(c.name for c in emu.corpus.collections)
    lock = _lock(emu, tmp_path / "series-only", collections, series_only=True)
    if layout == 1:
        rewrite_as_layout1(lock)
    applied = layout_migrations(database_path(lock))
    assert read_lock(lock).image_count == 0
    dest = tmp_path / "fetched"
    assert run_cli("fetch", str(lock), "--dest", str(dest), "-q").exit_code == 0
    filled = read_lock(lock)
    assert filled.database_layout == layout and layout_migrations(database_path(lock)) == applied

    def pins(lock: Path) -> dict[str, list[tuple[str, str | None]]]:
        images = read_lock(lock).images.items()
        return {u: [(i.sop_uid, i.archive_md5) for i in v] for u, v in images}

    assert pins(lock) == pins(original)  # the sizes fetch adds are not pinned by the lock


def test_the_issue_case_appended_bytes_with_a_matching_database_md5(
    original: Path, copy: Path, tmp_path: Path
) -> None:
    """Append bytes to one image, set its archive MD5 in the database to the new MD5."""
    lock = pair_in(original, tmp_path / "pair")
    data = tmp_path / "data"
    shutil.copytree(copy, data)
    victim = sorted(p for p in data.rglob("*.dcm"))[0]
    victim.write_bytes(victim.read_bytes() + b"appended")
    new_md5 = hashlib.md5(victim.read_bytes()).hexdigest()
    conn = sqlite3.connect(database_path(lock))
    with conn:
        # Which image is it? The one whose archive MD5 no longer matches any file.
        sops = [r[0] for r in conn.execute("SELECT sop_uid FROM images")]
        digests = {hashlib.md5(p.read_bytes()).hexdigest() for p in data.rglob("*.dcm")}
        target = next(
            s
            for s in sops
            if conn.execute(
                "SELECT lower(hex(archive_md5)) FROM images WHERE sop_uid = ?", (s,)
            ).fetchone()[0]
            not in digests
        )
        conn.execute(
            "UPDATE images SET archive_md5 = ? WHERE sop_uid = ?", (bytes.fromhex(new_md5), target)
        )
    conn.close()
    for level in ("full", "quick", "stat"):
        result = run_cli("verify", str(lock), str(data), "--level", level, "--format", "json")
        assert result.exit_code == 1, (level, result.output)
        document = json.loads(result.output)
        assert document["clean"] is False
        kinds = {f["kind"] for f in document["findings"]}
        assert "lock-database-rejected" in kinds
        if level == "full":
            # Checked against the text lock's series hashes alone, the copy is still caught.
            assert len(kinds) > 1, kinds


def test_a_database_that_fails_names_the_series_and_both_hashes(
    original: Path, tmp_path: Path
) -> None:
    lock = pair_in(original, tmp_path / "pair")
    sop, series = first_image(lock)
    sql(lock, "UPDATE images SET archive_md5 = ? WHERE sop_uid = ?", "0" * 32, sop)
    with pytest.raises(LockProofError) as caught:
        read_lock(lock)
    message = str(caught.value)
    pinned = next(s.series_hash for s in read_text_lock(lock).series if s.series_uid == series)
    assert str(database_path(lock)) in message and f"series {series}" in message
    assert "image MD5s give" in message and pinned[:8] in message
    result = run_cli("drift", str(lock))
    assert result.exit_code == 3 and f"series {series}" in result.output
    assert "Traceback" not in result.output


def test_a_series_row_the_text_lock_does_not_pin_is_named(original: Path, tmp_path: Path) -> None:
    # Caught by its own check, before the metadata digest would (a format 1 lock has none).
    lock = pair_in(original, tmp_path / "pair")
    conn = sqlite3.connect(database_path(lock))
    with conn:
        cursor = conn.execute("SELECT * FROM series ORDER BY series_uid LIMIT 1")
        names = [d[0] for d in cursor.description]
        row = dict(zip(names, cursor.fetchone(), strict=True))
        row["series_uid"] = "1.2.3.999"
        del row["series_key"]  # numbered afresh
        names.remove("series_key")
        columns, marks = ", ".join(names), ", ".join("?" * len(names))
        conn.execute(f"INSERT INTO series ({columns}) VALUES ({marks})", list(row.values()))
    conn.close()
    with pytest.raises(LockProofError, match="series 1.2.3.999 is in it but dataset.lock does not"):
        read_lock(lock)


def test_an_image_md5_and_its_series_hash_edited_together_are_caught(
    original: Path, copy: Path, tmp_path: Path
) -> None:
    # The database then agrees with itself; only the text lock's series hash can refuse it.
    from nbia_audit.merkle import series_hash

    lock = pair_in(original, tmp_path / "pair")
    sop, series = first_image(lock)
    sql(lock, "UPDATE images SET archive_md5 = ? WHERE sop_uid = ?", "0" * 32, sop)
    conn = sqlite3.connect(database_path(lock))
    query = "SELECT archive_md5 FROM images_readable WHERE series_uid = ?"
    md5s = [r[0] for r in conn.execute(query, (series,))]
    conn.close()
    sql(lock, "UPDATE series SET series_hash = ? WHERE series_uid = ?", series_hash(md5s), series)
    with pytest.raises(LockProofError, match=f"series {re.escape(series)}: series_hash is"):
        read_lock(lock)
    result = run_cli("verify", str(lock), str(copy), "--format", "json")
    assert result.exit_code == 1 and json.loads(result.output)["clean"] is False


def test_verify_falls_back_to_the_text_lock_and_says_so_in_every_format(
    original: Path, copy: Path, tmp_path: Path
) -> None:
    lock = pair_in(original, tmp_path / "pair")
    sql(lock, "UPDATE meta SET value = 'garbage' WHERE key = 'text_sha256'")
    for fmt in ("text", "json", "junit"):
        result = run_cli("verify", str(lock), str(copy), "--format", fmt)
        assert result.exit_code == 1, (fmt, result.output)
        assert "lock-database-rejected" in result.output, fmt
        assert "text lock" in result.output, fmt


def test_a_clean_pair_still_reads_and_verifies(original: Path, copy: Path, tmp_path: Path) -> None:
    lock = pair_in(original, tmp_path / "pair")
    contents = read_lock(lock)
    assert contents.source == "database" and contents.image_count == SPEC_IMAGES
    assert sum(len(v) for v in contents.images.values()) == SPEC_IMAGES
    for level in ("full", "quick", "stat"):
        assert run_cli("verify", str(lock), str(copy), "--level", level).exit_code == 0, level
    assert run_cli("drift", str(lock), "-q").exit_code == 0
    assert run_cli("lock", "--check", "--offline", lock.with_name("dataset.yaml")).exit_code == 0


SPEC_IMAGES = SPEC.collections * SPEC.patients * SPEC.studies * SPEC.series * SPEC.images


def test_a_missing_database_is_named_and_verify_uses_the_text_lock(
    original: Path, copy: Path, tmp_path: Path
) -> None:
    lock = pair_in(original, tmp_path / "pair")
    database_path(lock).unlink()
    with pytest.raises(LockNotFound, match="lock database not found"):
        read_lock(lock)
    contents = read_lock(lock, text_only_fallback=True)
    assert contents.source == "text lock" and contents.database_rejected == ""
    result = run_cli("verify", str(lock), str(copy), "--level", "full")
    assert result.exit_code == 0, result.output  # a reader with the cited text lock alone
    assert run_cli("drift", str(lock)).exit_code == 3


def test_an_empty_series_pinned_without_images_proves(tmp_path: Path) -> None:
    """A series the archive pins with the empty hash has no image rows: that is consistent."""
    from tests.support.lock_tools import write_pair

    lock = write_pair(tmp_path / "dataset.lock", [("1.2.1", "", ())])
    assert read_lock(lock).series[0].series_hash == ""
    lock = write_pair(tmp_path / "b" / "dataset.lock", [("1.2.1", "a" * 32, ())])
    with pytest.raises(LockProofError, match="pins no images"):
        read_lock(lock)


ODD_MD5S: dict[str, tuple[str | None, ...]] = {
    # What archives store besides 32 lowercase hex digits (protocol §3), and what an edited
    # database could hold: each must be read back exactly for its series hash to recompute.
    "1.2.1": (None, "0cc175b9c0f1b6a831c399e269772661", "1b6a"),  # NULL and unpadded
    "1.2.2": ("0B" + "0" * 30, "0a" + "0" * 30, " "),  # upper case, CTP's placeholder
    "1.2.3": ("ab,cd", "ef"),  # a comma: one value, not two
    "1.2.4": ("\ud835", "\U0010ffff"),  # stored through storable's escape
}


def test_a_pair_with_the_archives_odd_md5_strings_proves(tmp_path: Path) -> None:
    from nbia_audit.merkle import series_hash
    from tests.support.lock_tools import write_pair

    lock = write_pair(
        tmp_path / "dataset.lock",
        [
            (uid, series_hash(md5s), tuple((f"{uid}.{n}", m) for n, m in enumerate(md5s)))
            for uid, md5s in ODD_MD5S.items()
        ],
    )
    contents = read_lock(lock)
    assert contents.source == "database"
    for uid, md5s in ODD_MD5S.items():
        assert sorted(i.archive_md5 or "" for i in contents.images[uid]) == sorted(
            m or "" for m in md5s
        )


def test_a_text_lock_that_is_not_a_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="folder"):
        read_lock(tmp_path)


def test_a_text_lock_alone_with_an_edited_series_hash_is_refused(
    original: Path, copy: Path, tmp_path: Path
) -> None:
    lock = pair_in(original, tmp_path / "pair")
    database_path(lock).unlink()
    edit_text(
        lock, lambda t: re.sub(r'hash = "[0-9a-f]{32}"', 'hash = "' + "1" * 32 + '"', t, count=1)
    )
    with pytest.raises(StoreError, match="root digest"):
        read_text_lock(lock)
    result = run_cli("verify", str(lock), str(copy))
    assert result.exit_code == 3 and "root digest" in result.output


def test_a_format_1_pair_is_read_and_its_series_fields_still_proven(tmp_path: Path) -> None:
    """Format 1 locks predate metadata-digest: the text's own series fields still bind."""
    from tests.support.lock_tools import write_pair

    lock = write_pair(tmp_path / "dataset.lock", [("1.2.1", "", ())], lock_format=1)
    assert "metadata-digest" not in lock.read_text(encoding="utf-8")
    assert read_lock(lock).header.format == 1
    sql(lock, "UPDATE series SET modality = 'MR'")
    with pytest.raises(LockProofError, match="modality is MR"):
        read_lock(lock)


def _read_only_runner(folder: Path) -> list[str]:
    """How to run a command that cannot write to ``folder``: as root, drop to nobody (root
    ignores permission bits); otherwise the permission bits suffice."""
    import os

    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


def test_a_lock_is_read_and_verified_from_a_read_only_location(
    original: Path, copy: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import subprocess
    import sys
    import tempfile

    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop root's write access")
    # A folder a dropped user can reach: pytest's own temporary folders are private to root.
    top = Path(tempfile.mkdtemp(prefix="nbia-ro-"))
    top.chmod(0o755)
    try:
        lock = pair_in(original, top / "checkout")
        prefix = _read_only_runner(top / "checkout")
        if subprocess.run([*prefix, sys.executable, "-c", "import nbia_audit"]).returncode:
            pytest.skip("the unprivileged user cannot run this checkout's Python")
        probe = prefix + [sys.executable, "-c", "open('" + str(top / "checkout" / "x") + "', 'w')"]
        assert subprocess.run(probe, capture_output=True).returncode != 0  # really read-only
        code = "import sys; from pathlib import Path;"
        code += " from nbia_audit.store.reader import read_lock;"
        code += " print(read_lock(Path(sys.argv[1])).source)"
        done = subprocess.run(
            [*prefix, sys.executable, "-c", code, str(lock)], capture_output=True, text=True
        )
        assert done.returncode == 0 and done.stdout.strip() == "database", done.stderr
        # An interrupted write left a stray: repairing it needs write access, and says so.
        (top / "checkout").chmod(0o755)
        shutil.copy2(database_path(lock), database_path(lock).with_name("dataset.lock.db.new"))
        (top / "checkout").chmod(0o555)
        done = subprocess.run(
            [*prefix, sys.executable, "-c", code, str(lock)], capture_output=True, text=True
        )
        assert done.returncode != 0 and "needs write access" in done.stderr, done.stderr
    finally:
        for path in [top, *top.rglob("*")]:
            path.chmod(0o755)
        shutil.rmtree(top)


def test_an_endless_view_in_place_of_a_table_is_refused_before_it_is_read(
    original: Path, copy: Path, tmp_path: Path
) -> None:
    """A recursive view never ends (and SQLite's C code would not even let a signal stop the
    read): the schema is checked before any row is read. The real CLI, a hang guard only."""
    lock = pair_in(original, tmp_path / "pair")
    sql(lock, "ALTER TABLE images RENAME TO images_real")
    sql(
        lock,
        "CREATE VIEW images AS WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c)"
        " SELECT i.* FROM images_real i, c",
    )
    for args in (["verify", str(lock), str(copy)], ["drift", str(lock)], ["report", str(lock)]):
        done = subprocess.run(
            [sys.executable, "-m", "nbia_audit", *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",
        )
        assert done.returncode in (1, 3) and "Traceback" not in done.stderr, done.stderr
        assert "not an nbia-audit lock database (its schema" in done.stdout + done.stderr


def test_lock_check_refuses_a_text_lock_without_its_database(
    original: Path, tmp_path: Path
) -> None:
    """Every other verb refuses such a pair (exit 3); `lock --check` said "up to date"."""
    lock = pair_in(original, tmp_path / "pair")
    database_path(lock).unlink()
    result = run_cli("lock", "--check", "--offline", str(lock.with_name("dataset.yaml")))
    assert result.exit_code == 3 and "lock database not found" in result.output, result.output


def test_lock_offline_without_check_is_a_usage_error(original: Path, tmp_path: Path) -> None:
    lock = pair_in(original, tmp_path / "pair")
    result = run_cli("lock", "--offline", str(lock.with_name("dataset.yaml")))
    assert result.exit_code == 2 and "--offline needs --check" in result.output, result.output
