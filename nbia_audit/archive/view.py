"""The archive as the verbs see it: a thin view over ``NbiaClient`` in the verbs' terms.

The verbs depend on :class:`~nbia_audit.archive.protocol.Archive`, not on the client's full
surface; this adapter is the one place that maps between them, so an API change in the
client touches one file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Unpack

from nbia_audit.archive.protocol import DownloadOptions, HashLevel, SeriesScope
from nbia_audit.client import NbiaClient
from nbia_audit.client.records import License, SeriesDownload, SeriesInfo, SeriesSize
from nbia_audit.client.search import SearchCriterion

__all__ = ["ArchiveView"]


class ArchiveView:
    """Implements :class:`~nbia_audit.archive.protocol.Archive` over an ``NbiaClient``.

    Closing the view closes the client (``with contextlib.closing(open_archive(...))``).
    """

    def __init__(self, client: NbiaClient) -> None:
        self.client = client

    @property
    def base_url(self) -> str:
        return self.client.urls.services

    def collections(self) -> list[str]:
        return self.client.collections()

    def series(self, **scope: Unpack[SeriesScope]) -> list[SeriesInfo]:
        return self.client.series(**scope)

    def series_metadata(self, series_uids: Sequence[str]) -> list[SeriesInfo]:
        return self.client.series_metadata(series_uids)

    def series_for_doi(self, doi: str) -> list[str]:
        matches = self.client.collection_or_series_for_doi(doi, series_level=True)
        return sorted({m.series_uid for m in matches if m.series_uid})

    def cart_series(self, name: str) -> list[str]:
        return sorted({info.series_uid for info in self.client.cart_contents(name)})

    def simple_search_series(self, criteria: Sequence[tuple[str, str]]) -> list[str]:
        manifest = self.client.manifest_for_simple_search(
            [SearchCriterion(kind, value) for kind, value in criteria]
        )
        return list(manifest.series_uids)

    def text_search_series(self, text: str) -> list[str]:
        return list(self.client.manifest_for_text_search(text).series_uids)

    def licenses(self) -> list[License]:
        return self.client.licenses()

    def updated_series(self, since: dt.date) -> list[SeriesInfo]:
        return self.client.updated_series(since)

    def md5_hierarchy(self, **level: Unpack[HashLevel]) -> str:
        return self.client.md5_hierarchy(**level)

    def sop_instance_uids(self, series_uid: str) -> list[str]:
        return self.client.sop_instance_uids(series_uid)

    def image_md5(self, sop_uid: str) -> str | None:
        # The endpoint answers "" for an image without a stored MD5 (protocol §2.4).
        return self.client.image_md5(sop_uid) or None

    def series_size(self, series_uid: str) -> SeriesSize | None:
        return self.client.series_size(series_uid)

    def download_series(
        self, series_uid: str, dest: Path, **options: Unpack[DownloadOptions]
    ) -> SeriesDownload:
        return self.client.download_series(series_uid, dest, **options)

    def close(self) -> None:
        self.client.close()
