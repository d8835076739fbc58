"""Build a synthetic, deterministic corpus from a ``CorpusSpec``.

Everything derives from the seed: UIDs (``dicomgen.make_uid`` over seed + position), names,
dates, the DB row order of images and the pixel bytes. The same spec always yields byte-identical
DICOM, the same stored MD5s and therefore the same hierarchy hashes.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from nbia_audit.emulator.corpus import Corpus
from nbia_audit.emulator.dicomgen import (
    DicomFields,
    encode_image,
    make_uid,
    sop_class_uid,
    template_for,
)
from nbia_audit.emulator.model import (
    Collection,
    GeneratedSource,
    Image,
    License,
    Patient,
    Series,
    Study,
)

LICENSES: tuple[License, ...] = (
    License(
        1,
        "Creative Commons Attribution 3.0 Unported License",
        "CC BY 3.0",
        "http://creativecommons.org/licenses/by/3.0/",
        "You are free to share and adapt the material for any purpose, with attribution.",
        "YES",
    ),
    License(
        2,
        "Creative Commons Attribution 4.0 International License",
        "CC BY 4.0",
        "https://creativecommons.org/licenses/by/4.0/",
        "You are free to share and adapt the material for any purpose, with attribution.",
        "YES",
    ),
    License(
        3,
        "Creative Commons Attribution-NonCommercial 4.0 International License",
        "CC BY-NC 4.0",
        "https://creativecommons.org/licenses/by-nc/4.0/",
        "You may share and adapt the material for non-commercial purposes, with attribution.",
        "NO",
    ),
    License(
        4,
        "TCIA Restricted License Agreement",
        "TCIA Restricted",
        "https://www.cancerimagingarchive.net/data-usage-policies-and-restrictions/",
        "Access requires a signed data use agreement.",
        "NO",
    ),
)

_TOPICS = (
    ("LUNG", "CHEST"),
    ("BRAIN", "HEAD"),
    ("BREAST", "BREAST"),
    ("PROSTATE", "PROSTATE"),
    ("LIVER", "ABDOMEN"),
    ("KIDNEY", "KIDNEY"),
    ("HEADNECK", "HEADNECK"),
    ("PANCREAS", "PANCREAS"),
)
_EQUIPMENT = (
    ("GE MEDICAL SYSTEMS", "LightSpeed16", "LightSpeedverrel"),
    ("SIEMENS", "Avanto", "syngo MR B15"),
    ("Philips Medical Systems", "Ingenuity CT", "4.1.3"),
    ("TOSHIBA", "Aquilion", None),
)
_STUDY_DESCRIPTIONS = ("CT CHEST W CONT", "MRI BRAIN W/WO", "PET CT with registered MR", None)
_SERIES_DESCRIPTIONS = ("AXIAL", "Recon 2: LUNG", "T1 se ax", "T2 fse sag", None)


@dataclass(frozen=True, slots=True)
class CorpusSpec:
    """Shape of a generated corpus; counts are per parent (patients per collection, ...).

    ``image_bytes`` enlarges each image to about that many bytes of seeded pixel data.
    ``unpadded_md5`` stores CTP-style digests (``BigInteger.toString(16)``: leading zeros
    dropped, protocol §3); ``mismatched_md5`` stores a value that does not match the bytes for
    that many images; ``restricted`` makes the last N collections non-public (visible only to
    named users); ``third_party`` marks one series per collection as a third-party analysis.
    """

    seed: int = 0
    collections: int = 2
    patients: int = 2
    studies: int = 1
    series: int = 2
    images: int = 3
    image_bytes: int | None = None
    unpadded_md5: bool = False
    mismatched_md5: int = 0
    restricted: int = 0
    third_party: bool = True


def collection_name(index: int) -> str:
    """Deterministic collection name for the ``index``-th generated collection."""
    topic = _TOPICS[index % len(_TOPICS)][0]
    suffix = f"-{index // len(_TOPICS) + 1}" if index >= len(_TOPICS) else ""
    return f"EMU-{topic}{suffix}"


def doi_for(seed: int, *parts: object) -> str:
    """A TCIA-style DOI URL (``description_uri``) derived from the seed."""
    token = hashlib.sha256(repr((seed, parts)).encode()).hexdigest().upper()
    return f"https://doi.org/10.7937/EMU.{token[:4]}-{token[4:8]}"


def ctp_digest(md5_hex: str) -> str:
    """``new BigInteger(1, md5).toString(16)``: the digest without leading zeros (protocol §3)."""
    return format(int(md5_hex, 16), "x")


def build_corpus(spec: CorpusSpec) -> Corpus:
    """Generate the corpus described by ``spec`` (metadata, stored MD5s and sizes)."""
    rng = random.Random(f"nbia-audit-emulator:{spec.seed}")
    corpus = Corpus(licenses=LICENSES)
    first_restricted = spec.collections - spec.restricted
    for c in range(spec.collections):
        _build_collection(corpus, spec, rng, c, public=c < first_restricted)
    _store_md5s(corpus, spec, rng)
    return corpus


def _build_collection(
    corpus: Corpus, spec: CorpusSpec, rng: random.Random, c: int, *, public: bool
) -> None:
    name = collection_name(c)
    lic = LICENSES[3] if not public else LICENSES[c % 3]
    base = datetime(2015, 3, 1, 10, 0, 0) + timedelta(days=97 * c)
    coll = Collection(
        name=name,
        site="EMU",
        description=f"<p>The <b>{name}</b> collection is synthetic, generated by the "
        f"nbia-audit emulator (seed {spec.seed}).</p>",
        doi=doi_for(spec.seed, name),
        license=lic.short_name,
        public=public,
        desc_id=c + 1,
        updated_ms=int((base - datetime(1970, 1, 1)).total_seconds() * 1000),
    )
    corpus.put_collection(coll)
    for p in range(spec.patients):
        pid = f"{name}-{p + 1:03d}"
        corpus.put_patient(
            Patient(
                collection=name,
                patient_id=pid,
                name=pid,
                sex=rng.choice(("M", "F")),
                birth_date=None,
                ethnic_group=rng.choice((None, "W", "B")),
            )
        )
        for s in range(spec.studies):
            _build_study(corpus, spec, rng, (c, p, s), coll, pid, lic, base)
    if spec.third_party:
        last = corpus.series[-1] if corpus.series else None
        if last is not None and last.collection == name:
            corpus.put_series(
                replace(last, third_party="YES", doi=doi_for(spec.seed, name, "analysis"))
            )


def _build_study(
    corpus: Corpus,
    spec: CorpusSpec,
    rng: random.Random,
    pos: tuple[int, int, int],
    coll: Collection,
    pid: str,
    lic: License,
    base: datetime,
) -> None:
    c, p, s = pos
    study_uid = make_uid(spec.seed, "study", c, p, s)
    study_date = date(1995, 1, 1) + timedelta(days=rng.randrange(0, 9000))
    study = Study(
        study_uid=study_uid,
        collection=coll.name,
        patient_id=pid,
        study_date=study_date,
        description=rng.choice(_STUDY_DESCRIPTIONS),
        study_id=str(rng.randrange(1000, 99999)),
        patient_age=f"{rng.randrange(25, 85):03d}Y",
    )
    corpus.put_study(study)
    body_part = _TOPICS[c % len(_TOPICS)][1]
    for r in range(spec.series):
        modality = ("CT", "MR")[(c + r) % 2]
        maker, model_name, software = _EQUIPMENT[rng.randrange(len(_EQUIPMENT))]
        released = base + timedelta(minutes=p * 60 + s * 7, seconds=r)
        series = Series(
            series_uid=make_uid(spec.seed, "series", c, p, s, r),
            study_uid=study_uid,
            collection=coll.name,
            site=coll.site,
            patient_id=pid,
            modality=modality,
            series_number=r + 2,
            description=rng.choice(_SERIES_DESCRIPTIONS),
            protocol_name=rng.choice((None, None, f"{modality} ROUTINE")),
            # One series per collection without a body part: NBIA serves it as `{}`.
            body_part=None if (p, s, r) == (0, 0, 1) else body_part,
            series_date=study_date,
            manufacturer=maker,
            model_name=model_name,
            software_versions=software,
            date_released=released,
            max_submission=released,
            doi=coll.doi,
            license_name=lic.long_name,
            license_url=lic.url,
            sop_class_uid=sop_class_uid(modality),
            pixel_spacing=0.703125,
            slice_thickness=2.5 if modality == "CT" else 5.0,
        )
        corpus.put_series(series)
        _build_images(corpus, spec, rng, series, study, (c, p, s, r))


def dicom_fields(
    spec_seed: int | str,
    image_bytes: int | None,
    series: Series,
    study: Study,
    patient: Patient | None,
    sop_uid: str,
    instance: int | None,
    acquisition: int | None,
) -> DicomFields:
    """The header values a generated image carries, from its rows."""
    return DicomFields(
        template=template_for(series.modality),
        sop_uid=sop_uid,
        study_uid=study.study_uid,
        series_uid=series.series_uid,
        frame_uid=make_uid("frame", series.series_uid),
        patient_id=series.patient_id,
        patient_name=patient.name if patient else series.patient_id,
        patient_sex=patient.sex if patient else None,
        patient_birth_date=None,
        patient_age=study.patient_age,
        study_date=study.study_date.strftime("%Y%m%d") if study.study_date else None,
        study_time="101500",
        study_id=study.study_id,
        study_description=study.description,
        series_date=series.series_date.strftime("%Y%m%d") if series.series_date else None,
        series_description=series.description,
        series_number=series.series_number,
        modality=series.modality,
        body_part=series.body_part,
        manufacturer=series.manufacturer,
        model_name=series.model_name,
        software_versions=series.software_versions,
        protocol_name=series.protocol_name,
        instance_number=instance,
        acquisition_number=acquisition,
        image_bytes=image_bytes,
        pixel_seed=str(spec_seed),
    )


def _build_images(
    corpus: Corpus,
    spec: CorpusSpec,
    rng: random.Random,
    series: Series,
    study: Study,
    pos: tuple[int, int, int, int],
) -> None:
    patient = corpus.patient(series.collection, series.patient_id)
    order = list(range(spec.images))
    rng.shuffle(order)  # DB row order is not InstanceNumber order (protocol §2.2)
    two_acquisitions = spec.images >= 4 and pos[3] % 2 == 1
    for i in order:
        sop = make_uid(spec.seed, "image", *pos, i)
        acquisition = 1 + (two_acquisitions and i >= spec.images // 2)
        fields = dicom_fields(
            spec.seed, spec.image_bytes, series, study, patient, sop, i + 1, acquisition
        )
        data = encode_image(fields)
        corpus.put_image(
            Image(
                sop_uid=sop,
                series_uid=series.series_uid,
                instance_number=i + 1,
                acquisition_number=acquisition,
                stored_md5=hashlib.md5(data).hexdigest(),
                size=len(data),
                source=GeneratedSource(fields),
            )
        )


def _store_md5s(corpus: Corpus, spec: CorpusSpec, rng: random.Random) -> None:
    """Apply the spec's stored-MD5 quirks (protocol §3) after all images exist."""
    images = corpus.images
    mismatched = set(rng.sample(range(len(images)), min(spec.mismatched_md5, len(images))))
    for index, image in enumerate(images):
        stored = image.stored_md5
        if stored is None:
            continue
        if index in mismatched:
            stored = hashlib.md5(b"stale:" + stored.encode()).hexdigest()
        if spec.unpadded_md5:
            stored = ctp_digest(stored)
        if stored != image.stored_md5:
            corpus.put_image(replace(image, stored_md5=stored))
