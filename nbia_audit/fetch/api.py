"""The ``fetch`` verb as the public API offers it: a lock path and any archive form."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from nbia_audit.archive.session import ArchiveTarget, archive_session
from nbia_audit.client.auth import Credentials
from nbia_audit.client.download import StreamLimits
from nbia_audit.fetch.run import FetchReport, SeriesOutcome, SeriesRetry, fetch_dataset
from nbia_audit.progress import ProgressCallback
from nbia_audit.store.textlock import read_text_lock

__all__ = ["fetch_copy"]


def fetch_copy(
    lock: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    archive: ArchiveTarget | None = None,
    *,
    layout: str = "classic",
    workers: int = 2,
    series: Iterable[str] | None = None,
    retry: SeriesRetry | None = None,
    limits: StreamLimits | None = None,
    credentials: Credentials | None = None,
    on_progress: ProgressCallback | None = None,
    on_series: Callable[[SeriesOutcome], None] | None = None,
) -> FetchReport:
    """Download the series the lock at ``lock`` pins into ``dest``, proving every image on
    the way in, as ``nbia-audit fetch`` does. Running it again resumes.

    ``archive`` is a server alias, a URL, an ``NbiaClient`` or an ``Archive``; None
    means the server the lock was made from (with its API family). ``layout`` is
    ``classic``, ``flat``, ``bids-ish`` or a template; ``series`` limits the fetch to these
    SeriesInstanceUIDs. ``report.ok`` is True when every selected series is in place and
    verified; ``report.failed`` are the findings (none of their files were placed).

    Raises:
        SpecError: a bad layout or worker count, a series not in the lock, or an unknown
            server.
        StoreError: the lock or the local state cannot be read or written.
        DownloadError: the destination cannot be used (another fetch, disk full, links).
        ApiError: the archive cannot be used at all.
    """
    lock_path = Path(lock)
    header = read_text_lock(lock_path).header
    target = (header.server or header.base_url) if archive is None else archive
    with archive_session(target, api=header.api, credentials=credentials) as view:
        return fetch_dataset(
            lock_path,
            Path(dest),
            view,
            layout=layout,
            workers=workers,
            series=series,
            retry=retry,
            limits=limits,
            on_progress=on_progress,
            on_series=on_series,
        )
