"""Upstream mutations, seen through the wire (and through the control API)."""

from __future__ import annotations

import hashlib
import io
import zipfile

import pydicom
import pytest
import requests

from nbia_audit.emulator import Emulator, Fault
from nbia_audit.emulator.remote import ControlError, RemoteEmulator


def series_hash(emu: Emulator, http: requests.Session, uid: str) -> str:
    return http.post(f"{emu.base_url}/v4/getMD5Hierarchy", data={"SeriesInstanceUID": uid}).text


def sop_uids(emu: Emulator, http: requests.Session, uid: str) -> list[str]:
    response = http.get(f"{emu.base_url}/v4/getSOPInstanceUIDs", params={"SeriesInstanceUID": uid})
    return [r["SOPInstanceUID"] for r in response.json()] if response.content else []


def test_replace_image_changes_bytes_md5_and_hash(
    emulator: Emulator, http: requests.Session
) -> None:
    series = emulator.corpus.series[0]
    image = emulator.corpus.images_of(series.series_uid)[0]
    before = series_hash(emulator, http, series.series_uid)
    new_md5 = emulator.replace_image(image.sop_uid)
    assert new_md5 != image.stored_md5
    data = emulator.corpus.image_bytes(image.sop_uid)
    assert hashlib.md5(data).hexdigest() == new_md5
    assert pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID == image.sop_uid  # still valid DICOM
    served = http.get(
        f"{emulator.base_url}/v4/getMD5HashForImage", params={"SOPInstanceUID": image.sop_uid}
    )
    assert served.text == new_md5
    assert series_hash(emulator, http, series.series_uid) != before
    explicit = emulator.replace_image(image.sop_uid, b"not dicom at all")
    assert explicit == hashlib.md5(b"not dicom at all").hexdigest()


def test_add_and_remove_images(emulator: Emulator, http: requests.Session) -> None:
    uid = emulator.corpus.series[0].series_uid
    before = sop_uids(emulator, http, uid)
    added = emulator.add_image(uid)
    assert sop_uids(emulator, http, uid) == before + [added]
    ds = pydicom.dcmread(io.BytesIO(emulator.corpus.image_bytes(added)))
    assert ds.SeriesInstanceUID == uid and ds.InstanceNumber == 4
    emulator.remove_image(before[0])
    assert sop_uids(emulator, http, uid) == before[1:] + [added]
    with pytest.raises(KeyError):
        emulator.remove_image("9.9.9")


def test_add_series_to_existing_and_new_studies(emulator: Emulator, http: requests.Session) -> None:
    study = emulator.corpus.series[0].study_uid
    in_study = emulator.add_series(study_uid=study, images=2)
    listed = http.get(
        f"{emulator.base_url}/v4/getSeries", params={"StudyInstanceUID": study}
    ).json()
    assert in_study in {r["SeriesInstanceUID"] for r in listed}
    new_patient = emulator.add_series(collection="EMU-BRAIN", patient_id="NEW-1", images=1)
    patients = http.get(
        f"{emulator.base_url}/v4/getPatient", params={"Collection": "EMU-BRAIN"}
    ).json()
    assert "NEW-1" in {p["PatientId"] for p in patients}
    # Released after everything else, so getUpdatedSeries sees it.
    newest = max(s.date_released for s in emulator.corpus.series if s.series_uid != new_patient)
    day = newest.strftime("%m-%d-%Y")
    updated = http.get(f"{emulator.base_url}/v4/getUpdatedSeries", params={"fromDate": day}).json()
    assert new_patient in {r["SeriesInstanceUID"] for r in updated}


def test_remove_and_hide_series(emulator: Emulator, http: requests.Session) -> None:
    first, second = emulator.corpus.series[0].series_uid, emulator.corpus.series[1].series_uid
    emulator.remove_series(first)
    assert sop_uids(emulator, http, first) == []
    assert series_hash(emulator, http, first) == ""
    emulator.hide_series(second)
    hidden = http.get(f"{emulator.base_url}/v4/getSeries", params={"SeriesInstanceUID": second})
    assert hidden.content == b""
    emulator.show_series(second)
    assert http.get(
        f"{emulator.base_url}/v4/getSeries", params={"SeriesInstanceUID": second}
    ).json()


def test_license_doi_and_release_date(emulator: Emulator, http: requests.Session) -> None:
    emulator.set_license("EMU-LUNG", "CC BY-NC 4.0")
    listed = http.get(f"{emulator.base_url}/v4/getSeries", params={"Collection": "EMU-LUNG"}).json()
    assert {r["LicenseName"] for r in listed} == {
        "Creative Commons Attribution-NonCommercial 4.0 International License"
    }
    uid = listed[0]["SeriesInstanceUID"]
    archive = zipfile.ZipFile(
        io.BytesIO(
            http.get(f"{emulator.base_url}/v4/getImage", params={"SeriesInstanceUID": uid}).content
        )
    )
    assert "CC BY-NC 4.0" in archive.read("LICENSE").decode()
    emulator.set_doi("EMU-LUNG", "https://doi.org/10.7937/NEW")
    found = http.post(
        f"{emulator.base_url}/v4/getCollectionOrSeriesForDOI",
        data={"DOI": "https://doi.org/10.7937/NEW"},
    ).json()
    assert found == [{"collection": "EMU-LUNG", "authorized": 1}]
    emulator.set_release_date("EMU-LUNG", "2031-01-02")
    listed = http.get(f"{emulator.base_url}/v4/getSeries", params={"Collection": "EMU-LUNG"}).json()
    assert {r["DateReleased"] for r in listed} == {"01-02-2031"}
    with pytest.raises(KeyError):
        emulator.set_license("NOPE", "CC BY 4.0")


def test_short_and_mismatched_md5s(emulator: Emulator, http: requests.Session) -> None:
    image = emulator.corpus.images[0]
    emulator.set_stored_md5(image.sop_uid, "00ff" + "1" * 28)
    assert emulator.shorten_md5(image.sop_uid) == "ff" + "1" * 28
    response = http.get(
        f"{emulator.base_url}/v4/getImageWithMD5Hash",
        params={"SeriesInstanceUID": image.series_uid},
    )
    csv_text = zipfile.ZipFile(io.BytesIO(response.content)).read("md5hashes.csv").decode()
    assert ",ff" + "1" * 28 + "\n" in csv_text


def test_control_api_and_remote_client(emulator: Emulator, http: requests.Session) -> None:
    remote = RemoteEmulator(emulator.base_url)
    state = remote.state()
    assert state["base_url"] == emulator.base_url and state["images"] == 24
    series = remote.series()
    uid = series[0]["series_uid"]
    added = remote.mutate("add_image", series_uid=uid)
    assert added in sop_uids(emulator, http, uid)
    remote.mutate("hide_series", series_uid=uid)
    assert emulator.corpus.series_by_uid(uid).visibility == "0"  # type: ignore[union-attr]
    with pytest.raises(ControlError, match="unknown action"):
        remote.mutate("drop_database")
    with pytest.raises(ControlError):
        remote.mutate("remove_series", series_uid="9.9")
    remote.add_fault(Fault("status", status=502, times=1))
    assert http.get(f"{emulator.base_url}/v4/getSeries").status_code == 502
    remote.clear_faults()
    assert set(remote.run_nightly_job()) == {series[0]["collection"]}  # the hidden series
    assert remote.run_nightly_job() == {}
    remote.expire_tokens()
    assert remote.requests(clear=True)
    assert emulator.request_count == 0  # control calls are never logged
    bad = http.post(f"{emulator.root_url.rsplit('/', 1)[0]}/_emulator/mutate", data=b"[1]")
    assert bad.status_code == 400
