"""The corpus builder: real DICOM, determinism, size options, MD5 quirks, folders."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pydicom
import pytest

from nbia_audit.emulator import CorpusSpec, Emulator, build_corpus
from nbia_audit.emulator.folder import read_corpus, write_corpus
from nbia_audit.emulator.generate import ctp_digest
from nbia_audit.emulator.zipstream import java_hashmap_order

SPEC = CorpusSpec(seed=7, collections=2, patients=3, studies=2, series=2, images=4)


def test_shape_and_headers_match_the_rows() -> None:
    corpus = build_corpus(SPEC)
    assert len(corpus.collections) == 2 and len(corpus.patients) == 6
    assert len(corpus.studies) == 12 and len(corpus.series) == 24 and len(corpus.images) == 96
    for image in corpus.images[:10]:
        data = corpus.image_bytes(image.sop_uid)
        ds = pydicom.dcmread(io.BytesIO(data))
        series = corpus.series_by_uid(image.series_uid)
        assert series is not None
        assert (
            ds.SOPInstanceUID == image.sop_uid
            and ds.file_meta.MediaStorageSOPInstanceUID == image.sop_uid
        )
        assert ds.SeriesInstanceUID == series.series_uid and ds.StudyInstanceUID == series.study_uid
        assert ds.PatientID == series.patient_id and ds.Modality == series.modality
        assert ds.InstanceNumber == image.instance_number
        assert len(ds.PixelData) == ds.Rows * ds.Columns * 2
        assert hashlib.md5(data).hexdigest() == image.stored_md5 and len(data) == image.size


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    a, b = build_corpus(SPEC), build_corpus(SPEC)
    assert [i.sop_uid for i in a.images] == [i.sop_uid for i in b.images]
    assert [i.stored_md5 for i in a.images] == [i.stored_md5 for i in b.images]
    sop = a.images[5].sop_uid
    assert a.image_bytes(sop) == b.image_bytes(sop)
    other = build_corpus(
        CorpusSpec(seed=8, collections=2, patients=3, studies=2, series=2, images=4)
    )
    assert not {i.sop_uid for i in other.images} & {i.sop_uid for i in a.images}


def test_image_bytes_option_makes_big_seeded_images() -> None:
    corpus = build_corpus(
        CorpusSpec(seed=1, collections=1, patients=1, series=1, images=2, image_bytes=512 * 1024)
    )
    first, second = corpus.images
    assert 500_000 < first.size < 560_000
    assert corpus.image_bytes(first.sop_uid)[-4096:] != corpus.image_bytes(second.sop_uid)[-4096:]


def test_db_row_order_is_not_instance_order() -> None:
    corpus = build_corpus(CorpusSpec(seed=2, collections=1, patients=1, series=1, images=20))
    numbers = [i.instance_number for i in corpus.images_of(corpus.series[0].series_uid)]
    assert sorted(numbers) == list(range(1, 21)) and numbers != sorted(numbers)


def test_md5_quirk_options() -> None:
    plain = build_corpus(CorpusSpec(seed=3, collections=1, patients=4, series=4, images=8))
    short = build_corpus(
        CorpusSpec(seed=3, collections=1, patients=4, series=4, images=8, unpadded_md5=True)
    )
    zeros = [i for i in plain.images if i.stored_md5 and i.stored_md5.startswith("0")]
    assert zeros, "128 images should include some MD5s with a leading zero"
    for image in zeros:
        stored = short.image_by_sop(image.sop_uid)
        assert stored is not None and stored.stored_md5 == image.stored_md5.lstrip("0")  # type: ignore[union-attr]
    assert ctp_digest("000a" + "0" * 28) == "a" + "0" * 28
    stale = build_corpus(
        CorpusSpec(seed=3, collections=1, patients=4, series=4, images=8, mismatched_md5=5)
    )
    wrong = [
        i
        for i in stale.images
        if hashlib.md5(stale.image_bytes(i.sop_uid)).hexdigest() != i.stored_md5
    ]
    assert len(wrong) == 5


def test_third_party_series_and_licenses() -> None:
    corpus = build_corpus(SPEC)
    for collection in corpus.collections:
        analyses = [s for s in corpus.series if s.collection == collection.name and s.third_party]
        assert len(analyses) == 1 and analyses[0].doi != collection.doi
        assert collection.doi.startswith("https://doi.org/10.7937/")
        assert corpus.license(collection.license) is not None


def test_building_a_thousand_series() -> None:
    # How long this takes is measured by bench/, not asserted here: a loaded machine would fail a
    # wall-clock bound for no reason. What must hold at this size is that every UID stays unique.
    corpus = build_corpus(
        CorpusSpec(seed=1, collections=10, patients=10, studies=1, series=10, images=20)
    )
    assert len(corpus.images) == 20_000
    assert len({image.sop_uid for image in corpus.images}) == 20_000
    assert len({series.series_uid for series in corpus.series}) == 1_000


def test_write_and_read_a_folder(tmp_path: Path) -> None:
    corpus = build_corpus(CorpusSpec(seed=5, collections=2, patients=1, series=2, images=2))
    paths = write_corpus(corpus, tmp_path)
    assert len(paths) == 8 and all(p.suffix == ".dcm" for p in paths)
    (tmp_path / "EMU-LUNG" / "LICENSE").write_text("not DICOM")
    again = read_corpus(tmp_path)
    assert {c.name for c in again.collections} == {"EMU-LUNG", "EMU-BRAIN"}
    assert sorted(i.stored_md5 or "" for i in again.images) == sorted(
        i.stored_md5 or "" for i in corpus.images
    )
    original = {s.series_uid: s for s in corpus.series}
    for series in again.series:
        assert series.doi == original[series.series_uid].doi
        assert series.date_released == original[series.series_uid].date_released
    with Emulator.from_folder(tmp_path) as emu:
        sop = again.images[0].sop_uid
        assert emu.corpus.image_bytes(sop) == corpus.image_bytes(sop)
    with pytest.raises(FileNotFoundError):
        read_corpus(tmp_path / "missing")


def test_java_hashmap_order() -> None:
    # "a".hashCode() == 97, "b" == 98, "q" == 113; 16 buckets: a and q share bucket 1 (in
    # insertion order), b is in bucket 2.
    assert java_hashmap_order(["b", "q", "a"]) == ["q", "a", "b"]
    # "Aa" and "BB" collide (2112); 13 keys resize the table to 32 buckets.
    assert java_hashmap_order(["BB", "Aa"]) == ["BB", "Aa"]
    big = [f"{n:08d}.dcm" for n in range(1, 200)]
    assert java_hashmap_order(big) != big and sorted(java_hashmap_order(big)) == big
