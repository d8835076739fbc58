"""The one request counter: every call a verb makes on the archive, counted where it is made.

A verb wraps the archive it was given in :class:`CountingArchive` once, passes the wrapper
to everything it calls (selection, pinning, the hash descent, the change feed) and reports
``count`` as its ``requests``. These are logical calls; the client's own retries and token
renewals come on top.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ParamSpec, TypeVar, Unpack

from nbia_audit.archive.protocol import Archive, DownloadOptions, HashLevel, SeriesScope
from nbia_audit.client.records import License, SeriesDownload, SeriesInfo, SeriesSize

__all__ = ["CountingArchive"]

P = ParamSpec("P")
T = TypeVar("T")


class CountingArchive:
    """An :class:`Archive` that counts every call it passes on, thread-safely."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.count = 0
        self._lock = threading.Lock()

    def _call(self, method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        # Counted before the call: a call that fails was still made.
        with self._lock:
            self.count += 1
        return method(*args, **kwargs)

    @property
    def base_url(self) -> str:
        return self.archive.base_url  # known to the client, not asked of the archive

    def collections(self) -> list[str]:
        return self._call(self.archive.collections)

    def series(self, **scope: Unpack[SeriesScope]) -> list[SeriesInfo]:
        return self._call(self.archive.series, **scope)

    def series_metadata(self, series_uids: Sequence[str]) -> list[SeriesInfo]:
        return self._call(self.archive.series_metadata, series_uids)

    def series_for_doi(self, doi: str) -> list[str]:
        return self._call(self.archive.series_for_doi, doi)

    def cart_series(self, name: str) -> list[str]:
        return self._call(self.archive.cart_series, name)

    def simple_search_series(self, criteria: Sequence[tuple[str, str]]) -> list[str]:
        return self._call(self.archive.simple_search_series, criteria)

    def text_search_series(self, text: str) -> list[str]:
        return self._call(self.archive.text_search_series, text)

    def licenses(self) -> list[License]:
        return self._call(self.archive.licenses)

    def updated_series(self, since: dt.date) -> list[SeriesInfo]:
        return self._call(self.archive.updated_series, since)

    def md5_hierarchy(self, **level: Unpack[HashLevel]) -> str:
        return self._call(self.archive.md5_hierarchy, **level)

    def sop_instance_uids(self, series_uid: str) -> list[str]:
        return self._call(self.archive.sop_instance_uids, series_uid)

    def image_md5(self, sop_uid: str) -> str | None:
        return self._call(self.archive.image_md5, sop_uid)

    def series_size(self, series_uid: str) -> SeriesSize | None:
        return self._call(self.archive.series_size, series_uid)

    def download_series(
        self, series_uid: str, dest: Path, **options: Unpack[DownloadOptions]
    ) -> SeriesDownload:
        return self._call(self.archive.download_series, series_uid, dest, **options)

    def close(self) -> None:
        self.archive.close()  # not a request: the wrapped archive ends its session
