"""The ``drift`` verb as the public API offers it: a lock path and any archive form."""

from __future__ import annotations

import os
from pathlib import Path

from nbia_audit.archive.session import ArchiveTarget, archive_session, opener_for_lock
from nbia_audit.client.auth import Credentials
from nbia_audit.drift.run import check_drift
from nbia_audit.findings import AuditReport
from nbia_audit.progress import ProgressCallback

__all__ = ["detect_drift"]


def detect_drift(
    lock: str | os.PathLike[str],
    archive: ArchiveTarget | None = None,
    *,
    fast: bool = False,
    workers: int = 8,
    credentials: Credentials | None = None,
    on_progress: ProgressCallback | None = None,
) -> AuditReport:
    """What changed upstream since the lock at ``lock`` was made? As ``nbia-audit drift``.

    ``archive`` is a server alias, a URL, an ``NbiaClient`` or an ``Archive``; None
    means the server the lock was made from (with its API family). ``fast`` trusts the
    archive's nightly collection hashes where they match. ``report.findings`` are the
    changes; ``report.complete`` is False when a series could not be checked (never
    clean then); ``report.clean`` is True only when complete and without findings.

    Raises:
        SpecError: the lock's embedded spec is unusable, or an unknown server.
        LockNotFound, StoreError: the lock cannot be read.
        ApiError: the archive could not answer the spec's resolution.
    """
    lock_path = Path(lock)
    if archive is None or isinstance(archive, str):
        # Opened once check_drift has read the lock (its server, its API family), so the
        # lock is read once; check_drift closes what the opener made.
        opener = opener_for_lock(archive, credentials=credentials)
        return check_drift(lock_path, opener, fast=fast, workers=workers, on_progress=on_progress)
    with archive_session(archive, credentials=credentials) as view:
        return check_drift(lock_path, view, fast=fast, workers=workers, on_progress=on_progress)
