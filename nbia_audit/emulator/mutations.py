"""Upstream changes a test can make to the archive: the curators' edits, done instantly.

Every function works on a ``Corpus`` under its lock and keeps the rows consistent (a new image
gets a new stored MD5, a license change reaches every series of the collection). The collection
hash column is *not* touched: only the nightly job writes it (protocol §1.3).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import date, datetime, timedelta

from nbia_audit.emulator.corpus import Corpus
from nbia_audit.emulator.dicomgen import make_uid, sop_class_uid
from nbia_audit.emulator.generate import ctp_digest, dicom_fields
from nbia_audit.emulator.model import (
    BytesSource,
    GeneratedSource,
    Image,
    Patient,
    Series,
    Study,
)

MAX_ADDED_IMAGES = 10_000


def _image(corpus: Corpus, sop_uid: str) -> Image:
    image = corpus.image_by_sop(sop_uid)
    if image is None:
        raise KeyError(f"no image with SOPInstanceUID {sop_uid}")
    return image


def _series(corpus: Corpus, series_uid: str) -> Series:
    series = corpus.series_by_uid(series_uid)
    if series is None:
        raise KeyError(f"no series with SeriesInstanceUID {series_uid}")
    return series


def replace_image(corpus: Corpus, sop_uid: str, data: bytes | None = None) -> str:
    """Give an image new bytes (``data``, or a deterministic variant); returns the new MD5.

    A generated image gets new seeded pixels, so it stays a valid DICOM file with the same
    SOP Instance UID; other images get their last byte flipped.
    """
    with corpus.lock:
        image = _image(corpus, sop_uid)
        source = image.source
        if data is None and isinstance(source, GeneratedSource):
            fields = source.fields
            size = fields.image_bytes or max(2, len(corpus.image_bytes(sop_uid)) // 4)
            new_source: GeneratedSource | BytesSource = GeneratedSource(
                replace(fields, image_bytes=size, pixel_seed=fields.pixel_seed + "|replaced")
            )
        else:
            if data is None:
                old = corpus.image_bytes(sop_uid)
                data = old[:-1] + bytes([old[-1] ^ 0xFF])
            new_source = BytesSource(data)
        corpus.put_image(replace(image, source=new_source, stored_md5=None, size=0))
        new_bytes = corpus.image_bytes(sop_uid)
        md5 = hashlib.md5(new_bytes).hexdigest()
        corpus.put_image(replace(image, source=new_source, stored_md5=md5, size=len(new_bytes)))
        return md5


def add_image(corpus: Corpus, series_uid: str) -> str:
    """Append a new generated image to a series; returns its SOP Instance UID."""
    with corpus.lock:
        series = _series(corpus, series_uid)
        study = corpus.study(series.study_uid)
        if study is None:
            raise KeyError(f"series {series_uid} has no study row")
        existing = corpus.images_of(series_uid)
        number = max((i.instance_number or 0 for i in existing), default=0) + 1
        template = next((i.source for i in existing if isinstance(i.source, GeneratedSource)), None)
        image_bytes = template.fields.image_bytes if template else None
        seed = template.fields.pixel_seed if template else "added"
        sop = make_uid("added-image", series_uid, number, len(corpus.images))
        fields = dicom_fields(
            seed,
            image_bytes,
            series,
            study,
            corpus.patient(series.collection, series.patient_id),
            sop,
            number,
            1,
        )
        source = GeneratedSource(fields)
        corpus.put_image(Image(sop, series_uid, number, 1, None, 0, source))
        data = corpus.image_bytes(sop)
        corpus.put_image(
            Image(sop, series_uid, number, 1, hashlib.md5(data).hexdigest(), len(data), source)
        )
        return sop


def remove_image(corpus: Corpus, sop_uid: str) -> None:
    """Delete an image row (its series hash changes; the series stays)."""
    _image(corpus, sop_uid)
    corpus.delete_image(sop_uid)


def add_series(
    corpus: Corpus,
    *,
    study_uid: str | None = None,
    collection: str | None = None,
    patient_id: str | None = None,
    images: int = 3,
    modality: str = "CT",
) -> str:
    """Add a visible series to an existing study, or to a new study of a new or existing
    patient; it is released one day after the newest series. Returns its UID."""
    if not 0 <= images <= MAX_ADDED_IMAGES:
        # Made while holding the corpus lock that every request needs: a huge count would
        # leave the emulator answering nothing until it is done.
        raise ValueError(f"images must be 0 to {MAX_ADDED_IMAGES:,} per added series")
    with corpus.lock:
        study = _target_study(corpus, study_uid, collection, patient_id)
        coll = corpus.collection(study.collection)
        if coll is None:
            raise KeyError(f"no collection {study.collection}")
        lic = corpus.license(coll.license)
        newest = max((s.date_released for s in corpus.series), default=datetime(2020, 1, 1))
        released = newest + timedelta(days=1)
        uid = make_uid("added-series", study.study_uid, len(corpus.series))
        corpus.put_series(
            Series(
                series_uid=uid,
                study_uid=study.study_uid,
                collection=coll.name,
                site=coll.site,
                patient_id=study.patient_id,
                modality=modality,
                series_number=100 + len(corpus.series_of_study(study.study_uid)),
                description="ADDED SERIES",
                protocol_name=None,
                body_part=None,
                series_date=study.study_date,
                manufacturer="GE MEDICAL SYSTEMS",
                model_name="LightSpeed16",
                software_versions=None,
                date_released=released,
                max_submission=released,
                doi=coll.doi,
                license_name=lic.long_name if lic else None,
                license_url=lic.url if lic else None,
                sop_class_uid=sop_class_uid(modality),
            )
        )
        for _ in range(images):
            add_image(corpus, uid)
        return uid


def _target_study(
    corpus: Corpus, study_uid: str | None, collection: str | None, patient_id: str | None
) -> Study:
    if study_uid is not None:
        study = corpus.study(study_uid)
        if study is None:
            raise KeyError(f"no study with StudyInstanceUID {study_uid}")
        return study
    collections = corpus.collections
    if collection is None:
        if not collections:
            raise KeyError("the corpus has no collection")
        collection = collections[0].name
    if corpus.collection(collection) is None:
        raise KeyError(f"no collection {collection}")
    if patient_id is None:
        patient_id = f"{collection}-ADDED-{len(corpus.patients) + 1:03d}"
    if corpus.patient(collection, patient_id) is None:
        corpus.put_patient(Patient(collection, patient_id, patient_id, "O", None, None))
    study = Study(
        study_uid=make_uid("added-study", collection, patient_id, len(corpus.studies)),
        collection=collection,
        patient_id=patient_id,
        study_date=date(2020, 1, 1),
        description="ADDED STUDY",
        study_id="1",
        patient_age=None,
    )
    corpus.put_study(study)
    return study


def remove_series(corpus: Corpus, series_uid: str) -> None:
    """Delete a series and its images."""
    _series(corpus, series_uid)
    corpus.delete_series(series_uid)


def set_visibility(corpus: Corpus, series_uid: str, visibility: str) -> None:
    """Set ``general_series.visibility`` ("1" visible; anything else hides the series)."""
    with corpus.lock:
        corpus.put_series(replace(_series(corpus, series_uid), visibility=visibility))


def set_license(corpus: Corpus, collection: str, short_name: str) -> None:
    """Relicense a collection: its row and every series' denormalised license columns."""
    with corpus.lock:
        coll = corpus.collection(collection)
        lic = corpus.license(short_name)
        if coll is None or lic is None:
            raise KeyError(f"no collection {collection!r} or license {short_name!r}")
        corpus.put_collection(replace(coll, license=short_name))
        for s in corpus.series:
            if s.collection == collection:
                corpus.put_series(replace(s, license_name=lic.long_name, license_url=lic.url))


def set_doi(corpus: Corpus, collection: str, doi: str) -> None:
    """Change a collection's DOI (``description_uri``) on it and its non-analysis series."""
    with corpus.lock:
        coll = corpus.collection(collection)
        if coll is None:
            raise KeyError(f"no collection {collection!r}")
        corpus.put_collection(replace(coll, doi=doi))
        for s in corpus.series:
            if s.collection == collection and s.third_party is None:
                corpus.put_series(replace(s, doi=doi))


def set_release_date(corpus: Corpus, target: str, when: datetime | date | str) -> None:
    """Set ``date_released`` of one series, or of every series of a collection."""
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    if not isinstance(when, datetime):
        when = datetime(when.year, when.month, when.day)
    with corpus.lock:
        if corpus.series_by_uid(target) is not None:
            targets = [_series(corpus, target)]
        elif corpus.collection(target) is not None:
            targets = [s for s in corpus.series if s.collection == target]
        else:
            raise KeyError(f"{target!r} is neither a series UID nor a collection")
        for s in targets:
            corpus.put_series(replace(s, date_released=when, max_submission=when))


def set_stored_md5(corpus: Corpus, sop_uid: str, value: str | None) -> None:
    """Overwrite ``md5_digest`` (the bytes stay): a stale, odd-cased or NULL value."""
    with corpus.lock:
        corpus.put_image(replace(_image(corpus, sop_uid), stored_md5=value))


def shorten_md5(corpus: Corpus, sop_uid: str) -> str | None:
    """Store the MD5 the CTP way, leading zeros dropped (protocol §3); returns the new value."""
    with corpus.lock:
        image = _image(corpus, sop_uid)
        value = None if image.stored_md5 is None else ctp_digest(image.stored_md5)
        corpus.put_image(replace(image, stored_md5=value))
        return value
