"""Lock database size per image with NLST-like UIDs, by table and index (SQLite's dbstat).

Writes a synthetic, self-consistent lock pair of N images in series of 126 (NLST's median),
every series and SOP instance UID exactly 64 characters long like NLST's
(``1.3.6.1.4.1.14519.5.2.1.7009.9004.`` and 30 digits), archive MD5s as 32 lowercase hex
digits, then prints the database's bytes per image (file, and pages per table or index), and
the time of the proof (``read_lock``) and of reading every image series by series.

It uses whichever nbia-audit is importable, so the same command measures the layout of any
release (docs/lock-format.md records both)::

    python bench/bench_lockdb.py --images 1000000
    PYTHONPATH=/path/to/older/checkout python bench/bench_lockdb.py --images 1000000
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import resource
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from nbia_audit.merkle import series_hash
from nbia_audit.models import LOCK_FORMAT, LockedImage, LockedSeries, LockHeader
from nbia_audit.store.database import metadata_digest, write_lock_database
from nbia_audit.store.reader import read_lock
from nbia_audit.store.textlock import commit_lock, database_path, render_text_lock, root_digest

PER_SERIES = 126
PREFIX = "1.3.6.1.4.1.14519.5.2.1.7009.9004."  # NLST's UID root, 34 characters


def nlst_uid(kind: str, n: int, length: int = 64) -> str:
    """A UID of exactly ``length`` characters: NLST's root and digits derived from (kind, n)."""
    digits = str(int(hashlib.sha256(f"{kind}/{n}".encode()).hexdigest(), 16))
    tail = ("1" + digits)[: length - len(PREFIX)]
    return PREFIX + tail


def _md5(s: int, i: int) -> str:
    return hashlib.md5(f"{s}/{i}".encode()).hexdigest()


def nlst_pair(lock: Path, images: int, uid_length: int = 64) -> None:
    count = max(1, images // PER_SERIES)
    series = []
    for s in range(count):
        uid = nlst_uid("series", s, uid_length)
        md5s = [_md5(s, i) for i in range(PER_SERIES)]
        series.append(
            LockedSeries(
                series_uid=uid, collection="NLST", patient_id=f"{100000 + s // 3}",
                study_uid=nlst_uid("study", s // 3, uid_length), modality="CT", description="",
                series_number="", body_part="CHEST", manufacturer="", image_count=PER_SERIES,
                bytes=PER_SERIES * 525_000, series_hash=series_hash(md5s), released="2020-01-01",
                max_submission="", license_name="CC BY 4.0", license_url="",
                doi="10.7937/TCIA.hmq8-j677", third_party=False, images_pinned=True,
            )
        )  # fmt: skip

    def pinned() -> Iterator[LockedImage]:
        for s, locked in sorted(enumerate(series), key=lambda x: x[1].series_uid):
            for i in range(PER_SERIES):
                sop = nlst_uid(f"sop/{s}", i, uid_length)
                yield LockedImage(sop, locked.series_uid, _md5(s, i), 525_000)

    header = LockHeader(
        format=LOCK_FORMAT, name="bench", spec_digest="sha256:0", server="public",
        base_url="https://example.invalid/nbia-api/services", api="v4", tool_version="bench",
        resolved_at="2026-12-02T00:00:00Z", root_digest=root_digest(series),
        series_count=len(series), image_count=count * PER_SERIES,
        total_bytes=sum(s.bytes for s in series), series_only=False,
        metadata_digest=metadata_digest(series, (), (), ()),
    )  # fmt: skip

    def write(path: Path) -> None:
        write_lock_database(path, header, "{}", series, pinned(), (), (), ())

    commit_lock(lock, render_text_lock(header, "{}", series), write)


def dbstat(path: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
    return {str(name): int(size) for name, size in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--uid-length", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lock = Path(tmp) / "dataset.lock"
        started = time.perf_counter()
        nlst_pair(lock, args.images, args.uid_length)
        made = time.perf_counter() - started
        db = database_path(lock)
        started = time.perf_counter()
        contents = read_lock(lock, load_images=False)
        proof = time.perf_counter() - started
        n = contents.image_count
        size = db.stat().st_size
        print(f"{n:,} images in {len(contents.series):,} series, {args.uid_length}-character UIDs;"
              f" written in {made:.1f} s, proven in {proof:.2f} s")  # fmt: skip
        print(f"| database file | {size / 1e6:.1f} MB | {size / n:.0f} bytes/image |")
        for name, pages in sorted(dbstat(db).items(), key=lambda x: -x[1]):
            print(f"| `{name}` | {pages / 1e6:.2f} MB | {pages / n:.1f} bytes/image |")
        started = time.perf_counter()
        seen = sum(len(images) for _uid, images in read_lock(lock).images.items())
        took = time.perf_counter() - started
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"read_lock + every image series by series: {seen:,} images in {took:.2f} s;"
              f" peak RSS of this process {rss:.0f} MB")


if __name__ == "__main__":
    main()
