"""The archive as the verbs see it: a thin view over ``NbiaClient`` in the verbs' terms.

The verbs (selection, pinning, locking) depend on small protocols, not on the client's full
surface; this adapter is the one place that maps between them, so an API change in the
client touches one file.
"""

from __future__ import annotations

from collections.abc import Sequence

from nbia_audit.client import NbiaClient
from nbia_audit.client.records import License, SeriesInfo
from nbia_audit.client.search import SearchCriterion

__all__ = ["ArchiveView"]


class ArchiveView:
    """Implements ``selection.Archive`` and ``pinning.HashArchive`` over an ``NbiaClient``."""

    def __init__(self, client: NbiaClient) -> None:
        self.client = client

    @property
    def base_url(self) -> str:
        return self.client.urls.services

    def collections(self) -> list[str]:
        return self.client.collections()

    def series(
        self,
        *,
        collection: str | None = None,
        patient_id: str | None = None,
        study_uid: str | None = None,
    ) -> list[SeriesInfo]:
        return self.client.series(collection=collection, patient_id=patient_id, study_uid=study_uid)

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

    def md5_hierarchy(
        self,
        *,
        series_uid: str | None = None,
        study_uid: str | None = None,
        patient_id: str | None = None,
        collection: str | None = None,
    ) -> str:
        return self.client.md5_hierarchy(
            series_uid=series_uid, study_uid=study_uid, patient_id=patient_id, collection=collection
        )

    def sop_instance_uids(self, series_uid: str) -> list[str]:
        return self.client.sop_instance_uids(series_uid)

    def image_md5(self, sop_uid: str) -> str | None:
        return self.client.image_md5(sop_uid) or None
