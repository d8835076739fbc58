"""Fidelity against responses the live archive produced (/work/shared/real-samples).

Each sample keeps only some properties (see its PROVENANCE.md): pyrepr keeps key order and
types, pprint only key sets and types, pandas only column names. Tests check exactly what
each sample can support. The samples are read in place, never copied into the repository.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.emulator.api_carts import CONTENTS_COLUMNS
from nbia_audit.emulator.queries import SERIES_V1_COLUMNS, UPDATED_V1_COLUMNS

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "real-samples"
pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="real samples not available")

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d+$")  # java.sql.Timestamp
JAVA_DATE = re.compile(r"^[A-Z][a-z]{2} [A-Z][a-z]{2} \d{2} \d{2}:\d{2}:\d{2} UTC \d{4}$")
MDY = re.compile(r"^\d{2}-\d{2}-\d{4}$")
SPEC = CorpusSpec(seed=11, collections=2, patients=3, studies=1, series=3, images=2)


def load(name: str) -> Any:
    """A pyrepr/pprint sample as Python data (leading prose lines skipped)."""
    text = (SAMPLES / name).read_text()
    start = min(
        i for i in (text.find("\n["), text.find("\n{"), 0 if text[0] in "[{" else -1) if i >= 0
    )
    return ast.literal_eval(text[start:].strip())


def records(name: str) -> list[dict[str, Any]]:
    data = load(name)
    return data if isinstance(data, list) else [data]


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator.from_spec(SPEC, users={"alice": "pw"}) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def auth(emu: Emulator) -> dict[str, str]:
    token = requests.post(
        f"{emu.root_url}/oauth/token",
        data={"username": "nbia_guest", "password": "", "grant_type": "password"},
    ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def get(emu: Emulator, path: str, headers: dict[str, str] | None = None, **params: str) -> Any:
    response = requests.get(f"{emu.base_url}/{path}", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def in_order(keys: list[str], order: tuple[str, ...]) -> bool:
    return keys == sorted(keys, key=order.index)


def same_types(sample: dict[str, Any], ours: dict[str, Any]) -> None:
    for key, value in sample.items():
        if key in ours:
            assert type(ours[key]) is type(value), key


# -- getSeries (v1 2022, v2 2025) -------------------------------------------------------------
@pytest.mark.parametrize(
    "sample",
    ["getSeries__1.pyrepr.txt", "getSeries__2.pyrepr.txt", "getSeries__3.pyrepr.txt",
     "getSeries__4.pyrepr.txt", "getSeries__7.pyrepr.txt", "getSeries__8.pyrepr.txt"],
)  # fmt: skip
def test_get_series_v1_v2_keys_order_and_types(
    emu: Emulator, auth: dict[str, str], sample: str
) -> None:
    ours = get(emu, "v2/getSeries", auth) + get(emu, "v1/getSeries")
    for record in records(sample):
        keys = list(record)
        assert set(keys) <= set(SERIES_V1_COLUMNS)
        assert in_order(keys, SERIES_V1_COLUMNS)
        for mine in ours:
            same_types(record, mine)
        for key in ("SeriesDate", "TimeStamp", "DateReleased", "StudyDate"):
            if key in record:
                assert TIMESTAMP.match(record[key])
    for mine in ours:
        assert in_order(list(mine), SERIES_V1_COLUMNS)
        assert None not in mine.values()
        for key in ("SeriesDate", "TimeStamp", "DateReleased", "StudyDate"):
            assert TIMESTAMP.match(mine[key]), key


def test_v2_without_third_party_or_protocol_omits_the_keys(
    emu: Emulator, auth: dict[str, str]
) -> None:
    # getSeries__2: ProtocolName and ThirdPartyAnalysis are absent when NULL.
    ours = get(emu, "v2/getSeries", auth)
    assert any("ProtocolName" not in r for r in ours)
    assert any("ThirdPartyAnalysis" not in r for r in ours)


def test_v4_get_series_dates_and_numbers(emu: Emulator) -> None:
    for record in get(emu, "v4/getSeries"):
        for key in ("SeriesDate", "DateReleased", "StudyDate", "MaxSubmissionTimestamp"):
            assert MDY.match(record[key]), key
        assert isinstance(record["ImageCount"], int) and isinstance(record["FileSize"], int)
        assert isinstance(record["SeriesNumber"], int) and record["Authorized"] == 1


def test_updated_series_v2_has_no_license_or_size(emu: Emulator, auth: dict[str, str]) -> None:
    # The sample predates DateReleased (added to the columns 2024-05-02, 657b2fc4).
    sample = load("getUpdatedSeries__1.pprint.txt")
    assert set(sample) <= set(UPDATED_V1_COLUMNS)
    ours = get(emu, "v2/getUpdatedSeries", auth, fromDate="01/01/2000")
    assert ours
    for mine in ours:
        assert set(mine) <= set(UPDATED_V1_COLUMNS) and TIMESTAMP.match(mine["DateReleased"])
        same_types(sample, mine)
        assert not {"LicenseName", "FileSize", "TimeStamp"} & set(mine)


# -- patients and studies ---------------------------------------------------------------------
def test_get_patient_spelling_and_types(emu: Emulator, auth: dict[str, str]) -> None:
    ours = get(emu, "v2/getPatient", auth)
    for sample_name in ("getPatient__1.pprint.txt", "NewPatientsInCollection__1.pprint.txt"):
        for record in records(sample_name):
            assert "PatientId" in record
            for mine in ours:
                assert set(record) - {"EthnicGroup"} <= set(mine)
                same_types(record, mine)
    assert any("EthnicGroup" not in r for r in ours)  # absent when NULL, as in the samples


def test_get_patient_study_types(emu: Emulator, auth: dict[str, str]) -> None:
    ours = get(emu, "v2/getPatientStudy", auth)
    for name in ("getPatientStudy__1.pprint.txt", "getPatientStudy__2.pprint.txt"):
        for record in records(name):
            for mine in ours:
                # Nullable in our corpus too: EthnicGroup, StudyDescription.
                assert set(record) - {"EthnicGroup", "StudyDescription"} <= set(mine)
                same_types(record, mine)
                assert TIMESTAMP.match(mine["StudyDate"])
                assert re.match(r"^\d{3}Y$", mine["PatientAge"])


def test_patient_by_collection_and_modality_is_single_key(
    emu: Emulator, auth: dict[str, str]
) -> None:
    sample = records("getPatientByCollectionAndModality__1.pprint.txt")
    ours = get(
        emu, "v2/getPatientByCollectionAndModality", auth, Collection="EMU-LUNG", Modality="CT"
    )
    assert {tuple(r) for r in sample} == {tuple(r) for r in ours} == {("PatientId",)}


# -- value lists and counts -------------------------------------------------------------------
def test_value_lists(emu: Emulator, auth: dict[str, str]) -> None:
    body_parts = get(emu, "v2/getBodyPartValues", auth, Collection="EMU-LUNG")
    sample = load("getBodyPartValues__1.pyrepr.txt")
    assert sample[0] == {} and body_parts[0] == {}  # the NULL body part, sorted first
    assert all(list(r) == ["BodyPartExamined"] for r in body_parts[1:])
    modalities = get(emu, "v2/getModalityValues", auth)
    assert all(
        list(r) == ["Modality"] for r in load("getModalityValues__1.pyrepr.txt") + modalities
    )
    assert [r["Modality"] for r in modalities] == sorted(r["Modality"] for r in modalities)
    collections = get(emu, "v2/getCollectionValues", auth)
    assert all(
        list(r) == ["Collection"] for r in load("getCollectionValues__1.pyrepr.txt") + collections
    )


def test_manufacturer_values_are_the_distinct_manufacturers_of_visible_series(
    emu: Emulator, auth: dict[str, str]
) -> None:
    """getManufacturerValues (protocol §5): one ``Manufacturer`` key per row, distinct and
    sorted, narrowed by the collection like the other value lists."""
    rows = get(emu, "v2/getManufacturerValues", auth)
    assert all(list(r) in (["Manufacturer"], []) for r in rows)
    every = {s.manufacturer for s in emu.corpus.series if s.manufacturer}
    assert {r["Manufacturer"] for r in rows if r} == every
    lung = get(emu, "v2/getManufacturerValues", auth, Collection="EMU-LUNG")
    named = [r["Manufacturer"] for r in lung if r]
    assert named == sorted(set(named))
    assert set(named) == {
        s.manufacturer for s in emu.corpus.series if s.collection == "EMU-LUNG" and s.manufacturer
    }


def test_unversioned_counts_are_strings(emu: Emulator, auth: dict[str, str]) -> None:
    ours = get(emu, "getBodyPartValuesAndCounts", auth) + get(
        emu, "getCollectionValuesAndCounts", auth
    )
    samples = records("getBodyPartValuesAndCounts__1.pprint.txt") + records(
        "getCollectionValuesAndCounts__1.pprint.txt"
    )
    for item in samples + ours:
        assert list(item) in (["criteria", "count"], ["count", "criteria"])
        assert isinstance(item["count"], str) and item["count"].isdigit()
    wiki = json.loads((SAMPLES / "getBodyPartValuesAndCounts__2.wiki.json").read_text())
    assert all(list(item) == ["criteria", "count"] for item in wiki)
    assert all(list(item) == ["criteria", "count"] for item in ours)
    assert "NOT SPECIFIED" in {item["criteria"] for item in ours}


def test_sop_instance_uids_single_key(emu: Emulator, auth: dict[str, str]) -> None:
    text = (SAMPLES / "getSOPInstanceUIDs__1.pyrepr-partial.txt").read_text()
    assert "{'SOPInstanceUID': '" in text
    uid = emu.corpus.series[0].series_uid
    ours = get(emu, "v2/getSOPInstanceUIDs", auth, SeriesInstanceUID=uid)
    assert ours and all(list(r) == ["SOPInstanceUID"] for r in ours)


# -- metadata ---------------------------------------------------------------------------------
def test_series_metadata_pretty_keys_and_string_values(emu: Emulator, auth: dict[str, str]) -> None:
    sample = json.loads((SAMPLES / "getSeriesMetaData__3.go-struct-remarshalled.json").read_text())
    uid = emu.corpus.series[0].series_uid
    (ours,) = get(emu, "v2/getSeriesMetaData", auth, SeriesInstanceUID=uid)
    assert set(sample) <= set(ours) | {"Manufacturer", "Study Description", "3rd Party Analysis"}
    assert all(isinstance(v, str) for v in ours.values())
    assert re.match(r"^\d+\.\d{6}$", ours["Series Number"]) and re.match(
        r"^\d+\.\d{6}$", sample["Series Number"]
    )
    assert MDY.match(ours["Study Date"]) and MDY.match(sample["Study Date"])
    pandas = (SAMPLES / "getSeriesMetaData__2.pandas.txt").read_text()
    assert re.search(r"Mon Nov 04 11:45:52 UTC 2013", pandas)
    for key in ("Date Released", "Series Date", "TimeStamp"):
        assert JAVA_DATE.match(ours[key]), key
    assert ours["Annotations Flag"] == "false" and ours["Annotation Size"] == "0"


def test_series_metadata2_is_quoted_csv_with_the_sample_header(
    emu: Emulator, auth: dict[str, str]
) -> None:
    sample_header = (SAMPLES / "getSeriesMetadata2__1.csv").read_text().splitlines()[0]
    uids = ",".join(s.series_uid for s in emu.corpus.series[:3])
    response = requests.post(
        f"{emu.base_url}/getSeriesMetadata2", data={"list": uids}, headers=auth
    )
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == 'attachment; filename="SeriesMetaData.csv"'
    lines = response.text.split("\n")
    assert lines[0].startswith(sample_header + ",")
    assert all(line.startswith('"') and line.endswith('"') for line in lines if line)
    rows = list(csv.reader(io.StringIO(response.text)))
    assert len(rows) == 4 and all(len(r) == 24 for r in rows)
    # The quoted writer keeps an embedded comma inside one field (getSeriesMetadata2__2).
    embedded = next(csv.reader(io.StringIO((SAMPLES / "getSeriesMetadata2__2.csv").read_text())))
    assert "CHEST, PA & LATERAL" in embedded


# -- carts, DOI, descriptions -----------------------------------------------------------------
def test_contents_by_name_columns(emu: Emulator) -> None:
    text = (SAMPLES / "getContentsByName__1.pandas.txt").read_text()
    header_tokens = {
        token
        for line in text.splitlines()
        if line.strip() and not line.strip()[0].isdigit()
        for token in line.split()
        if token != "\\"
    }
    assert header_tokens <= set(CONTENTS_COLUMNS) | {"ProtocolName"}
    uids = [s.series_uid for s in emu.corpus.series[:2]]
    emu.add_cart("nbia-123", uids)
    ours = get(emu, "v1/getContentsByName", name="NBIA-123")
    assert [r["SeriesInstanceUID"] for r in ours] == uids
    for mine in ours:
        assert in_order(list(mine), CONTENTS_COLUMNS)
        assert TIMESTAMP.match(mine["Date Released"]) and isinstance(mine["ImageCount"], int)


def test_doi_lookup_keys(emu: Emulator) -> None:
    raw = (SAMPLES / "getCollectionOrSeriesForDOI__1.wiki.json").read_text().replace("\\{", "{")
    sample_keys = set(json.loads(raw)[0])
    collection = emu.corpus.collections[0]
    response = requests.post(
        f"{emu.base_url}/v4/getCollectionOrSeriesForDOI",
        data={"DOI": collection.doi, "CollectionOrSeries": "series"},
    )
    ours = response.json()
    assert ours and all(set(r) <= sample_keys | {"authorized"} for r in ours)
    assert all(list(r)[:2] == ["collection", "seriesInstanceUID"] for r in ours)


def test_collection_descriptions_keys(emu: Emulator, auth: dict[str, str]) -> None:
    sample = records("getCollectionDescriptions__1.client-transformed.pprint.txt")[0]
    ours = get(emu, "getCollectionDescriptions", auth, collectionName="EMU-LUNG")
    assert len(ours) == 1
    assert {"collectionName", "descriptionURI", "description"} <= set(sample) & set(ours[0])
    assert isinstance(ours[0]["collectionDescTimestamp"], int)
    assert ours[0]["descriptionURI"].startswith("https://doi.org/10.7937/")
    (v4,) = get(emu, "v4/getCollectionDescriptions", collectionName="EMU-LUNG")
    assert not {"collectionDescTimestamp", "userName", "licenseId"} & set(v4)


# -- manifests, ZIPs, errors ------------------------------------------------------------------
def test_manifest_layout_matches_the_samples(emu: Emulator) -> None:
    uids = [s.series_uid for s in emu.corpus.series[:3]]
    response = requests.post(
        f"{emu.base_url}/v4/getManifestText", data={"list": uids, "includeAnnotation": "true"}
    )
    assert response.headers["Content-Type"] == "application/x-nbia-manifest-file"
    ours = response.text
    assert "\r" not in ours and ours.endswith("\n")
    ours_lines = ours.split("\n")
    for sample in sorted(SAMPLES.glob("manifest__*.tcia")):
        lines = sample.read_text().split("\n")
        keys = [line.split("=")[0] for line in lines[:6]]
        assert keys == [line.split("=")[0] for line in ours_lines[:6]]
        assert lines[2] == ours_lines[2] == "noOfrRetry=4"
        assert lines[4] == ours_lines[4] == "manifestVersion=3.0"
        assert lines[5] == ours_lines[5] == "ListOfSeriesToDownload="
    assert re.match(r"^databasketId=manifest-\d{13}\.tcia$", ours_lines[3])
    assert ours_lines[0].endswith("/nbia-download/servlet/DownloadServlet")
    assert ours_lines[6:-1] == uids


def test_get_image_entry_names(emu: Emulator, auth: dict[str, str]) -> None:
    listing = (SAMPLES / "getImage__1.zip-entries.derived.txt").read_text()
    assert re.search(r"/00000001\.dcm\t", listing)
    uid = emu.corpus.series[0].series_uid
    response = requests.get(
        f"{emu.base_url}/v2/getImage", params={"SeriesInstanceUID": uid}, headers=auth
    )
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert names[0] == "LICENSE"
    assert all(re.match(r"^\d{8}\.dcm$", n) for n in names[1:])


def test_error_shapes_match_the_samples(emu: Emulator, auth: dict[str, str]) -> None:
    head = (SAMPLES / "errors__1.http-head.txt").read_text()
    response = requests.head(f"{emu.base_url}/v2/getImage")
    assert "HTTP/1.1 500" in head and response.status_code == 500
    assert response.headers["Content-Type"] == "text/plain"
    assert f"Content-Length: {response.headers['Content-Length']}" in head
    log = (SAMPLES / "errors__2.client-log.txt").read_text()
    assert "Error: 400" in log
    response = requests.get(
        f"{emu.base_url}/v2/getImage",
        params={"NewFileNames": "Yes", "SeriesInstanceUID": "1.2.840.113654.2.55.1"},
        headers=auth,
    )
    assert response.status_code == 400
