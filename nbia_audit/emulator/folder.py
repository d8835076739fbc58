"""Corpus <-> folder of DICOM files.

Layout written by ``write_corpus`` and read by ``read_corpus``::

    <root>/<Collection>/<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm
    <root>/nbia-emulator.json        optional sidecar (written by write_corpus)

When reading, the hierarchy comes from each file's DICOM header; the collection is the first
path component under the root (files directly in the root belong to a collection named after
the root folder). The sidecar, when present, supplies what headers cannot: per collection
``license`` (a short name from ``getLicenses``), ``doi``, ``description``, ``public``; per
series ``date_released`` (ISO), ``visibility``, ``third_party`` and ``doi``. Files that are not
DICOM (LICENSE, md5hashes.csv, ...) are skipped. Stored MD5s are the files' real MD5s.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from nbia_audit.emulator.corpus import Corpus
from nbia_audit.emulator.generate import LICENSES, doi_for
from nbia_audit.emulator.model import Collection, FileSource, Image, Patient, Series, Study

SIDECAR = "nbia-emulator.json"
_DEFAULT_RELEASE = datetime(2020, 1, 1, 12, 0, 0)


def write_corpus(corpus: Corpus, root: Path) -> list[Path]:
    """Write every image of ``corpus`` (and the sidecar) under ``root``; returns image paths."""
    written: list[Path] = []
    for series in corpus.series:
        folder = root / series.collection / series.patient_id / series.study_uid / series.series_uid
        folder.mkdir(parents=True, exist_ok=True)
        for image in corpus.images_of(series.series_uid):
            path = folder / f"{image.sop_uid}.dcm"
            path.write_bytes(corpus.image_bytes(image.sop_uid))
            written.append(path)
    (root / SIDECAR).write_text(json.dumps(_sidecar(corpus), indent=2, sort_keys=True) + "\n")
    return written


def _sidecar(corpus: Corpus) -> dict[str, Any]:
    return {
        "collections": {
            c.name: {
                "license": c.license,
                "doi": c.doi,
                "description": c.description,
                "public": c.public,
            }
            for c in corpus.collections
        },
        "series": {
            s.series_uid: {
                "date_released": s.date_released.isoformat(),
                "visibility": s.visibility,
                "third_party": s.third_party,
                "doi": s.doi,
            }
            for s in corpus.series
        },
    }


def _da(value: object) -> date | None:
    try:
        return datetime.strptime(str(value), "%Y%m%d").date() if value else None
    except ValueError:
        return None


def _text(ds: pydicom.Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    return str(value) if value not in (None, "") else None


def _int(ds: pydicom.Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def read_corpus(root: Path) -> Corpus:
    """Build a corpus from the DICOM files under ``root`` (see the module docstring).

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    sidecar: dict[str, Any] = {}
    if (root / SIDECAR).is_file():
        sidecar = json.loads((root / SIDECAR).read_text())
    corpus = Corpus(licenses=LICENSES)
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != SIDECAR):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError):
            continue
        if "SeriesInstanceUID" not in ds or "SOPInstanceUID" not in ds:
            continue
        relative = path.relative_to(root)
        collection = relative.parts[0] if len(relative.parts) > 1 else root.name
        _add_file(corpus, sidecar, collection, path, ds)
    return corpus


def _add_file(
    corpus: Corpus, sidecar: dict[str, Any], collection: str, path: Path, ds: pydicom.Dataset
) -> None:
    coll = corpus.collection(collection) or _new_collection(corpus, sidecar, collection)
    patient_id = _text(ds, "PatientID") or "UNKNOWN"
    if corpus.patient(collection, patient_id) is None:
        corpus.put_patient(
            Patient(collection, patient_id, _text(ds, "PatientName") or patient_id,
                    _text(ds, "PatientSex"), _da(ds.get("PatientBirthDate")), None)
        )  # fmt: skip
    study_uid = str(ds.StudyInstanceUID)
    if corpus.study(study_uid) is None:
        corpus.put_study(
            Study(study_uid, collection, patient_id, _da(ds.get("StudyDate")),
                  _text(ds, "StudyDescription"), _text(ds, "StudyID"), _text(ds, "PatientAge"))
        )  # fmt: skip
    series_uid = str(ds.SeriesInstanceUID)
    if corpus.series_by_uid(series_uid) is None:
        corpus.put_series(_series_row(corpus, sidecar, coll, ds, study_uid, patient_id))
    data = path.read_bytes()
    corpus.put_image(
        Image(str(ds.SOPInstanceUID), series_uid, _int(ds, "InstanceNumber"),
              _int(ds, "AcquisitionNumber"), hashlib.md5(data).hexdigest(), len(data),
              FileSource(path))
    )  # fmt: skip


def _new_collection(corpus: Corpus, sidecar: dict[str, Any], name: str) -> Collection:
    info = sidecar.get("collections", {}).get(name, {})
    lic = corpus.license(info.get("license", "")) or LICENSES[1]
    coll = Collection(
        name=name,
        site="EMU",
        description=info.get("description", f"<p>{name}, served from a folder.</p>"),
        doi=info.get("doi", doi_for(0, name)),
        license=lic.short_name,
        public=bool(info.get("public", True)),
        desc_id=len(corpus.collections) + 1,
        updated_ms=int((_DEFAULT_RELEASE - datetime(1970, 1, 1)).total_seconds() * 1000),
    )
    corpus.put_collection(coll)
    return coll


def _series_row(
    corpus: Corpus,
    sidecar: dict[str, Any],
    coll: Collection,
    ds: pydicom.Dataset,
    study_uid: str,
    patient_id: str,
) -> Series:
    uid = str(ds.SeriesInstanceUID)
    info = sidecar.get("series", {}).get(uid, {})
    released = (
        datetime.fromisoformat(info["date_released"])
        if "date_released" in info
        else _DEFAULT_RELEASE
    )
    lic = corpus.license(coll.license)
    return Series(
        series_uid=uid,
        study_uid=study_uid,
        collection=coll.name,
        site=coll.site,
        patient_id=patient_id,
        modality=_text(ds, "Modality") or "OT",
        series_number=_int(ds, "SeriesNumber"),
        description=_text(ds, "SeriesDescription"),
        protocol_name=_text(ds, "ProtocolName"),
        body_part=_text(ds, "BodyPartExamined"),
        series_date=_da(ds.get("SeriesDate")),
        manufacturer=_text(ds, "Manufacturer"),
        model_name=_text(ds, "ManufacturerModelName"),
        software_versions=_text(ds, "SoftwareVersions"),
        date_released=released,
        max_submission=released,
        doi=info.get("doi") or coll.doi,
        license_name=lic.long_name if lic else None,
        license_url=lic.url if lic else None,
        third_party=info.get("third_party"),
        visibility=info.get("visibility", "1"),
        sop_class_uid=_text(ds, "SOPClassUID"),
    )
