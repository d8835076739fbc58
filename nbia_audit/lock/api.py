"""The ``lock`` verbs as the public API offers them: a spec path and any archive form.

``lock_spec`` writes (or keeps) a lock; ``check_lock_staleness`` says whether it is stale.
Both read the server and API family from the spec unless the caller names an archive.
"""

from __future__ import annotations

import os
from pathlib import Path

from nbia_audit.archive.session import ArchiveTarget, archive_session
from nbia_audit.client.auth import Credentials
from nbia_audit.lock.run import CheckResult, LockResult, check_lock, lock_dataset
from nbia_audit.progress import ProgressCallback
from nbia_audit.spec.load import load_spec

__all__ = ["check_lock_staleness", "lock_spec"]


def lock_spec(
    spec: str | os.PathLike[str],
    archive: ArchiveTarget | None = None,
    *,
    lock_path: str | os.PathLike[str] | None = None,
    upgrade: bool = False,
    series_only: bool = False,
    workers: int = 8,
    credentials: Credentials | None = None,
    on_progress: ProgressCallback | None = None,
) -> LockResult:
    """Resolve the spec at ``spec`` into a lock pair (``dataset.yaml`` -> ``dataset.lock``
    and ``dataset.lock.db``, or ``lock_path``), as ``nbia-audit lock`` does.

    ``archive`` is a server alias, a URL, an ``NbiaClient`` or an ``Archive``; None
    means the spec's own ``server`` (with its ``api`` family). ``credentials`` are used
    only when a client is made here. Pins of an existing lock are kept unless ``upgrade``.

    The lock was written or is current when ``result.unsettled`` and
    ``result.not_visible`` are empty (otherwise nothing was written: findings);
    ``result.problems`` lists what the archive's own data got wrong.

    Raises:
        SpecError: the spec is invalid, names something the archive does not have, or
            names an unknown server.
        ApiError: the archive could not answer; nothing is written.
        StoreError: the existing lock cannot be read, or the new one cannot be written.
    """
    spec_path = Path(spec)
    loaded = load_spec(spec_path)
    target = loaded.server if archive is None else archive
    with archive_session(target, api=loaded.api, credentials=credentials) as view:
        return lock_dataset(
            spec_path,
            view,
            lock_path=None if lock_path is None else Path(lock_path),
            upgrade=upgrade,
            series_only=series_only,
            workers=workers,
            on_progress=on_progress,
        )


def check_lock_staleness(
    spec: str | os.PathLike[str],
    archive: ArchiveTarget | None = None,
    *,
    lock_path: str | os.PathLike[str] | None = None,
    offline: bool = False,
    workers: int = 8,
    credentials: Credentials | None = None,
) -> CheckResult:
    """Is the lock of ``spec`` stale? As ``nbia-audit lock --check``; writes nothing.

    First offline (has the spec changed since it was locked?), then, unless ``offline``,
    against the archive (series added, removed, changed or with other metadata upstream).
    ``archive`` as for :func:`lock_spec`. ``result.stale`` is the finding;
    ``result.reasons`` says why, one line each.

    Raises:
        SpecError: the spec is invalid or names an unknown server.
        ApiError: the archive could not answer.
        StoreError: the lock pair cannot be read or does not prove itself.
    """
    spec_path = Path(spec)
    where = None if lock_path is None else Path(lock_path)
    if offline:
        return check_lock(spec_path, None, lock_path=where, workers=workers)
    loaded = load_spec(spec_path)
    target = loaded.server if archive is None else archive
    with archive_session(target, api=loaded.api, credentials=credentials) as view:
        return check_lock(spec_path, view, lock_path=where, workers=workers)
