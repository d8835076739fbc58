"""The ``verify`` verb as the public API offers it: no archive, only a lock and a folder."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from nbia_audit.archive.calls import ProgressCallback
from nbia_audit.findings import AuditReport
from nbia_audit.verify.run import verify_copy

__all__ = ["verify_folder"]


def verify_folder(
    lock: str | os.PathLike[str],
    directory: str | os.PathLike[str],
    *,
    level: str = "full",
    sample: float | None = None,
    seed: int | None = None,
    workers: int | None = None,
    ignore: Iterable[str] = (),
    on_progress: ProgressCallback | None = None,
) -> AuditReport:
    """Is ``directory`` exactly the dataset the lock at ``lock`` pins? As
    ``nbia-audit verify``; asks no server.

    ``level`` is ``full`` (MD5 of every file), ``quick`` (xxh3 against the last full pass)
    or ``stat`` (unchanged files trusted); ``sample`` (0 < fraction <= 1, not with
    ``stat``) hashes a seeded random fraction; ``ignore`` holds glob patterns to leave out.
    ``report.findings`` are the findings; ``report.complete`` is False when part of the
    check could not be performed; ``report.clean`` is True only when complete and without
    findings.

    Raises:
        ValueError: a bad level, fraction or worker count.
        LockNotFound: no lock at ``lock``.
        StoreError: the lock cannot be read, or ``directory`` is not a readable directory.
    """
    return verify_copy(
        Path(lock),
        Path(directory),
        level=level,
        sample=sample,
        seed=seed,
        workers=workers,
        ignore=ignore,
        on_progress=on_progress,
    )
