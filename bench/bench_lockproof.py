"""Benchmark the lock proof: what proving a lock database against its text lock costs.

Writes a synthetic, self-consistent lock pair of N images (series of 126 images, NLST's
median), then times, in the same run:

* the baseline: reading the database file once (``sha256sum``), the least any check that
  looks at every byte can cost;
* ``read_lock(load_images=False)``: the whole proof (text lock parse and root digest,
  stamp, header, series fields, every image MD5 recomputed into its series hash, metadata
  digest), as every verb runs it before trusting the database;
* ``read_lock(load_images=True)``: the same plus keeping every image as an object.

Prints seconds per million images and the ratio to the baseline. Usage:

    python bench/bench_lockproof.py                  # 1,000,000 images
    python bench/bench_lockproof.py --images 100000  # quicker
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import tempfile
from pathlib import Path

from common import row, timed

from nbia_audit.merkle import series_hash
from nbia_audit.models import LOCK_FORMAT, LockedImage, LockedSeries, LockHeader
from nbia_audit.store.database import metadata_digest, write_lock_database
from nbia_audit.store.reader import read_lock
from nbia_audit.store.textlock import commit_lock, database_path, render_text_lock, root_digest

PER_SERIES = 126


def image_content(sop_uid: str) -> bytes:
    """The bytes a tiny stand-in file for this image holds: its archive MD5 is theirs, so a
    folder of such files matches the lock by content (they are not DICOM)."""
    return sop_uid.encode()


def synthetic_pair(lock: Path, images: int) -> tuple[list[LockedSeries], list[LockedImage]]:
    """Write a self-consistent lock pair of ``images`` images (whole series of 126); return
    its series and images, so a caller can lay out files that match it."""
    series: list[LockedSeries] = []
    pinned: list[LockedImage] = []
    for s in range(max(1, images // PER_SERIES)):
        uid = f"1.2.826.0.1.3680043.8.498.{s}"
        sops = [f"{uid}.{i}" for i in range(PER_SERIES)]
        md5s = [hashlib.md5(image_content(sop)).hexdigest() for sop in sops]
        pinned += [LockedImage(sop, uid, m, 500_000) for sop, m in zip(sops, md5s, strict=True)]
        series.append(
            LockedSeries(
                series_uid=uid,
                collection="NLST",
                patient_id=f"P{s // 3}",
                study_uid=f"1.2.3.{s // 3}",
                modality="CT",
                description="",
                series_number="",
                body_part="CHEST",
                manufacturer="",
                image_count=PER_SERIES,
                bytes=PER_SERIES * 500_000,
                series_hash=series_hash(md5s),
                released="2020-01-01",
                max_submission="",
                license_name="CC BY 4.0",
                license_url="",
                doi="10.7937/TCIA.hmq8-j677",
                third_party=False,
                images_pinned=True,
            )
        )
    header = LockHeader(
        format=LOCK_FORMAT,
        name="bench",
        spec_digest="sha256:0",
        server="public",
        base_url="https://example.invalid/nbia-api/services",
        api="v4",
        tool_version="bench",
        resolved_at="2026-12-02T00:00:00Z",
        root_digest=root_digest(series),
        series_count=len(series),
        image_count=len(pinned),
        total_bytes=sum(s.bytes for s in series),
        series_only=False,
        metadata_digest=metadata_digest(series, (), (), ()),
    )

    def write(path: Path) -> None:
        write_lock_database(path, header, "{}", series, pinned, (), (), ())

    commit_lock(lock, render_text_lock(header, "{}", series), write)
    return series, pinned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lock = Path(tmp) / "dataset.lock"
        _, made = timed(lambda: synthetic_pair(lock, args.images))
        db = database_path(lock)
        count = read_lock(lock, load_images=False).image_count
        print(f"lock pair: {count:,} images, database {db.stat().st_size / 1e6:.0f} MB "
              f"(written in {made:.1f} s)")  # fmt: skip
        subprocess.run(["sha256sum", str(db)], capture_output=True, check=True)  # warm cache
        _, base = timed(lambda: subprocess.run(["sha256sum", str(db)], capture_output=True))
        _, proof = timed(lambda: read_lock(lock, load_images=False))
        _, loaded = timed(lambda: read_lock(lock, load_images=True))
        per_million = 1e6 / count
        print(row("", "wall (s)", "s / M images", "x sha256sum"))
        print(row("baseline: sha256sum of the database", f"{base:.2f}", f"{base * per_million:.2f}",
                  "1.00"))  # fmt: skip
        for label, took in (("read_lock (proof)", proof), ("read_lock + keep images", loaded)):
            print(row(label, f"{took:.2f}", f"{took * per_million:.2f}", f"{took / base:.2f}"))


if __name__ == "__main__":
    main()
