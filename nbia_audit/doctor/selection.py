"""The doctor's rows about what a spec selects by and a lock records: DOI, licenses, updates.

``lock`` resolves a spec's ``doi:`` through ``getCollectionOrSeriesForDOI`` (series level),
records each series' license by matching ``LicenseName`` with ``getLicenses``' ``longName``,
and ``drift`` asks ``v4/getUpdatedSeries`` with ``fromDate`` in ``MM-dd-yyyy`` (protocol §5,
§7). One request each.
"""

from __future__ import annotations

from datetime import UTC, datetime

from nbia_audit.doctor.checks import Check, SeriesFacts, check, describe, json_rows, skip
from nbia_audit.doctor.http import Prober

__all__ = ["selection_checks"]


def selection_checks(
    prober: Prober, facts: SeriesFacts, *, today: str | None = None
) -> list[Check]:
    """The DOI, license and updated-series rows; ``today`` is ``MM-dd-yyyy`` (UTC by default)."""
    return [_doi(prober, facts), _licenses(prober, facts), _updated(prober, today)]


def _doi(prober: Prober, facts: SeriesFacts) -> Check:
    title = "v4/getCollectionOrSeriesForDOI (series level) finds the sample"
    expected = (
        "200, JSON rows of {collection, seriesInstanceUID} for the series' DataDescriptionURI, "
        "the sample among them"
    )
    if facts.doi is None:
        return skip("doi-series", title, expected, "the series row has no DataDescriptionURI")
    form = {"DOI": facts.doi, "CollectionOrSeries": "Series"}
    answer = prober.post("v4/getCollectionOrSeriesForDOI", form)
    rows = json_rows(answer)
    found = [
        r
        for r in rows or []
        if r.get("seriesInstanceUID") == facts.series_uid and r.get("collection")
    ]
    note = f"{len(rows)} row(s), sample {'listed' if found else 'absent'}" if rows else "no rows"
    ok = answer.status == 200 and len(found) == 1
    return check("doi-series", title, expected, describe(answer, note), ok)


def _licenses(prober: Prober, facts: SeriesFacts) -> Check:
    title = "getLicenses names the series' license"
    expected = (
        "200, JSON rows of {id, longName, shortName, licenseURL}; the series' LicenseName is a "
        "longName (or its LicenseURI a licenseURL)"
    )
    if facts.license_name is None:
        return skip("licenses", title, expected, "the series row has no LicenseName")
    answer = prober.get("getLicenses")
    rows = json_rows(answer)
    shaped = rows is not None and all(
        isinstance(r.get("longName"), str) and isinstance(r.get("shortName"), str) for r in rows
    )
    matching = [
        r
        for r in rows or []
        if r.get("longName") == facts.license_name
        or (facts.license_url and r.get("licenseURL") == facts.license_url)
    ]
    note = f"{len(rows or [])} license(s), {len(matching)} for {facts.license_name!r}"
    ok = answer.status == 200 and shaped and bool(matching)
    return check("licenses", title, expected, describe(answer, note), ok)


def _updated(prober: Prober, today: str | None) -> Check:
    title = "v4/getUpdatedSeries?fromDate=<today, MM-dd-yyyy>"
    expected = "200, a JSON array of series rows (each with SeriesInstanceUID), or no rows"
    when = today or datetime.now(UTC).strftime("%m-%d-%Y")
    answer = prober.get("v4/getUpdatedSeries", {"fromDate": when})
    rows = json_rows(answer)
    ok = (
        answer.status == 200
        and rows is not None
        and all(isinstance(r.get("SeriesInstanceUID"), str) for r in rows)
    )
    note = f"{len(rows)} series since {when}" if rows is not None else "not a JSON array"
    return check("updated-series", title, expected, describe(answer, note), ok)
