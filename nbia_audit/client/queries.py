"""Metadata endpoints: collections, patients, studies, series, sizes, DOIs, licenses."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date

from nbia_audit.client import parse
from nbia_audit.client.core import Auth, EndpointGroup, Route, clean_params
from nbia_audit.client.records import (
    CollectionDescription,
    DoiMatch,
    License,
    Patient,
    SeriesInfo,
    SeriesSize,
    Study,
)

__all__ = ["MetadataQueries"]


class MetadataQueries(EndpointGroup):
    """Read-only metadata calls; every list is returned whole (NBIA does not page them)."""

    _metadata_batch_size: int

    def collections(self) -> list[str]:
        """Return the names of the collections the caller may see (``getCollectionValues``).

        Raises:
            ApiError: the call failed (see the ``nbia_audit.errors`` tree).
        """
        route = self._versioned("getCollectionValues")
        return self._records(route, parse.collection_name)

    def patients(
        self, collection: str | None = None, patient_id: str | None = None
    ) -> list[Patient]:
        """Return patients, optionally of one collection or one PatientID (``getPatient``).

        Raises:
            ApiError: the call failed.
        """
        # NBIA spells this query parameter "PatientId" on getPatient only (protocol §5).
        params = clean_params(Collection=collection, PatientId=patient_id)
        route = self._versioned("getPatient")
        return self._records(route, parse.patient, params=params)

    def studies(
        self,
        collection: str | None = None,
        patient_id: str | None = None,
        study_uid: str | None = None,
    ) -> list[Study]:
        """Return studies filtered by collection, patient or study (``getPatientStudy``).

        Raises:
            ApiError: the call failed.
        """
        params = clean_params(
            Collection=collection, PatientID=patient_id, StudyInstanceUID=study_uid
        )
        route = self._versioned("getPatientStudy")
        return self._records(route, parse.study, params=params)

    def series(
        self,
        *,
        collection: str | None = None,
        patient_id: str | None = None,
        study_uid: str | None = None,
        series_uid: str | None = None,
        modality: str | None = None,
        body_part: str | None = None,
        manufacturer: str | None = None,
        manufacturer_model: str | None = None,
    ) -> list[SeriesInfo]:
        """Return the visible series matching every given filter (``getSeries``).

        Raises:
            ApiError: the call failed.
        """
        params = clean_params(
            Collection=collection,
            PatientID=patient_id,
            StudyInstanceUID=study_uid,
            SeriesInstanceUID=series_uid,
            Modality=modality,
            BodyPartExamined=body_part,
            Manufacturer=manufacturer,
            ManufacturerModelName=manufacturer_model,
        )
        route = self._versioned("getSeries")
        return self._records(route, parse.series_info, params=params)

    def series_metadata(self, series_uids: Iterable[str]) -> list[SeriesInfo]:
        """Return full metadata for each visible, accessible series among ``series_uids``.

        v4 batches ``v4/getSeriesMetadata`` (POST, JSON); the v2 family batches the Advanced
        ``getSeriesMetadata2`` (CSV, token); v1 asks ``v1/getSeriesMetaData`` once per series.
        Series the server does not return (unknown, hidden, or 204 "inaccessible" on v1/v2)
        are simply absent: compare the UIDs of the result with the request.

        Raises:
            ApiError: a call failed.
        """
        uids = list(dict.fromkeys(series_uids))
        if self._family == "v1":
            return [info for uid in uids for info in self._series_metadata_one(uid)]
        found: list[SeriesInfo] = []
        for batch in _batches(uids, self._metadata_batch_size):
            found.extend(self._series_metadata_batch(batch))
        return found

    def _series_metadata_batch(self, batch: list[str]) -> list[SeriesInfo]:
        if self._family == "v4":
            route = Route("v4/getSeriesMetadata", "POST")
            return self._records(route, parse.series_info, data={"list": batch, "format": "json"})
        route = Route("getSeriesMetadata2", "POST")

        # The DAO reads only the first "list" value and splits it on commas
        # (StudyDAOImpl#getSeriesMetadata), unlike v4, which takes repeated values.
        def decode(body: bytes) -> list[SeriesInfo]:
            rows = parse.decode_csv_rows(body, route.name)
            return [parse.series_info(row, route.name) for row in rows]

        return self._decoded(route, decode, data={"list": ",".join(batch)})

    def _series_metadata_one(self, series_uid: str) -> list[SeriesInfo]:
        route = self._versioned("getSeriesMetaData")
        # An empty 204 means the series is not accessible (protocol §5): no row.
        return self._records(route, parse.series_info, params={"SeriesInstanceUID": series_uid})

    def series_size(self, series_uid: str) -> SeriesSize | None:
        """Return the series' stored size and image count, or None if the server has none.

        Raises:
            ApiError: the call failed.
        """
        route = self._versioned("getSeriesSize")
        sizes = self._records(route, parse.series_size, params={"SeriesInstanceUID": series_uid})
        return sizes[0] if sizes else None

    def sop_instance_uids(self, series_uid: str) -> list[str]:
        """Return the SOPInstanceUIDs of a series' images (``getSOPInstanceUIDs``).

        Raises:
            ApiError: the call failed.
        """
        route = self._versioned("getSOPInstanceUIDs")
        return self._records(
            route, parse.sop_instance_uid, params={"SeriesInstanceUID": series_uid}
        )

    def updated_series(self, since: date) -> list[SeriesInfo]:
        """Return series released since ``since`` (``getUpdatedSeries``).

        The server compares each release timestamp with midnight of ``since``
        (``GeneralSeriesDAOImpl``), so a series released later on that same day is included.

        The date is written as each family expects: ``MM-dd-yyyy`` on v4, ``dd/MM/yyyy`` on
        v1/v2 (protocol §5).

        Raises:
            ApiError: the call failed.
        """
        text = since.strftime("%m-%d-%Y" if self._family == "v4" else "%d/%m/%Y")
        route = self._versioned("getUpdatedSeries")
        return self._records(route, parse.series_info, params={"fromDate": text})

    def collection_or_series_for_doi(
        self, doi: str, *, series_level: bool = False
    ) -> list[DoiMatch]:
        """Return the collections (or, with ``series_level``, the series) citing ``doi``.

        ``doi`` must equal the archive's stored URI, e.g. ``https://doi.org/10.7937/…``; the
        comparison ignores case under MySQL's default collation [inferred].
        No visibility filter applies here (supplement §5): hidden series may be listed.

        Raises:
            ValueError: ``doi`` is empty (the server would then list everything).
            ApiError: the call failed.
        """
        if not doi.strip():
            raise ValueError("a DOI is required; an empty one would match every collection")
        route = self._v4_or_advanced("getCollectionOrSeriesForDOI", "POST")
        form = {"DOI": doi, "CollectionOrSeries": "Series" if series_level else "Collection"}
        return self._records(route, parse.doi_match, data=form)

    def licenses(self) -> list[License]:
        """Return every license the archive knows (``getLicenses``; no token needed).

        Raises:
            ApiError: the call failed.
        """
        route = Route("getLicenses", auth=Auth.WITH_CREDENTIALS)
        return self._records(route, parse.license_record)

    def collection_descriptions(self, collection: str | None = None) -> list[CollectionDescription]:
        """Return collection descriptions (HTML), optionally of one collection.

        Raises:
            ApiError: the call failed.
        """
        route = self._v4_or_advanced("getCollectionDescriptions")
        params = clean_params(collectionName=collection)
        return self._records(route, parse.collection_description, params=params)


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
