"""Hash endpoints (``getMD5Hierarchy``, per-image MD5) and streamed series downloads."""

from __future__ import annotations

from pathlib import Path

from nbia_audit.client import shapes
from nbia_audit.client.core import EndpointGroup, Route, clean_params
from nbia_audit.client.download import StreamLimits, stream_series_zip
from nbia_audit.client.records import SeriesDownload
from nbia_audit.progress import BytesCallback

__all__ = ["HashCalls"]


class HashCalls(EndpointGroup):
    """The archive's hashes, returned verbatim, and the series ZIP download."""

    _download_chunk_size: int

    def md5_hierarchy(
        self,
        *,
        series_uid: str | None = None,
        study_uid: str | None = None,
        patient_id: str | None = None,
        collection: str | None = None,
    ) -> str:
        """Return the archive's hierarchy hash of one object, verbatim; "" when not found.

        Give exactly one level: ``series_uid``, ``study_uid``, ``collection`` with
        ``patient_id`` (a patient is scoped to a collection, protocol §1.1), or ``collection``
        alone. The collection hash is cached by the server and lags by up to a day (§1.3).

        Raises:
            ValueError: not exactly one level, or a patient without its collection.
            ApiError: the call failed.
        """
        if patient_id is not None and collection is None:
            raise ValueError("a patient hash needs the patient's collection too")
        levels = [series_uid, study_uid, patient_id if patient_id is not None else collection]
        if sum(level is not None for level in levels) != 1:
            raise ValueError("give exactly one of series_uid, study_uid, patient_id, collection")
        form = clean_params(
            SeriesInstanceUID=series_uid,
            StudyInstanceUID=study_uid,
            PatientID=patient_id,
            Collection=collection,
        )
        # v4 answers as guest without a token; the unversioned form fails (500) without one.
        route = self._v4_or_advanced("getMD5Hierarchy", "POST")
        return self._decoded(route, lambda body: shapes.hierarchy_hash(body, route.name), data=form)

    def series_hash(self, series_uid: str) -> str:
        """Return the archive's series hash, verbatim ("" when unknown).

        Raises:
            ApiError: the call failed.
        """
        return self.md5_hierarchy(series_uid=series_uid)

    def study_hash(self, study_uid: str) -> str:
        """Return the archive's study hash, verbatim ("" when unknown).

        Raises:
            ApiError: the call failed.
        """
        return self.md5_hierarchy(study_uid=study_uid)

    def patient_hash(self, collection: str, patient_id: str) -> str:
        """Return the archive's hash of one patient within one collection ("" when unknown).

        Raises:
            ApiError: the call failed.
        """
        return self.md5_hierarchy(collection=collection, patient_id=patient_id)

    def collection_hash(self, collection: str) -> str:
        """Return the archive's cached collection hash, verbatim ("" when unknown).

        Raises:
            ApiError: the call failed.
        """
        return self.md5_hierarchy(collection=collection)

    def image_md5(self, sop_instance_uid: str) -> str:
        """Return the archive's stored MD5 string of one image, verbatim; "" when unknown.

        The value may be shorter than 32 characters for historic images (protocol §3).

        Raises:
            ApiError: the call failed.
        """
        if self._family == "v4":
            route = Route("v4/getMD5HashForImage")
            params = {"SOPInstanceUID": sop_instance_uid}
        else:
            # v1/v2 spell both the endpoint and the parameter differently (protocol §2.4).
            route = self._versioned("getM5HashForImage")
            params = {"SOPInstanceUid": sop_instance_uid}
        return self._decoded(route, lambda body: shapes.image_md5(body, route.name), params=params)

    def download_series(
        self,
        series_uid: str,
        dest: str | Path,
        *,
        on_bytes: BytesCallback | None = None,
        limits: StreamLimits | None = None,
    ) -> SeriesDownload:
        """Stream a series ZIP (``getImageWithMD5Hash``) to ``dest`` with bounded memory.

        ``dest`` is overwritten; the caller owns temporary naming and the final rename. A
        broken or truncated stream is retried from the start (NBIA has no Range support).
        ``on_bytes`` receives the size of each chunk written and, when an attempt is
        abandoned, the negative count of its bytes, so a running sum equals the bytes on
        disk. The ZIP's completeness against the catalogue is the caller's check. The
        download is cut when it breaks ``limits`` (a total deadline and a minimum throughput,
        ``StreamLimits()`` by default), and then not restarted.

        Raises:
            ApiBadRequest: the series is unknown, hidden or not accessible (protocol §2.1).
            DownloadError: the stream kept breaking, or ``dest`` could not be written.
            ApiError: the call failed otherwise.
        """
        route = self._versioned("getImageWithMD5Hash")
        return stream_series_zip(
            self._caller,
            route,
            series_uid,
            Path(dest),
            on_bytes=on_bytes,
            chunk_size=self._download_chunk_size,
            limits=limits,
        )
