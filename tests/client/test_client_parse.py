"""Pure tests of nbia_audit.client.parse against the shapes of real NBIA answers.

Real samples are read from ../shared/real-samples when present (never copied into the repo);
the tests that need them are skipped elsewhere.
"""

from __future__ import annotations

import ast
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from nbia_audit.client import parse
from nbia_audit.client.records import SeriesSize
from nbia_audit.errors import ApiProtocolError

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "real-samples"
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason="real samples are not present")
EP = "test/endpoint"


def _python_literal(name: str) -> Any:
    """The first Python literal in a pyrepr/pprint sample (skipping the notebook's prose)."""
    text = (SAMPLES / name).read_text()
    start = min(i for i in (text.find("["), text.find("{")) if i >= 0)
    return ast.literal_eval(text[start:].strip())


# -- decoding --------------------------------------------------------------------------------------


def test_an_empty_body_means_no_rows() -> None:
    assert parse.decode_json_rows(b"", EP) == []
    assert parse.decode_json_rows(b"  \n", EP) == []
    assert parse.decode_csv_rows(b"", EP) == []


def test_a_single_object_is_one_row() -> None:
    assert parse.decode_json_rows(b'{"a": 1}', EP) == [{"a": 1}]


@pytest.mark.parametrize("body", [b"Server was not able to process your request", b"[1, 2]", b"42"])
def test_bodies_that_are_not_arrays_of_objects_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(ApiProtocolError, match=EP):
        parse.decode_json_rows(body, EP)


def test_jettison_escaped_slashes_decode() -> None:
    # Jettison writes every "/" as "\/" (supplement §0).
    rows = parse.decode_json_rows(b'[{"CollectionURI":"https:\\/\\/doi.org\\/10.1\\/x"}]', EP)
    assert rows[0]["CollectionURI"] == "https://doi.org/10.1/x"


def test_csv_with_more_fields_than_the_header_is_a_protocol_error() -> None:
    with pytest.raises(ApiProtocolError, match="line 2"):
        parse.decode_csv_rows(b'"a","b"\n"1","2","3"\n', EP)


# -- dates -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("08-29-2017", datetime(2017, 8, 29)),  # v4 and v1/v2 getSeriesMetaData Study Date
        ("2020-02-21 15:12:42.0", datetime(2020, 2, 21, 15, 12, 42)),  # v1/v2 lists
        ("2000-01-01 00:00:00.0", datetime(2000, 1, 1)),
        ("Mon Nov 04 11:45:52 UTC 2013", datetime(2013, 11, 4, 11, 45, 52)),  # Date.toString()
        ("2023-03-16", datetime(2023, 3, 16)),
        ("", None),
        ("not a date", None),
        (None, None),
    ],
)
def test_every_date_format_nbia_emits(raw: str | None, expected: datetime | None) -> None:
    assert parse.parse_timestamp(raw) == expected
    assert parse.parse_date(raw) == (expected.date() if expected else None)


@needs_samples
def test_java_date_strings_of_the_real_metadata_sample_parse() -> None:
    text = (SAMPLES / "getSeriesMetaData__2.pandas.txt").read_text()
    stamps = re.findall(r"[A-Z][a-z]{2} [A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d UTC \d{4}", text)
    assert stamps
    assert all(parse.parse_timestamp(stamp) is not None for stamp in stamps)
    assert parse.parse_timestamp("Wed Jun 20 00:00:00 UTC 2001") == datetime(2001, 6, 20)


# -- series ----------------------------------------------------------------------------------------


@needs_samples
def test_v1_get_series_rows() -> None:
    rows = _python_literal("getSeries__1.pyrepr.txt")
    infos = [parse.series_info(row, EP) for row in rows]
    first = infos[0]
    assert first.series_uid == "1.3.6.1.4.1.14519.5.2.1.6279.6001.141365756818074696859567662357"
    assert (first.collection, first.patient_id, first.modality) == (
        "LIDC-IDRI",
        "LIDC-IDRI-0001",
        "DX",
    )
    assert first.series_number == 3000923 and first.image_count == 2
    assert first.annotations is True
    assert (
        first.series_date == date(2000, 1, 1) and first.series_date_raw == "2000-01-01 00:00:00.0"
    )
    assert first.max_submission == datetime(2020, 2, 21, 15, 12, 42)
    assert first.doi is None and first.license_name is None and first.file_size is None
    assert all(info.series_uid for info in infos)


@needs_samples
def test_a_v1_row_without_annotations_flag() -> None:
    rows = _python_literal("getSeries__7.pyrepr.txt")
    by_uid = {row["SeriesInstanceUID"]: row for row in rows}
    uid = next(u for u in by_uid if u.endswith("154145395981214039394434950814"))
    assert "AnnotationsFlag" not in by_uid[uid]
    assert parse.series_info(by_uid[uid], EP).annotations is None


@needs_samples
@pytest.mark.parametrize(
    "name", ["getSeries__2.pyrepr.txt", "getSeries__3.pyrepr.txt", "getSeries__8.pyrepr.txt"]
)
def test_v2_get_series_rows_carry_license_doi_size_and_release(name: str) -> None:
    for row in _python_literal(name):
        info = parse.series_info(row, EP)
        assert info.doi == row["CollectionURI"]
        assert info.license_url == row["LicenseURI"] and info.license_name == row["LicenseName"]
        assert info.file_size == row["FileSize"]
        assert info.released_raw == row["DateReleased"]
        assert info.released is not None and info.released == info.max_submission
        assert info.study_description == row.get("StudyDesc")
        assert info.software_versions == row.get("SoftwareVersions")
        assert info.protocol_name == row.get("ProtocolName")


@needs_samples
def test_a_2024_v2_row_without_release_fields() -> None:
    row = _python_literal("getSeries__4.pyrepr.txt")
    info = parse.series_info(row, EP)
    assert info.released is None and info.study_date is None
    assert info.doi == "https://doi.org/10.7937/K9/TCIA.2016.IMMQW8UQ"
    assert info.series_number == 3 and info.file_size == 4117194


def test_a_v4_get_series_row() -> None:
    row = {
        "SeriesInstanceUID": "1.2.3",
        "StudyInstanceUID": "1.2",
        "Modality": "CT",
        "SeriesDate": "06-20-2001",
        "SeriesNumber": 3,
        "Collection": "C",
        "Site": "S",
        "PatientID": "P",
        "ImageCount": 10,
        "MaxSubmissionTimestamp": "11-04-2013",
        "LicenseName": "CC BY 4.0",
        "LicenseURI": "https://creativecommons.org/licenses/by/4.0/",
        "DataDescriptionURI": "https://doi.org/10.7937/x",
        "FileSize": 5242880,
        "ReleasedStatus": "Released",
        "DateReleased": "11-05-2013",
        "StudyDate": "06-20-2001",
        "ThirdPartyAnalysis": "NO",
        "Authorized": "1",
    }
    info = parse.series_info(row, EP)
    assert info.released == datetime(2013, 11, 5) and info.released_raw == "11-05-2013"
    assert info.max_submission == datetime(2013, 11, 4)
    assert info.series_date == date(2001, 6, 20) and info.study_date == date(2001, 6, 20)
    assert info.doi == "https://doi.org/10.7937/x"
    assert (info.third_party, info.authorized, info.site) == (False, True, "S")


@needs_samples
def test_v2_get_series_metadata_pretty_keys_from_a_real_cache() -> None:
    row = json.loads((SAMPLES / "getSeriesMetaData__3.go-struct-remarshalled.json").read_text())
    info = parse.series_info(row, EP)
    assert info.series_uid.endswith("419081637812053404913157930753972718515")
    assert info.patient_id == "Calc-Test_P_00038_LEFT_CC_1"
    assert info.series_number == 1  # "1.000000"
    assert (info.image_count, info.file_size) == (2, 14055890)
    assert info.study_date == date(2017, 8, 29)
    assert info.manufacturer is None and info.third_party is None  # "" means absent
    assert info.license_url == "http://creativecommons.org/licenses/by/3.0/"
    assert info.doi == "https://doi.org/10.7937/K9/TCIA.2016.7O02S9CY"


def test_v1_metadata_values_keep_the_server_doi_verbatim() -> None:
    # Real value (getSeriesMetaData__1): the colon is missing in the archive's data.
    row = {
        "Series UID": "1.2",
        "Data Description URI": "https//doi.org/10.7937/tcia.nbb4-4655",
        "3rd Party Analysis": "yes",
        "Series Number": "300.000000",
        "Annotation Size": 0,
    }
    info = parse.series_info(row, EP)
    assert info.doi == "https//doi.org/10.7937/tcia.nbb4-4655"
    assert info.third_party is True and info.series_number == 300


@needs_samples
def test_get_series_metadata2_csv_including_a_quoted_comma() -> None:
    header = (SAMPLES / "getSeriesMetadata2__1.csv").read_text().splitlines()[0]
    whole = parse.decode_csv_rows((SAMPLES / "getSeriesMetadata2__1.csv").read_bytes(), EP)
    assert len(whole) == 20
    first = parse.series_info(whole[0], EP)
    assert first.series_uid == "1.3.6.1.4.1.14519.5.2.1.6279.6001.100225287222365663678666836860"
    assert (first.collection, first.patient_id, first.image_count) == (
        "LIDC-IDRI",
        "LIDC-IDRI-1001",
        194,
    )
    assert first.file_size == 102096016 and first.study_date == date(2000, 1, 1)
    assert first.study_description is None  # "" in the CSV
    body = (header + "\n" + (SAMPLES / "getSeriesMetadata2__2.csv").read_text()).encode()
    quoted = parse.series_info(parse.decode_csv_rows(body, EP)[0], EP)
    assert quoted.study_description == "CHEST, PA & LATERAL" and quoted.modality == "DX"


def test_get_contents_by_name_row_with_a_spaced_key() -> None:
    row = {
        "SeriesInstanceUID": "1.2",
        "SeriesNumber": 300,
        "ImageCount": 1,
        "AnnotationsFlag": False,
        "Date Released": "2020-09-03 00:00:00.0",
    }
    info = parse.series_info(row, EP)
    assert info.released == datetime(2020, 9, 3) and info.annotations is False


def test_a_row_without_a_series_uid_is_a_protocol_error() -> None:
    with pytest.raises(ApiProtocolError, match="SeriesInstanceUID"):
        parse.series_info({"Modality": "CT"}, EP)


# -- other records ---------------------------------------------------------------------------------


@needs_samples
@pytest.mark.parametrize(
    "name", ["getPatient__1.pprint.txt", "NewPatientsInCollection__1.pprint.txt"]
)
def test_patients_use_the_patient_id_key_with_a_lowercase_d(name: str) -> None:
    for row in _python_literal(name):
        patient = parse.patient(row, EP)
        assert patient.patient_id == row["PatientId"]
        assert patient.species_code == "337915000" and patient.ethnic_group == row.get(
            "EthnicGroup"
        )


@needs_samples
@pytest.mark.parametrize("name", ["getPatientStudy__1.pprint.txt", "getPatientStudy__2.pprint.txt"])
def test_studies(name: str) -> None:
    for row in _python_literal(name):
        study = parse.study(row, EP)
        assert study.study_uid == row["StudyInstanceUID"]
        assert study.series_count == row["SeriesCount"]
        assert study.study_date is not None and study.study_date_raw == row["StudyDate"]
        assert study.patient_age == row["PatientAge"]


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"TotalSizeInBytes": 52428800, "ObjectCount": 100}, SeriesSize(52428800, 100)),
        ({"TotalSizeInBytes": "12345.000000", "ObjectCount": "3"}, SeriesSize(12345, 3)),
        ({"ObjectCount": 0}, SeriesSize(0, 0)),  # v4, a series without images
        ({}, None),  # v1's all-null row for an unknown series
    ],
)
def test_series_sizes(row: dict[str, Any], expected: SeriesSize | None) -> None:
    assert parse.series_size(row, EP) == expected


@pytest.mark.parametrize("row", [{"ObjectCount": 5}, {"TotalSizeInBytes": "x", "ObjectCount": 1}])
def test_incomplete_series_sizes_are_protocol_errors(row: dict[str, Any]) -> None:
    with pytest.raises(ApiProtocolError):
        parse.series_size(row, EP)


@needs_samples
def test_doi_match_from_the_wiki_sample_with_explicit_nulls() -> None:
    text = (SAMPLES / "getCollectionOrSeriesForDOI__1.wiki.json").read_text().replace("\\{", "{")
    rows = parse.decode_json_rows(text.encode(), EP)
    match = parse.doi_match(rows[0], EP)
    assert (match.collection, match.series_uid, match.third_party) == ("CBIS-DDSM", None, None)


def test_doi_match_v4_shape() -> None:
    row = {
        "collection": "C",
        "seriesInstanceUID": "1.2",
        "thirdPartyAnanlysis": "YES",
        "authorized": 1,
    }
    match = parse.doi_match(row, EP)
    assert (match.series_uid, match.third_party, match.authorized) == ("1.2", True, True)


def test_license_and_collection_description() -> None:
    lic = parse.license_record(
        {
            "longName": "Creative Commons Attribution 4.0 International",
            "id": 7,
            "shortName": "CC BY 4.0",
            "licenseURL": "https://creativecommons.org/licenses/by/4.0/",
            "licenseText": None,
            "commercialUse": "YES",
        },
        EP,
    )
    assert (lic.id, lic.short_name, lic.text) == (7, "CC BY 4.0", None)
    desc = parse.collection_description(
        {
            "collectionName": "TCGA-BLCA",
            "description": "<p>x</p>",
            "id": 3,
            "collectionDescTimestamp": 1678924800000,
            "licenseId": 7,
            "descriptionURI": "https://doi.org/10.7937/K9/TCIA.2016.8LNG8XDR",
        },
        EP,
    )
    assert desc.updated == datetime(2023, 3, 16, tzinfo=UTC)
    assert (desc.license_id, desc.doi) == (7, "https://doi.org/10.7937/K9/TCIA.2016.8LNG8XDR")


def test_cart_data_series_and_shared_list() -> None:
    study = {"studyId": "1.2", "date": "06-20-2001", "description": "CT CHEST", "seriesList": []}
    item = {
        "seriesUID": "1.2.3",
        "project": "C",
        "patientId": "P",
        "numberImages": 4,
        "totalSizeForAllImagesInSeries": 2048,
        "seriesNumber": "5",
        "modality": "CT",
    }
    info = parse.cart_series(study, item, EP)
    assert (info.series_uid, info.study_uid, info.image_count, info.file_size) == (
        "1.2.3",
        "1.2",
        4,
        2048,
    )
    assert info.study_date == date(2001, 6, 20) and info.series_number == 5
    shared = parse.shared_list(
        {
            "name": "cart",
            "comment": None,
            "hyperlink": None,
            "userName": "nbia_guest",
            "seriesInstanceUIDs": ["2.2", "1.1"],
            "dateString": "2025-01-01",
        },
        EP,
    )
    assert shared.series_uids == ("1.1", "2.2") and shared.owner == "nbia_guest"


@needs_samples
def test_single_key_rows_of_value_lists() -> None:
    # getBodyPartValues answers {} for a null body part; text_field skips it.
    rows = _python_literal("getBodyPartValues__1.pyrepr.txt")
    assert [parse.text_field(row, "BodyPartExamined") for row in rows][:2] == [None, "BRAIN"]
    collections = _python_literal("getCollectionValues__2.pyrepr.txt")
    assert parse.text_field(collections[0], "Collection") == "4D-Lung"
