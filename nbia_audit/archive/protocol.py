"""The one Archive protocol: everything the verbs ask of an NBIA archive, in their terms.

``lock``, ``drift`` and ``fetch`` all depend on this protocol and nothing wider;
:class:`~nbia_audit.archive.view.ArchiveView` implements it over ``NbiaClient`` and
:class:`~nbia_audit.archive.counting.CountingArchive` counts the calls made through it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypedDict, Unpack, runtime_checkable

from nbia_audit.client.download import StreamLimits
from nbia_audit.client.records import License, SeriesDownload, SeriesInfo, SeriesSize

__all__ = ["Archive", "DownloadOptions", "HashLevel", "SeriesScope"]


class HashLevel(TypedDict, total=False):
    """One node of NBIA's hash tree as ``getMD5Hierarchy`` names it: exactly one of
    ``series_uid``, ``study_uid``, ``collection`` with ``patient_id`` (a patient belongs to a
    collection), or ``collection`` alone (protocol §1.1)."""

    series_uid: str
    study_uid: str
    patient_id: str
    collection: str


class SeriesScope(TypedDict, total=False):
    """What one ``getSeries`` listing is narrowed to (any combination)."""

    collection: str | None
    patient_id: str | None
    study_uid: str | None


class DownloadOptions(TypedDict, total=False):
    """How one series download reports progress and is bounded."""

    on_bytes: Callable[[int], None] | None
    limits: StreamLimits | None


@runtime_checkable  # so open_archive can refuse what is not one, by its methods
class Archive(Protocol):
    """The archive as every verb sees it (``ArchiveView`` provides it over ``NbiaClient``)."""

    @property
    def base_url(self) -> str: ...

    # Listings: what a spec's selectors resolve to.
    def collections(self) -> list[str]: ...

    def series(self, **scope: Unpack[SeriesScope]) -> list[SeriesInfo]: ...

    def series_metadata(self, series_uids: Sequence[str]) -> list[SeriesInfo]: ...

    def series_for_doi(self, doi: str) -> list[str]: ...

    def cart_series(self, name: str) -> list[str]: ...

    def simple_search_series(self, criteria: Sequence[tuple[str, str]]) -> list[str]: ...

    def text_search_series(self, text: str) -> list[str]: ...

    def licenses(self) -> list[License]: ...

    def updated_series(self, since: dt.date) -> list[SeriesInfo]: ...

    # Hashes: the archive's own, verbatim ("" when it has none).
    def md5_hierarchy(self, **level: Unpack[HashLevel]) -> str: ...

    def sop_instance_uids(self, series_uid: str) -> list[str]: ...

    def image_md5(self, sop_uid: str) -> str | None: ...

    # Bytes.
    def series_size(self, series_uid: str) -> SeriesSize | None: ...

    def download_series(
        self, series_uid: str, dest: Path, **options: Unpack[DownloadOptions]
    ) -> SeriesDownload: ...

    def close(self) -> None: ...
