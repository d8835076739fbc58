"""Endpoint behaviour over HTTP: parameters, error shapes, formats and payloads (§2, §5-§7)."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from typing import Any

import pydicom
import requests

from nbia_audit.emulator import CorpusSpec, Emulator

SERIES_REQUIRED = "A parameter, SeriesInstanceUID is required for this API call."
GRANTED = (
    "The user has not been granted the access to image with given SeriesInstanceUID,{}. "
    "Please contact System Admin to resolve this issue."
)


def guest(emu: Emulator, http: requests.Session) -> dict[str, str]:
    token = http.post(
        f"{emu.root_url}/oauth/token",
        data={"username": "nbia_guest", "password": "", "grant_type": "password"},
    ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def zip_names(response: requests.Response) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(response.content)).namelist()


# -- parameters and errors --------------------------------------------------------------------
def test_v4_rejects_unknown_parameters(emulator: Emulator, http: requests.Session) -> None:
    response = http.get(f"{emulator.base_url}/v4/getSeries", params={"collection": "EMU-LUNG"})
    assert response.status_code == 400
    assert response.text.startswith(
        "Invalid query parameter: 'collection'. Allowed parameters are: ["
    )
    form = http.post(f"{emulator.base_url}/v4/getManifestText", data={"list": "1.2", "x": "1"})
    assert form.status_code == 400 and form.text.startswith("Invalid form parameter: 'x'.")
    # v1 ignores unknown parameters.
    assert (
        http.get(f"{emulator.base_url}/v1/getSeries", params={"collection": "x"}).status_code == 200
    )
    # SOPInstanceUid is v1/v2's spelling, not v4's.
    wrong = http.get(f"{emulator.base_url}/v4/getMD5HashForImage", params={"SOPInstanceUid": "1"})
    assert wrong.status_code == 400


def test_required_parameter_messages(emulator: Emulator, http: requests.Session) -> None:
    base = emulator.base_url
    cases = {
        "v4/getSOPInstanceUIDs": SERIES_REQUIRED,
        "v1/getSeriesSize": SERIES_REQUIRED,
        "v4/getImage": "A parameter, SeriesInstanceUID, is required for this API call.",
        "v1/getImageWithMD5Hash": "A parameter, SeriesInstanceUID, is required for this API call.",
        "v4/NewPatientsInCollection": (
            "A parameter, Collection and Date are required for this API call."
        ),
        "v1/getPatientByCollectionAndModality": (
            "A parameter, Collection and Modality, are required for this API call."
        ),
        "v4/getSingleImage": (
            "A parameter, SeriesInstanceUID and SOPInstanceUID, are required for this API call."
        ),
        "v1/getContentsByName": "A parameter, name is required for this API call.",
    }
    for path, message in cases.items():
        response = http.get(f"{base}/{path}")
        assert (response.status_code, response.text) == (400, message), path
        assert response.headers["Content-Type"] == "application/json"  # a lie, as NBIA's
    form = {"Content-Type": "application/x-www-form-urlencoded"}  # an empty form, still a form
    metadata = http.post(f"{base}/v4/getSeriesMetadata", data={}, headers=form)
    assert metadata.status_code == 400 and "form parameter, list" in metadata.text


def test_download_errors_by_family(emulator: Emulator, http: requests.Session) -> None:
    uid = emulator.corpus.series[0].series_uid
    emulator.hide_series(uid)
    for path in ("v4/getImage", "v4/getImageWithMD5Hash"):
        response = http.get(f"{emulator.base_url}/{path}", params={"SeriesInstanceUID": uid})
        assert (response.status_code, response.text) == (400, GRANTED.format(uid))
    v1 = http.get(f"{emulator.base_url}/v1/getImage", params={"SeriesInstanceUID": "1.2.3"})
    assert v1.text == "Image with given SeriesInstanceUID,1.2.3, is not in public domain."


def test_formats_and_empty_results(emulator: Emulator, http: requests.Session) -> None:
    url = f"{emulator.base_url}/v4/getSeries"
    assert http.get(url, params={"format": "yaml"}).status_code == 500
    assert (
        http.get(url, params={"format": "yaml"}).text
        == "Server was not able to process your request"
    )
    nothing = http.get(url, params={"Collection": "NOPE", "format": "yaml"})
    assert (nothing.status_code, nothing.content) == (200, b"")  # rows are checked first
    quoted = http.get(url, params={"format": "csv"})
    assert quoted.headers["Content-Type"] == "text/csv"
    lines = quoted.text.split("\n")
    assert lines[0].startswith('"SeriesInstanceUID","StudyInstanceUID"')
    assert all(line.startswith('"') and line.endswith('"') for line in lines if line)
    # decimal(22,6) columns print with six decimals in CSV but as integers in JSON.
    assert re.search(r'","\d+\.000000","', lines[1])
    values = http.get(f"{emulator.base_url}/v4/getCollectionValues", params={"format": "csv"})
    assert values.text == "Collection\nEMU-BRAIN\nEMU-LUNG\n"
    assert http.get(url, params={"format": "xml"}).text.startswith("<?xml")
    assert http.get(url, params={"format": "html"}).text.startswith("<P ALIGN='center'>")
    assert b"\\/" in http.get(url).content  # Jettison escapes every slash


def test_filters(emulator: Emulator, http: requests.Session) -> None:
    base = emulator.base_url
    v4 = http.get(
        f"{base}/v4/getSeries", params={"Collection": "emu-lung", "Modality": "ct"}
    ).json()
    assert v4 and {(r["Collection"], r["Modality"]) for r in v4} == {("EMU-LUNG", "CT")}
    # v1 upper-cases the collection only; modality must match exactly.
    assert (
        http.get(
            f"{base}/v1/getSeries", params={"Collection": "emu-lung", "Modality": "ct"}
        ).content
        == b""
    )
    series = emulator.corpus.series[0]
    sops = http.get(
        f"{base}/v4/getSOPInstanceUIDs", params={"SeriesInstanceUID": series.series_uid}
    )
    assert [r["SOPInstanceUID"] for r in sops.json()] == [
        i.sop_uid for i in emulator.corpus.images_of(series.series_uid)
    ]
    studies = http.get(f"{base}/v4/getPatientStudy", params={"PatientID": series.patient_id}).json()
    assert {s["StudyInstanceUID"] for s in studies} == {series.study_uid}
    assert studies[0]["SeriesCount"] == 2 and re.match(r"\d\d-\d\d-\d{4}", studies[0]["StudyDate"])


def test_updated_series_and_new_patients(emulator: Emulator, http: requests.Session) -> None:
    base = emulator.base_url
    uid = emulator.corpus.series[0].series_uid
    emulator.set_release_date(uid, "2030-06-15T08:00:00")
    v4 = http.get(f"{base}/v4/getUpdatedSeries", params={"fromDate": "06-14-2030"}).json()
    assert [r["SeriesInstanceUID"] for r in v4] == [uid]
    # After midnight of fromDate: a release later that same day counts, the next day does not.
    same_day = http.get(f"{base}/v4/getUpdatedSeries", params={"fromDate": "06-15-2030"}).json()
    assert [r["SeriesInstanceUID"] for r in same_day] == [uid]
    assert http.get(f"{base}/v4/getUpdatedSeries", params={"fromDate": "06-16-2030"}).content == b""
    v1 = http.get(f"{base}/v1/getUpdatedSeries", params={"fromDate": "14/06/2030"}).json()
    assert [r["SeriesInstanceUID"] for r in v1] == [uid]
    patients = http.get(
        f"{base}/v1/NewPatientsInCollection",
        params={"Collection": "EMU-LUNG", "Date": "2030/06/01"},
    ).json()
    assert [p["PatientId"] for p in patients] == [emulator.corpus.series[0].patient_id]
    v4p = http.get(
        f"{base}/v4/NewPatientsInCollection",
        params={"Collection": "EMU-LUNG", "fromDate": "06-15-2030"},
    ).json()
    assert v4p[0]["Authorized"] == 1 and "PatientBirthDate" not in v4p[0]


def test_series_size(emulator: Emulator, http: requests.Session) -> None:
    uid = emulator.corpus.series[0].series_uid
    images = emulator.corpus.images_of(uid)
    url = f"{emulator.base_url}/v4/getSeriesSize"
    assert http.get(url, params={"SeriesInstanceUID": uid.lower()}).json() == [
        {"TotalSizeInBytes": sum(i.size for i in images), "ObjectCount": 3}
    ]
    assert http.get(url, params={"SeriesInstanceUID": "9.9"}).content == b""
    for image in images:
        emulator.remove_image(image.sop_uid)
    assert http.get(url, params={"SeriesInstanceUID": uid}).json() == [{"ObjectCount": 0}]


# -- downloads --------------------------------------------------------------------------------
def test_get_image_layouts(emulator: Emulator, http: requests.Session) -> None:
    series = emulator.corpus.series[0]
    url = f"{emulator.base_url}/v4/getImage"
    params = {"SeriesInstanceUID": series.series_uid}
    plain = http.get(url, params=params)
    assert plain.headers["Content-Disposition"] == f'attachment; filename="{series.series_uid}.zip"'
    assert zip_names(plain) == ["LICENSE", "00000001.dcm", "00000002.dcm", "00000003.dcm"]
    license_text = zipfile.ZipFile(io.BytesIO(plain.content)).read("LICENSE").decode()
    assert license_text.startswith(f"License Information. The {series.collection} collection")
    assert series.license_url is not None and series.license_url in license_text
    with_md5 = zip_names(http.get(url, params={**params, "IncludeMD5": "YES"}))
    assert with_md5[0] == "LICENSE" and with_md5[-1] == "md5hashes.csv"
    named = http.get(url, params={**params, "NewFileNames": "yes"})
    assert zip_names(named) == ["LICENSE", "1-1.dcm", "1-2.dcm", "1-3.dcm"]
    # New names follow InstanceNumber, the counter names follow DB order.
    archive = zipfile.ZipFile(io.BytesIO(named.content))
    numbers = [
        pydicom.dcmread(io.BytesIO(archive.read(n))).InstanceNumber for n in archive.namelist()[1:]
    ]
    assert numbers == [1, 2, 3]
    v1 = zip_names(
        http.get(f"{emulator.base_url}/v1/getImage", params={**params, "IncludeMD5": "yes"})
    )
    assert "md5hashes.csv" not in v1


def test_new_file_names_with_two_acquisitions() -> None:
    spec = CorpusSpec(seed=4, collections=1, patients=1, series=2, images=12)
    with Emulator.from_spec(spec) as emu:
        uid = emu.corpus.series[1].series_uid  # odd series: two acquisitions
        response = requests.get(
            f"{emu.base_url}/v4/getImage", params={"SeriesInstanceUID": uid, "NewFileNames": "Yes"}
        )
        names = zip_names(response)[1:]
        assert names[:6] == [f"1-{i:02d}.dcm" for i in range(1, 7)]
        assert names[6:] == [f"2-{i:02d}.dcm" for i in range(1, 7)]


def test_csv_order_is_hashmap_order_not_zip_order(http: requests.Session) -> None:
    spec = CorpusSpec(seed=9, collections=1, patients=1, series=1, images=30)
    with Emulator.from_spec(spec) as emu:
        uid = emu.corpus.series[0].series_uid
        response = http.get(
            f"{emu.base_url}/v4/getImageWithMD5Hash", params={"SeriesInstanceUID": uid}
        )
        archive = zipfile.ZipFile(io.BytesIO(response.content))
        rows = list(csv.reader(io.StringIO(archive.read("md5hashes.csv").decode())))[1:]
        assert sorted(r[0] for r in rows) == archive.namelist()[:-1]
        assert [r[0] for r in rows] != archive.namelist()[:-1]


def test_single_image_and_stored_hashes(emulator: Emulator, http: requests.Session) -> None:
    image = emulator.corpus.images_of(emulator.corpus.series[0].series_uid)[0]
    base = emulator.base_url
    params = {"SeriesInstanceUID": image.series_uid, "SOPInstanceUID": image.sop_uid}
    single = http.get(f"{base}/v4/getSingleImage", params=params)
    assert single.headers["Content-Type"] == "application/dicom"
    assert single.headers["Content-Length"] == str(len(single.content))
    assert hashlib.md5(single.content).hexdigest() == image.stored_md5
    assert (
        http.get(
            f"{base}/v4/getSingleImage", params={**params, "SOPInstanceUID": "1.2"}
        ).status_code
        == 500
    )
    v4 = http.get(f"{base}/v4/getMD5HashForImage", params={"SOPInstanceUID": image.sop_uid})
    v1 = http.get(f"{base}/v1/getM5HashForImage", params={"SOPInstanceUid": image.sop_uid})
    assert v4.text == v1.text == image.stored_md5
    assert v4.headers["Content-Type"] == "text/plain"
    unknown = http.get(f"{base}/v4/getMD5HashForImage", params={"SOPInstanceUID": "1.2"})
    assert (unknown.status_code, unknown.content) == (200, b"")


# -- metadata ---------------------------------------------------------------------------------
def test_series_metadata_v4(emulator: Emulator, http: requests.Session) -> None:
    uids = [s.series_uid for s in emulator.corpus.series[:3]]
    url = f"{emulator.base_url}/v4/getSeriesMetadata"
    default = http.post(url, data={"list": uids})
    assert default.headers["Content-Disposition"] == 'attachment; filename="SeriesMetaData.csv"'
    rows = list(csv.DictReader(io.StringIO(default.text)))
    assert [r["SeriesInstanceUID"] for r in rows] == uids
    joined = http.post(url, data={"list": ",".join(uids), "format": "json"}).json()
    assert [r["SeriesInstanceUID"] for r in joined] == uids
    first = joined[0]
    assert first["Authorized"] == "1" and isinstance(first["ImageCount"], int)
    assert first["SeriesNumber"].endswith(".000000") and first["SliceThickness(mm)"] in (
        "2.500000",
        "5.000000",
    )
    pretty = http.get(
        f"{emulator.base_url}/v1/getSeriesMetaData", params={"SeriesInstanceUID": "9.9"}
    )
    assert pretty.status_code == 204


# -- manifests --------------------------------------------------------------------------------
def manifest_uids(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/x-nbia-manifest-file"
    return response.text.split("ListOfSeriesToDownload=\n")[1].splitlines()


def test_manifest_endpoints(emulator: Emulator, http: requests.Session) -> None:
    base = emulator.base_url
    corpus = emulator.corpus
    echoed = http.post(
        f"{base}/getManifestTextV2", data={"list": ["b", "a", "b"], "includeAnnotation": "true"}
    )
    assert manifest_uids(echoed) == ["b", "a", "b"]  # no validation or deduplication
    assert http.post(f"{base}/getManifestTextV2", data={"list": "a"}).status_code == 500
    hidden = corpus.series[0]
    emulator.hide_series(hidden.series_uid)
    union = http.post(
        f"{base}/v4/getManifestFromPatientStudySeries",
        data={"patientIDs": hidden.patient_id, "seriesUIDs": corpus.series[-1].series_uid},
    )
    expected = [s.series_uid for s in corpus.series if s.patient_id == hidden.patient_id]
    assert manifest_uids(union) == expected + [corpus.series[-1].series_uid]
    assert "includeAnnotation=true" in union.text
    whole = http.post(f"{base}/v4/getManifestForCollection", data={"collection": "EMU-LUNG"})
    assert hidden.series_uid not in manifest_uids(whole)
    assert re.search(r"databasketId=EMU-LUNG-\d{4}-\d\d-\d\d_\d\d-\d\d\.tcia", whole.text)
    every = http.post(
        f"{base}/v4/getManifestForCollection", data={"collection": "EMU-LUNG", "visibility": "13"}
    )
    assert hidden.series_uid in manifest_uids(every)


def simple_form(**criteria: str) -> dict[str, str]:
    form = {"sortField": "subject", "sortDirection": "ascending", "start": "0", "size": "100"}
    for i, (kind, value) in enumerate(criteria.items()):
        form[f"criteriaType{i}"] = kind
        form[f"value{i}"] = value
    return form


def test_simple_search(emulator: Emulator, http: requests.Session) -> None:
    base = emulator.base_url
    form = simple_form(CollectionCriteria="EMU-BRAIN", ImageModalityCriteria="MR")
    response = http.post(f"{base}/v4/getManifestForSimpleSearch", data=form)
    expected = [
        s.series_uid
        for s in emulator.corpus.series
        if s.collection == "EMU-BRAIN" and s.modality == "MR"
    ]
    assert manifest_uids(response) == expected and "includeAnnotation=false" in response.text
    summary = http.post(f"{base}/v4/getSimpleSearch", data=form).json()
    assert summary["totalPatients"] == 2 and summary["sort"] == "subject-ascending"
    first = summary["resultSet"][0]
    assert list(first)[:3] == ["subjectId", "project", "id"]
    pks = first["studyIdentifiers"][0]["seriesIdentifiers"]
    cart = http.post(f"{base}/v4/getCartData", data={"list": [str(p) for p in pks]}).json()
    assert {s["seriesUID"] for study in cart for s in study["seriesList"]} <= set(expected)
    page = http.post(
        f"{base}/v4/getSimpleSearch", data={**form, "size": "1", "sortDirection": "descending"}
    )
    assert [p["subjectId"] for p in page.json()["resultSet"]] == ["EMU-BRAIN-002"]
    missing = dict(form)
    del missing["size"]
    assert http.post(f"{base}/v4/getManifestForSimpleSearch", data=missing).status_code == 500
    assert http.post(f"{base}/getManifestForSimpleSearch", data=form).status_code == 500  # no token


def test_text_search_manifest(emulator: Emulator, http: requests.Session) -> None:
    headers = guest(emulator, http)
    response = http.post(
        f"{emulator.base_url}/getManifestForTextSearch",
        data={"textValue": "EMU-BRAIN-001"},
        headers=headers,
    )
    uids = manifest_uids(response)
    assert uids == [s.series_uid for s in emulator.corpus.series if s.patient_id == "EMU-BRAIN-001"]
    fielded = http.post(
        f"{emulator.base_url}/getManifestForTextSearch",
        data={"textValue": "modality:MR"},
        headers=headers,
    )
    assert manifest_uids(fielded)
    nothing = http.post(
        f"{emulator.base_url}/getManifestForTextSearch",
        data={"textValue": "nofield:MR"},
        headers=headers,
    )
    assert manifest_uids(nothing) == []


# -- carts, DOIs, licenses, descriptions ------------------------------------------------------
def test_shared_carts(emulator: Emulator, http: requests.Session) -> None:
    base = emulator.base_url
    uids = [s.series_uid for s in emulator.corpus.series[:3]]
    headers = {"Authorization": "Bearer undefined"}
    created = http.post(
        f"{base}/createSharedList", data={"list": uids, "name": "my-cart"}, headers=headers
    )
    assert (created.status_code, created.text) == (200, "List created")
    again = http.post(
        f"{base}/createSharedList", data={"list": uids, "name": " MY-CART "}, headers=headers
    )
    assert (again.status_code, again.text) == (400, "Duplicate list name")
    bad = http.post(
        f"{base}/createSharedList", data={"list": ["9.9"], "name": "other"}, headers=headers
    )
    assert bad.text == "User does not have permission for all series in list"
    assert (
        http.post(f"{base}/createSharedList", data={"list": uids, "name": "x"}).status_code == 500
    )
    emulator.hide_series(uids[0])
    contents = http.get(f"{base}/v1/getContentsByName", params={"name": "My-Cart"}).json()
    assert [c["SeriesInstanceUID"] for c in contents] == uids[1:]  # hidden ones drop silently
    raw = http.post(f"{base}/getSharedList", data={"nameValue": "my-cart"}).json()
    assert sorted(raw["seriesInstanceUIDs"]) == sorted(uids) and raw["userName"] == "nbia_guest"
    assert http.post(f"{base}/getSharedList", data={"nameValue": "nope"}).text == "null"
    assert http.get(f"{base}/v1/getContentsByName", params={"name": "nope"}).content == b""
    v2 = http.get(f"{base}/v2/getContentsByName")
    assert v2.text == SERIES_REQUIRED  # v2's copy-paste slip
    deleted = http.post(f"{base}/deleteSharedList", data={"name": "my-cart"}, headers=headers)
    assert deleted.text == "List deleted"


def test_doi_licenses_and_descriptions(emulator: Emulator, http: requests.Session) -> None:
    base = emulator.base_url
    collection = emulator.corpus.collections[0]
    by_doi = http.post(
        f"{base}/v4/getCollectionOrSeriesForDOI", data={"DOI": collection.doi}
    ).json()
    assert by_doi == [{"collection": collection.name, "authorized": 1}]
    analysis = next(
        s for s in emulator.corpus.series if s.collection == collection.name and s.third_party
    )
    tp = http.post(
        f"{base}/v4/getCollectionOrSeriesForDOI",
        data={"DOI": analysis.doi, "CollectionOrSeries": "Series"},
    ).json()
    assert tp == [{"collection": collection.name, "seriesInstanceUID": analysis.series_uid,
                   "thirdPartyAnanlysis": "YES", "authorized": 1}]  # fmt: skip
    none = http.post(f"{base}/v4/getCollectionOrSeriesForDOI", data={"DOI": "https://doi.org/x"})
    assert none.text == "[]"
    licenses: list[dict[str, Any]] = http.get(f"{base}/getLicenses").json()
    assert list(licenses[0]) == [
        "longName",
        "id",
        "shortName",
        "licenseURL",
        "licenseText",
        "commercialUse",
    ]
    descriptions = http.get(f"{base}/v4/getCollectionDescriptions").json()
    assert [list(d) for d in descriptions][0] == [
        "description",
        "id",
        "collectionName",
        "descriptionURI",
    ]
    counts = http.get(f"{base}/v4/getCollectionValuesAndCounts").json()
    assert counts == [{"Collection": "EMU-BRAIN", "Count": 2, "Authorized": 1},
                      {"Collection": "EMU-LUNG", "Count": 2, "Authorized": 1}]  # fmt: skip


def test_paths_and_methods(emulator: Emulator, http: requests.Session) -> None:
    assert http.get(f"{emulator.root_url}/v4/getCollectionValues").status_code == 200
    # Jersey's 404 and 405 go through the catch-all mapper: 500s (supplement §7.5).
    unknown = http.get(f"{emulator.base_url}/v4/getContentsByName")
    assert (unknown.status_code, unknown.text) == (
        500,
        "Server was not able to process your request\nHTTP 404 Not Found",
    )
    assert http.get(f"{emulator.base_url}/v4/getMD5Hierarchy").status_code == 500
    assert http.head(f"{emulator.base_url}/v4/getSeries").status_code == 200


def test_unversioned_doi_lookup_has_no_authorized_key(
    emulator: Emulator, http: requests.Session
) -> None:
    collection = emulator.corpus.collections[0]
    url = f"{emulator.base_url}/getCollectionOrSeriesForDOI"
    assert http.post(url, data={"DOI": collection.doi}).text == "[]"  # no header: swallowed
    found = http.post(url, data={"DOI": collection.doi}, headers=guest(emulator, http)).json()
    assert found == [{"collection": collection.name}]
