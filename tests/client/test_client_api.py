"""Every NbiaClient endpoint against the real emulator over loopback HTTP, in each API family."""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from nbia_audit import merkle as hashing
from nbia_audit.client import SearchCriterion
from nbia_audit.client.servers import ApiFamily
from nbia_audit.emulator import Emulator
from nbia_audit.errors import ApiBadRequest
from tests.support.client import make_client, running_emulator

FAMILIES: tuple[ApiFamily, ...] = ("v4", "v2", "v1")


@pytest.fixture
def emu() -> Iterator[Emulator]:
    """A fresh emulator per test: faults and mutations never leak between tests."""
    yield from running_emulator()


def _public_series(emulator: Emulator, collection: str | None = None) -> list[str]:
    corpus = emulator.corpus
    return sorted(
        s.series_uid
        for s in corpus.series
        if s.visibility == "1"
        and (collection is None or s.collection == collection)
        and (col := corpus.collection(s.collection)) is not None
        and col.public
    )


@pytest.mark.parametrize("api", FAMILIES)
def test_collections_patients_studies_and_series_match_the_archive(
    emu: Emulator, api: ApiFamily
) -> None:
    client = make_client(emu, api=api)
    corpus = emu.corpus
    names = sorted(client.collections())
    assert names == sorted(c.name for c in corpus.collections if c.public)
    name = names[0]
    patients = client.patients(name)
    assert sorted(p.patient_id for p in patients) == sorted(
        p.patient_id for p in corpus.patients if p.collection == name
    )
    assert all(p.collection == name for p in patients)
    studies = client.studies(collection=name)
    assert sorted(s.study_uid for s in studies) == sorted(
        s.study_uid for s in corpus.studies if s.collection == name
    )
    assert [s.study_uid for s in client.studies(study_uid=studies[0].study_uid)] == [
        studies[0].study_uid
    ]
    assert sorted(s.series_uid for s in client.series(collection=name)) == _public_series(emu, name)


@pytest.mark.parametrize("api", FAMILIES)
def test_series_records_carry_every_field_the_lock_needs(emu: Emulator, api: ApiFamily) -> None:
    client = make_client(emu, api=api)
    for info in client.series(collection=client.collections()[0]):
        truth = emu.corpus.series_by_uid(info.series_uid)
        assert truth is not None
        images = emu.corpus.images_of(info.series_uid)
        assert (info.collection, info.patient_id, info.study_uid) == (
            truth.collection,
            truth.patient_id,
            truth.study_uid,
        )
        assert (info.modality, info.series_number) == (truth.modality, truth.series_number)
        assert info.image_count == len(images)
        assert info.file_size == sum(image.size for image in images)
        assert info.doi == truth.doi
        assert (info.license_name, info.license_url) == (truth.license_name, truth.license_url)
        assert info.released is not None and info.released.date() == truth.date_released.date()
        assert info.released_raw
        assert info.third_party is (truth.third_party == "YES" if truth.third_party else None)


def test_series_filters_are_sent_only_when_given(emu: Emulator) -> None:
    client = make_client(emu)
    everything = client.series()
    one = everything[0]
    assert [s.series_uid for s in client.series(series_uid=one.series_uid)] == [one.series_uid]
    by_study = client.series(study_uid=one.study_uid, modality=one.modality)
    assert one.series_uid in {s.series_uid for s in by_study}
    assert all(s.modality == one.modality for s in by_study)
    assert client.series(collection="NO-SUCH-COLLECTION") == []
    sent = [dict(r.params) for r in emu.requests if r.endpoint == "getSeries"]
    assert sent[0] == {} and sent[1] == {"SeriesInstanceUID": one.series_uid}


@pytest.mark.parametrize(
    ("api", "endpoint"), [("v4", "getSeriesMetadata"), ("v2", "getSeriesMetadata2")]
)
def test_series_metadata_is_batched(emu: Emulator, api: ApiFamily, endpoint: str) -> None:
    client = make_client(emu, api=api, metadata_batch_size=3)
    uids = _public_series(emu)
    requested = [*uids, uids[0], "1.2.3.4.5.6.7.404"]  # a repeat and an unknown series
    found = client.series_metadata(requested)
    assert sorted(info.series_uid for info in found) == uids
    batches = [
        [uid for k, v in r.params if k == "list" for uid in v.split(",")]
        for r in emu.requests
        if r.endpoint == endpoint
    ]
    assert [len(batch) for batch in batches] == [3, 3, len(uids) + 1 - 6]
    truth = emu.corpus.series_by_uid(found[0].series_uid)
    assert truth is not None and found[0].image_count == len(emu.corpus.images_of(truth.series_uid))


def test_series_metadata_on_v1_asks_once_per_series(emu: Emulator) -> None:
    client = make_client(emu, api="v1")
    uids = _public_series(emu)[:3]
    found = client.series_metadata(uids)
    assert [info.series_uid for info in found] == uids
    assert len([r for r in emu.requests if r.endpoint == "getSeriesMetaData"]) == 3
    assert all(info.released is not None for info in found)  # Java Date.toString() parsed


@pytest.mark.parametrize("api", FAMILIES)
def test_series_size_and_sop_instance_uids(emu: Emulator, api: ApiFamily) -> None:
    client = make_client(emu, api=api)
    uid = _public_series(emu)[0]
    images = emu.corpus.images_of(uid)
    size = client.series_size(uid)
    assert size is not None
    assert (size.bytes, size.objects) == (sum(i.size for i in images), len(images))
    assert sorted(client.sop_instance_uids(uid)) == sorted(i.sop_uid for i in images)
    assert client.sop_instance_uids("1.2.3.4.404") == []


def test_series_size_of_an_unknown_series_is_none(emu: Emulator) -> None:
    assert make_client(emu).series_size("1.2.3.4.404") is None


@pytest.mark.parametrize(
    ("api", "sent"), [("v4", "12-31-2029"), ("v2", "31/12/2029"), ("v1", "31/12/2029")]
)
def test_updated_series_writes_the_date_each_family_expects(
    emu: Emulator, api: ApiFamily, sent: str
) -> None:
    uid = _public_series(emu)[0]
    emu.set_release_date(uid, datetime(2030, 1, 2))
    found = make_client(emu, api=api).updated_series(date(2029, 12, 31))
    assert [info.series_uid for info in found] == [uid]
    assert found[0].released is not None and found[0].released.date() == date(2030, 1, 2)
    assert dict(emu.requests[-1].params) == {"fromDate": sent}


@pytest.mark.parametrize("api", FAMILIES)
def test_hierarchy_hashes_are_returned_verbatim(emu: Emulator, api: ApiFamily) -> None:
    client = make_client(emu, api=api)
    uid = _public_series(emu)[0]
    series = emu.corpus.series_by_uid(uid)
    assert series is not None
    expected = hashing.series_hash(i.stored_md5 for i in emu.corpus.images_of(uid))
    assert client.series_hash(uid) == expected
    assert len(client.study_hash(series.study_uid)) == 32
    assert len(client.patient_hash(series.collection, series.patient_id)) == 32
    assert len(client.collection_hash(series.collection)) == 32
    assert client.series_hash("1.2.3.4.404") == ""
    assert client.patient_hash("NO-SUCH", series.patient_id) == ""


def test_hierarchy_levels_are_validated_before_sending(emu: Emulator) -> None:
    client = make_client(emu)
    for bad in (
        {},
        {"series_uid": "1", "study_uid": "2"},
        {"patient_id": "P"},
        {"series_uid": "1", "collection": "C"},
    ):
        with pytest.raises(ValueError):
            client.md5_hierarchy(**bad)
    assert emu.request_count == 0


@pytest.mark.parametrize(
    ("api", "endpoint", "param"),
    [("v4", "getMD5HashForImage", "SOPInstanceUID"), ("v2", "getM5HashForImage", "SOPInstanceUid"),
     ("v1", "getM5HashForImage", "SOPInstanceUid")],
)  # fmt: skip
def test_image_md5_in_both_spellings_verbatim(
    emu: Emulator, api: ApiFamily, endpoint: str, param: str
) -> None:
    client = make_client(emu, api=api)
    image = emu.corpus.images_of(_public_series(emu)[0])[0]
    short = emu.shorten_md5(image.sop_uid)  # maybe unchanged when the digest has no leading 0
    assert client.image_md5(image.sop_uid) == short
    assert client.image_md5("1.2.3.4.404") == ""
    record = [r for r in emu.requests if r.endpoint == endpoint][0]
    assert record.params == ((param, image.sop_uid),)


def test_a_short_stored_md5_comes_back_unpadded(emu: Emulator) -> None:
    image = emu.corpus.images_of(_public_series(emu)[0])[0]
    emu.set_stored_md5(image.sop_uid, "0abc")
    assert make_client(emu).image_md5(image.sop_uid) == "0abc"


@pytest.mark.parametrize("api", ["v4", "v2"])
def test_manifest_for_series_echoes_the_request(emu: Emulator, api: ApiFamily) -> None:
    uids = _public_series(emu)[:3]
    manifest = make_client(emu, api=api).manifest_for_series(uids, include_annotation=True)
    assert manifest.series_uids == tuple(uids) and manifest.include_annotation is True
    endpoint = "getManifestText" if api == "v4" else "getManifestTextV2"
    assert ("includeAnnotation", "true") in [r for r in emu.requests if r.endpoint == endpoint][
        0
    ].params


@pytest.mark.parametrize("api", ["v4", "v1"])
def test_manifest_from_patient_study_series_is_a_union(emu: Emulator, api: ApiFamily) -> None:
    client = make_client(emu, api=api)
    first, *rest = client.series()
    manifest = client.manifest_from_patient_study_series(
        patient_ids=[first.patient_id or ""], series_uids=[rest[-1].series_uid]
    )
    expected = {s.series_uid for s in client.series(patient_id=first.patient_id)} | {
        rest[-1].series_uid
    }
    assert set(manifest.series_uids) == expected
    sent = dict(
        [r for r in emu.requests if r.endpoint == "getManifestFromPatientStudySeries"][0].params
    )
    assert "anyOrAll" not in sent and "studyUIDs" not in sent
    with pytest.raises(ValueError):
        client.manifest_from_patient_study_series()


def test_manifest_for_collection_and_searches(emu: Emulator) -> None:
    client = make_client(emu)
    name = client.collections()[0]
    expected = set(_public_series(emu, name))
    assert set(client.manifest_for_collection(name).series_uids) == expected
    searched = client.manifest_for_simple_search([SearchCriterion.collection(name)])
    assert set(searched.series_uids) == expected and searched.include_annotation is False
    modality = client.series(collection=name)[0].modality or ""
    narrowed = client.manifest_for_simple_search(
        [SearchCriterion.collection(name), SearchCriterion.modality(modality)]
    )
    assert set(narrowed.series_uids) == {
        s.series_uid for s in client.series(collection=name, modality=modality)
    }
    patient = client.patients(name)[0].patient_id
    assert set(client.manifest_for_text_search(patient).series_uids) == {
        s.series_uid for s in client.series(collection=name, patient_id=patient)
    }


def test_simple_search_on_the_unversioned_endpoint_with_a_date_range(emu: Emulator) -> None:
    uid = _public_series(emu)[0]
    emu.set_release_date(uid, datetime(2031, 5, 6))
    client = make_client(emu, api="v2")
    manifest = client.manifest_for_simple_search(
        [SearchCriterion.released_between(date(2031, 5, 6), date(2031, 5, 6))]
    )
    assert manifest.series_uids == (uid,)
    sent = dict([r for r in emu.requests if r.endpoint == "getManifestForSimpleSearch"][0].params)
    assert (sent["fromDate0"], sent["toDate0"]) == ("06/05/2031", "06/05/2031")


def test_shared_carts_round_trip(emu: Emulator) -> None:
    client = make_client(emu)
    uids = _public_series(emu)[:3]
    client.create_shared_list("my-cart", uids, description="for the paper", url="https://x.org")
    assert sorted(s.series_uid for s in client.cart_contents("my-cart")) == uids
    stored = client.shared_list("my-cart")
    assert stored is not None and stored.series_uids == tuple(sorted(uids))
    assert (stored.description, stored.url, stored.owner) == (
        "for the paper",
        "https://x.org",
        "nbia_guest",
    )
    emu.hide_series(uids[0])
    assert sorted(s.series_uid for s in client.cart_contents("my-cart")) == uids[1:]
    assert client.shared_list("my-cart") == stored  # the stored list still names it
    assert client.shared_list("no-such-cart") is None
    assert client.cart_contents("no-such-cart") == []
    with pytest.raises(ApiBadRequest) as duplicate:
        client.create_shared_list("MY-CART ", uids[1:])
    assert duplicate.value.server_message == "Duplicate list name"


def test_a_cart_of_inaccessible_series_is_refused_whole(emu: Emulator) -> None:
    with pytest.raises(ApiBadRequest, match="permission"):
        make_client(emu).create_shared_list("bad", [_public_series(emu)[0], "1.2.3.4.404"])


@pytest.mark.parametrize("api", ["v4", "v2"])
def test_cart_data_resolves_database_keys(emu: Emulator, api: ApiFamily) -> None:
    uids = _public_series(emu)[:2]
    found = make_client(emu, api=api).cart_data([emu.corpus.pk(uid) for uid in uids])
    assert sorted(info.series_uid for info in found) == uids
    truth = emu.corpus.series_by_uid(found[0].series_uid)
    assert truth is not None and found[0].image_count == len(emu.corpus.images_of(truth.series_uid))
    assert found[0].study_uid == truth.study_uid


@pytest.mark.parametrize("api", ["v4", "v2"])
def test_doi_licenses_and_descriptions(emu: Emulator, api: ApiFamily) -> None:
    client = make_client(emu, api=api)
    collection = emu.corpus.collections[0]
    matches = client.collection_or_series_for_doi(collection.doi)
    assert [m.collection for m in matches] == [collection.name]
    series_level = client.collection_or_series_for_doi(collection.doi, series_level=True)
    assert sorted(m.series_uid or "" for m in series_level) == sorted(
        s.series_uid for s in emu.corpus.series if s.doi == collection.doi
    )
    assert client.collection_or_series_for_doi("https://doi.org/10.0/none") == []
    with pytest.raises(ValueError):
        client.collection_or_series_for_doi(" ")
    licenses = client.licenses()
    assert {lic.short_name for lic in licenses} == {lic.short_name for lic in emu.corpus.licenses}
    descriptions = {d.collection: d for d in client.collection_descriptions()}
    assert set(descriptions) == {c.name for c in emu.corpus.collections if c.public}
    assert descriptions[collection.name].doi == collection.doi
    assert [d.collection for d in client.collection_descriptions(collection.name)] == [
        collection.name
    ]


def test_download_streams_the_series_zip_in_chunks(emu: Emulator, tmp_path: Path) -> None:
    client = make_client(emu, download_chunk_size=4096)
    uid = _public_series(emu)[0]
    chunks: list[int] = []
    result = client.download_series(uid, tmp_path / "series.zip", on_bytes=chunks.append)
    images = emu.corpus.images_of(uid)
    assert result.attempts == 1 and result.has_md5_csv
    assert result.bytes_received == sum(chunks) == (tmp_path / "series.zip").stat().st_size
    assert len(chunks) > 1 and max(chunks) <= 4096
    assert len(result.image_entries) == len(images)
    with zipfile.ZipFile(result.path) as archive:
        rows = list(csv.reader(io.StringIO(archive.read("md5hashes.csv").decode())))
        received = {hashlib.md5(archive.read(name)).hexdigest() for name in result.image_entries}
    assert rows[0] == ["Filename", "MD5Hash"]
    assert received == {hashlib.md5(emu.corpus.image_bytes(i.sop_uid)).hexdigest() for i in images}


@pytest.mark.parametrize("api", FAMILIES)
def test_download_of_an_unknown_series_is_a_bad_request(
    emu: Emulator, api: ApiFamily, tmp_path: Path
) -> None:
    with pytest.raises(ApiBadRequest) as caught:
        make_client(emu, api=api).download_series("1.2.3.4.404", tmp_path / "x.zip")
    error = caught.value
    assert error.endpoint == f"{api}/getImageWithMD5Hash" and error.status == 400
    assert "1.2.3.4.404" in error.server_message and error.server_message in str(error)


def test_the_collection_hash_lags_until_the_nightly_job(emu: Emulator) -> None:
    client = make_client(emu)
    uid = _public_series(emu)[0]
    series = emu.corpus.series_by_uid(uid)
    assert series is not None
    before = (client.series_hash(uid), client.collection_hash(series.collection))
    emu.replace_image(emu.corpus.images_of(uid)[0].sop_uid)
    assert client.series_hash(uid) != before[0]  # computed live
    assert client.collection_hash(series.collection) == before[1]  # cached (protocol §1.3)
    emu.run_nightly_job()
    emu.clear_md5_cache()
    assert client.collection_hash(series.collection) != before[1]


class _RecordingSession(requests.Session):
    """A real session that remembers the ``verify`` each request was sent with."""

    def __init__(self) -> None:
        super().__init__()
        self.verify_used: list[object] = []

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        self.verify_used.append(kwargs.get("verify"))
        return super().request(*args, **kwargs)


def test_an_injected_session_is_used_verified_and_left_open(emu: Emulator) -> None:
    session = _RecordingSession()
    session.verify = False  # the client must not honour this
    with make_client(emu, session=session, api="v2") as client:
        assert client.collections()
    assert session.verify_used and all(v is True for v in session.verify_used)
    assert len(session.verify_used) == 3  # token, getCollectionValues, logout
    assert session.get(emu.base_url + "/v1/getCollectionValues").ok  # still open
    session.close()
