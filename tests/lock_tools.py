"""Rewrite a lock pair consistently, for tests that need a lock the archive never served.

A lock pair proves itself (nbia_audit.lockproof): editing one file makes every verb refuse
it. Tests that need, say, a series far larger than the disk edit the pinned values here and
get a new pair whose digests, stamp and totals all agree, as `nbia-audit lock` would write.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from nbia_audit.lockfile import commit_lock, render_text_lock, root_digest
from nbia_audit.lockproof import read_lock
from nbia_audit.models import LockedSeries
from nbia_audit.store import metadata_digest, write_lock_database


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
