"""Manifest endpoints (``.tcia`` text) and shared carts.

Manifests name series without hashes, counts or sizes, and several endpoints make them without
any access or visibility check (protocol §6.2): resolve the UIDs through the metadata calls
before pinning anything. Shared carts are mutable (supplement §1): inputs, never pins.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from nbia_audit.client import parse
from nbia_audit.client.core import EndpointGroup, Route
from nbia_audit.client.records import SeriesInfo, SharedList
from nbia_audit.client.redact import excerpt
from nbia_audit.client.search import SearchCriterion, simple_search_form
from nbia_audit.client.transport import FormData
from nbia_audit.errors import ApiProtocolError, SpecError
from nbia_audit.manifest import Manifest, parse_manifest

__all__ = ["ManifestCalls"]


class ManifestCalls(EndpointGroup):
    """Calls that return manifests or cart contents."""

    def manifest_for_series(
        self, series_uids: Iterable[str], *, include_annotation: bool = False
    ) -> Manifest:
        """Return the server's manifest for these series, echoed in request order.

        Uses ``v4/getManifestText`` or, off v4, ``getManifestTextV2`` (token). The server checks
        nothing: unknown or hidden UIDs are echoed too (protocol §6.2).

        Raises:
            ValueError: no series given.
            ApiError: the call failed or the answer is not a manifest.
        """
        uids = list(series_uids)
        if not uids:
            raise ValueError("a manifest needs at least one series UID")
        route = Route("v4/getManifestText" if self._family == "v4" else "getManifestTextV2", "POST")
        # includeAnnotation is always sent: the unversioned endpoint fails (500) without it.
        return self._manifest(route, {"list": uids, "includeAnnotation": _flag(include_annotation)})

    def manifest_from_patient_study_series(
        self,
        *,
        patient_ids: Sequence[str] = (),
        study_uids: Sequence[str] = (),
        series_uids: Sequence[str] = (),
        include_annotation: bool = False,
    ) -> Manifest:
        """Return a manifest of every series matching ANY of the given IDs (a union).

        PatientIDs match across collections and no visibility filter applies (protocol §6.2);
        ``anyOrAll`` is ignored by the server and therefore never sent.

        Raises:
            ValueError: no IDs given.
            ApiError: the call failed or the answer is not a manifest.
        """
        if not (patient_ids or study_uids or series_uids):
            raise ValueError("give at least one patient ID, study UID or series UID")
        form = {
            name: ",".join(values)
            for name, values in (
                ("patientIDs", patient_ids),
                ("studyUIDs", study_uids),
                ("seriesUIDs", series_uids),
            )
            if values
        }
        form["includeAnnotation"] = _flag(include_annotation)
        return self._manifest(
            self._v4_or_advanced("getManifestFromPatientStudySeries", "POST"), form
        )

    def manifest_for_collection(
        self, collection: str, *, include_annotation: bool = False
    ) -> Manifest:
        """Return the manifest of a collection's visible series (``v4/getManifestForCollection``).

        Raises:
            ApiError: the call failed or the answer is not a manifest.
        """
        form = {"collection": collection, "includeAnnotation": _flag(include_annotation)}
        return self._manifest(Route("v4/getManifestForCollection", "POST"), form)

    def manifest_for_simple_search(self, criteria: Sequence[SearchCriterion]) -> Manifest:
        """Return the manifest of a simple search, taking every matching patient at once.

        Results may be cached server-side for hours (supplement §2.3); the server always writes
        ``includeAnnotation=false``.

        Raises:
            ValueError: the criteria are incomplete (see ``simple_search_form``).
            ApiError: the call failed or the answer is not a manifest.
        """
        form = simple_search_form(criteria, v4=self._family == "v4")
        return self._manifest(self._v4_or_advanced("getManifestForSimpleSearch", "POST"), form)

    def manifest_for_text_search(self, text: str) -> Manifest:
        """Return the manifest of a free-text search (Solr; at most 1,000 patients).

        Every visible series of each matching patient is listed, not only the matching ones,
        and the index lags the database (supplement §3): not for pinning.

        Raises:
            ValueError: ``text`` is shorter than the 2 characters the server searches for.
            ApiError: the call failed or the answer is not a manifest.
        """
        if len(text.strip()) < 2:
            raise ValueError("a text search needs at least 2 characters")
        return self._manifest(Route("getManifestForTextSearch", "POST"), {"textValue": text})

    def cart_contents(self, name: str) -> list[SeriesInfo]:
        """Return the visible series of a shared cart (``getContentsByName``, v1 or v2).

        Hidden or withdrawn series are dropped silently by the server (supplement §1.4); compare
        with :meth:`shared_list`. v4 has no such endpoint, so the v4 family uses v1, or v2 when
        the client has credentials (a user's private carts need the user's token).

        Raises:
            ApiError: the call failed.
        """
        family = (
            self._family
            if self._family != "v4"
            else ("v2" if self._caller.has_credentials else "v1")
        )
        route = Route(f"{family}/getContentsByName")
        return self._records(route, parse.series_info, params={"name": name})

    def shared_list(self, name: str) -> SharedList | None:
        """Return a shared cart as stored, hidden series included, or None if unknown.

        Raises:
            ApiError: the call failed or the answer is not a cart object.
        """
        route = Route("getSharedList", "POST")
        lists = self._records(route, parse.shared_list, data={"nameValue": name})
        return lists[0] if lists else None

    def cart_data(self, series_pk_ids: Iterable[int]) -> list[SeriesInfo]:
        """Return the series behind database keys from a simple search (``getCartData``).

        The values are NBIA's integer ``general_series`` keys, not UIDs (supplement §1.5); they
        differ between servers, so never store them.

        Raises:
            ApiError: the call failed.
        """
        route = self._v4_or_advanced("getCartData", "POST")
        rows = self._json_rows(route, data={"list": [str(int(pk)) for pk in series_pk_ids]})
        return [
            parse.cart_series(study, item, route.name)
            for study in rows
            for item in _list_of_objects(study.get("seriesList"))
        ]

    def create_shared_list(
        self, name: str, series_uids: Iterable[str], *, description: str = "", url: str = ""
    ) -> None:
        """Create a shared cart owned by the client's user (guest without credentials).

        The request is all-or-nothing and is not retried after it may have reached the server.

        Raises:
            ValueError: no name or no series.
            ApiBadRequest: ``Duplicate list name``, or a series is unknown, hidden or not
                accessible (``User does not have permission for all series in list``).
            ApiError: the call failed otherwise.
        """
        uids = list(series_uids)
        if not name.strip() or not uids:
            raise ValueError("a shared list needs a name and at least one series UID")
        form: dict[str, str | list[str]] = {"list": uids, "name": name}
        if description:
            form["description"] = description
        if url:
            form["url"] = url
        self._caller.fetch(Route("createSharedList", "POST"), data=form, idempotent=False)

    def _manifest(self, route: Route, form: FormData) -> Manifest:
        def decode(body: bytes) -> Manifest:
            text = body.decode("utf-8", errors="replace")
            if not text.strip():
                return Manifest(series_uids=())
            try:
                return parse_manifest(text, source=f"{route.name} answer")
            except SpecError as exc:
                raise ApiProtocolError(
                    f"{route.name}: the answer is not a .tcia manifest: {excerpt(str(exc), 300)}"
                ) from exc

        return self._decoded(route, decode, data=form)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _list_of_objects(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
