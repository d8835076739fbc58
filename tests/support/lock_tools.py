"""Rewrite a lock pair consistently, for tests that need a lock the archive never served.

A lock pair proves itself (nbia_audit.store.reader): editing one file makes every verb refuse
it. Tests that need, say, a series far larger than the disk edit the pinned values here and
get a new pair whose digests, stamp and totals all agree, as `nbia-audit lock` would write.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

from nbia_audit.archive.view import ArchiveView
from nbia_audit.client import NbiaClient
from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.fetch.run import fetch_dataset
from nbia_audit.lock.run import lock_dataset
from nbia_audit.models import LockedSeries
from nbia_audit.store.database import metadata_digest, write_lock_database
from nbia_audit.store.reader import read_lock
from nbia_audit.store.textlock import commit_lock, render_text_lock, root_digest


def rewrite_pair(lock_path: Path, edit: Callable[[LockedSeries], LockedSeries]) -> None:
    """Apply ``edit`` to every locked series and write the pair anew, self-consistent."""
    lock = read_lock(lock_path)
    series = tuple(edit(s) for s in lock.series)
    header = dataclasses.replace(
        lock.header,
        root_digest=root_digest(series),
        series_count=len(series),
        image_count=sum(s.image_count for s in series),
        total_bytes=sum(s.bytes for s in series),
        metadata_digest=metadata_digest(series, lock.nodes, lock.problems, lock.licenses),
    )
    images = [i for uid in sorted(lock.images) for i in lock.images[uid]]
    text = render_text_lock(header, lock.spec_json, series)

    def write(path: Path) -> None:
        write_lock_database(
            path, header, lock.spec_json, series, images, lock.nodes, lock.problems, lock.licenses
        )

    commit_lock(lock_path, text, write)


def locked_series(uid: str, series_hash: str) -> LockedSeries:
    """A plain locked series with every field filled in."""
    return LockedSeries(
        series_uid=uid,
        collection="C",
        patient_id="P",
        study_uid="1.2",
        modality="CT",
        description="",
        series_number="",
        body_part="",
        manufacturer="",
        image_count=0,
        bytes=0,
        series_hash=series_hash,
        released="",
        max_submission="",
        license_name="",
        license_url="",
        doi="",
        third_party=False,
        images_pinned=True,
    )


def write_pair(
    lock_path: Path,
    series: list[tuple[str, str, tuple[tuple[str, str | None], ...]]],
    *,
    lock_format: int | None = None,
) -> Path:
    """Write a minimal, self-consistent pair: (series UID, series hash, (SOP, MD5) images)."""
    from nbia_audit.models import LOCK_FORMAT, LockedImage, LockHeader

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    locked = tuple(
        dataclasses.replace(locked_series(uid, hash_), image_count=len(images))
        for uid, hash_, images in series
    )
    pinned = [LockedImage(sop, uid, md5) for uid, _h, images in series for sop, md5 in images]
    header = LockHeader(
        format=lock_format or LOCK_FORMAT,
        name="t",
        spec_digest="sha256:0",
        server="http://127.0.0.1:1",
        base_url="http://127.0.0.1:1",
        api="v4",
        tool_version="0",
        resolved_at="2026-01-01T00:00:00Z",
        root_digest=root_digest(locked),
        series_count=len(locked),
        image_count=sum(s.image_count for s in locked),
        total_bytes=0,
        series_only=False,
        metadata_digest=metadata_digest(locked, (), (), ()) if lock_format != 1 else "",
    )
    text = render_text_lock(header, "{}", locked)

    def write(path: Path) -> None:
        write_lock_database(path, header, "{}", locked, pinned, (), (), ())

    commit_lock(lock_path, text, write)
    return lock_path


def lock_and_fetch(
    corpus: CorpusSpec, spec_dir: Path, data: Path
) -> Iterator[tuple[Path, Path]]:
    """Lock the first collection of an emulator of ``corpus`` (spec in ``spec_dir``), fetch
    it into ``data``, and yield (lock, data) while the emulator still runs."""
    with Emulator.from_spec(corpus) as emu, NbiaClient(emu.base_url) as client:
        spec = spec_dir / "dataset.yaml"
        name = emu.corpus.collections[0].name
        spec.write_text(f"name: r\nserver: {emu.base_url}\nselect:\n  - collection: {name}\n")
        lock = lock_dataset(spec, ArchiveView(client)).lock_path
        assert fetch_dataset(lock, data, client).ok
        yield lock, data
