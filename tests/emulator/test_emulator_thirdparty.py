"""Endpoints third-party NBIA clients call, served with the source's formats (issue 12)."""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from collections.abc import Iterator

import pytest
import requests

from nbia_audit.emulator import CorpusSpec, Emulator

SPEC = CorpusSpec(seed=21, collections=1, patients=2, studies=1, series=1, images=3)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator.from_spec(SPEC) as emulator:
        yield emulator


def guest(emu: Emulator, http: requests.Session) -> dict[str, str]:
    body = http.post(
        f"{emu.root_url}/oauth/token",
        data={"username": "nbia_guest", "password": "", "grant_type": "password"},
    ).json()
    return {"Authorization": f"Bearer {body['access_token']}"}


def tag(rows: list[dict[str, str | None]], element: str) -> str | None:
    return next(row["data"] for row in rows if row["element"] == element)


def test_dicom_tags_of_a_series_first_image(emu: Emulator, http: requests.Session) -> None:
    series = emu.corpus.series[0]
    first = emu.corpus.images_of(series.series_uid)[0]
    for url, headers in (
        (f"{emu.base_url}/v4/getDicomTags", {}),
        (f"{emu.base_url}/getDicomTags", guest(emu, http)),
    ):
        response = http.get(url, params={"SeriesUID": series.series_uid}, headers=headers)
        assert response.status_code == 200
        rows = response.json()
        assert list(rows[0]) == ["element", "name", "data"]
        assert rows[0]["element"] == "(0002,0000)"  # the meta header comes first
        assert tag(rows, "(0008,0018)") == first.sop_uid
        assert tag(rows, "(0020,000E)") == series.series_uid
        # Parsing stops before Pixel Data.
        assert all(row["element"] != "(7FE0,0010)" for row in rows)
    emu.hide_series(series.series_uid)
    hidden = http.get(f"{emu.base_url}/v4/getDicomTags", params={"SeriesUID": series.series_uid})
    assert hidden.status_code == 400 and "has not been granted" in hidden.text


def test_dicom_tags_by_image_id_skip_every_access_check(
    emu: Emulator, http: requests.Session
) -> None:
    image = emu.corpus.images_of(emu.corpus.series[1].series_uid)[2]
    emu.hide_series(image.series_uid)
    pk = emu.corpus.image_pk(image.sop_uid)
    url = f"{emu.base_url}/v4/getDicomTagsByImageID"
    rows = http.get(url, params={"imageID": str(pk)}).json()
    assert tag(rows, "(0008,0018)") == image.sop_uid
    missing = http.get(url, params={"imageID": "999999"})
    assert (missing.status_code, missing.text) == (
        500,
        "Server was not able to process your request image not found",
    )


def test_dcm_image_zip_has_new_names_and_an_optional_checksum_file(
    emu: Emulator, http: requests.Session
) -> None:
    series = emu.corpus.series[0]
    url = f"{emu.base_url}/v4/getDCMImage"
    response = http.get(url, params={"SeriesInstanceUID": series.series_uid})
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.namelist() == ["1-1.dcm", "1-2.dcm", "1-3.dcm"]  # no LICENSE
    checked = http.get(
        url, params={"SeriesInstanceUID": series.series_uid, "MD5Verification": "true"}
    )
    archive = zipfile.ZipFile(io.BytesIO(checked.content))
    rows = list(csv.reader(io.StringIO(archive.read("md5hashes.csv").decode())))
    assert rows[0] == ["Filename", "MD5Hash"]
    for name, digest in rows[1:]:
        assert hashlib.md5(archive.read(name)).hexdigest() == digest
    emu.hide_series(series.series_uid)
    refused = http.get(url, params={"SeriesInstanceUID": series.series_uid})
    assert refused.status_code == 400 and refused.text.endswith("is not in public domain.")


def test_unversioned_manifest_for_collection(emu: Emulator, http: requests.Session) -> None:
    collection = emu.corpus.collections[0].name
    body = http.post(f"{emu.base_url}/getManifestForCollection", data={"collection": collection})
    assert body.headers["Content-Type"] == "application/x-nbia-manifest-file"
    listed = body.text.split("ListOfSeriesToDownload=\n", 1)[1].split()
    assert listed == [s.series_uid for s in emu.corpus.series]


def test_species_and_manufacturer_tree(emu: Emulator, http: requests.Session) -> None:
    species = http.get(f"{emu.base_url}/v4/getSpeciesTax").json()
    assert species == [{"speciesCode": "337915000", "speciesDescription": "Homo sapiens"}]
    tree = http.get(f"{emu.base_url}/v4/getManufacturerTree").json()
    assert tree["data"] == {"criteria": "root", "value": "All Manufactures"}
    series = emu.corpus.series[0]
    manufacturer = next(n for n in tree["children"] if n["data"]["value"] == series.manufacturer)
    models = [m["data"]["value"] for m in manufacturer["children"]]
    assert series.model_name in models


def test_paged_search_and_restrictions(emu: Emulator, http: requests.Session) -> None:
    collection = emu.corpus.collections[0].name
    form = {
        "criteriaType0": "CollectionCriteria",
        "value0": collection,
        "sortField": "subject",
        "sortDirection": "ascending",
        "start": "0",
        "size": "10",
    }
    paged = http.post(
        f"{emu.base_url}/getSimpleSearchWithModalityAndBodyPartPaged",
        data=form,
        headers=guest(emu, http),
    ).json()
    v4 = http.post(f"{emu.base_url}/v4/getSimpleSearch", data=form).json()
    assert paged["resultSet"] == v4["resultSet"] and paged["totalPatients"] == 2
    url = f"{emu.base_url}/v4/getRestrictionsForSimpleSearch"
    commercial = {lic.long_name: lic.commercial_use for lic in emu.corpus.licenses}
    expected = (
        "yes" if any(commercial.get(s.license_name) == "NO" for s in emu.corpus.series) else "no"
    )
    assert http.post(url, data=form).text == expected
    restricted = next(lic for lic in emu.corpus.licenses if lic.commercial_use == "NO")
    emu.set_license(collection, restricted.short_name)
    emu.clear_search_cache()
    assert http.post(url, data={**form, "size": "11"}).text == "yes"


def test_drill_downs(emu: Emulator, http: requests.Session) -> None:
    series = emu.corpus.series[0]
    pk = str(emu.corpus.pk(series.series_uid))
    studies = http.post(f"{emu.base_url}/v4/getStudyDrillDown", data={"list": pk}).json()
    assert [s["studyId"] for s in studies] == [series.study_uid]
    assert [x["seriesUID"] for x in studies[0]["seriesList"]] == [series.series_uid]
    emu.hide_series(series.series_uid)  # the image drill-down has no visibility filter
    images = http.post(f"{emu.base_url}/v4/getImageDrillDown", data={"list": pk}).json()
    assert list(images[0])[:3] == ["imagePkId", "contentDate", "contentTime"]
    assert [i["sopInstanceUid"] for i in images] == [
        i.sop_uid
        for i in sorted(emu.corpus.images_of(series.series_uid), key=lambda i: i.instance_number)
    ]
    assert all(i["acquisitionNumber"] == i["instanceNumber"] for i in images)
