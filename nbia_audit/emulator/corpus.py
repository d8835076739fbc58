"""The emulator's in-memory database: rows by key, images in DB row order, one lock.

Image bytes are not kept here for generated corpora: they are re-created on demand from each
row's ``DicomFields`` (a small LRU cache absorbs repeated reads), so a corpus of any size costs
only its metadata in memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

from nbia_audit.emulator.dicomgen import encode_image
from nbia_audit.emulator.model import (
    BytesSource,
    Cart,
    Collection,
    FileSource,
    GeneratedSource,
    Image,
    License,
    Patient,
    Series,
    Study,
)

_CACHE_ENTRIES = 64


class Corpus:
    """Collections, patients, studies, series and images, plus the collection hash column.

    Reads return snapshots (tuples of frozen rows) and are safe from any thread; writes go
    through the ``put_*``/``delete_*`` methods, which the emulator's mutation controls call.
    """

    def __init__(
        self,
        *,
        licenses: Iterable[License] = (),
        collections: Iterable[Collection] = (),
        patients: Iterable[Patient] = (),
        studies: Iterable[Study] = (),
        series: Iterable[Series] = (),
        images: Iterable[Image] = (),
    ) -> None:
        self.lock = threading.RLock()
        self._licenses: dict[str, License] = {}
        self._collections: dict[str, Collection] = {}
        self._patients: dict[tuple[str, str], Patient] = {}
        self._studies: dict[str, Study] = {}
        self._series: dict[str, Series] = {}
        self._images: dict[str, Image] = {}
        self._series_images: dict[str, list[str]] = {}
        # Surrogate keys (patient/study/general_series pk ids): the integers getSimpleSearch
        # and getCartData expose; assigned on insert, never reused.
        self._pks: dict[str, int] = {}
        self._image_pks: dict[str, int] = {}
        # collection_descriptions.md5hash: written only by the nightly job (protocol §1.3).
        self.collection_md5: dict[str, str | None] = {}
        for lic in licenses:
            self.put_license(lic)
        for collection in collections:
            self.put_collection(collection)
        for patient in patients:
            self.put_patient(patient)
        for study in studies:
            self.put_study(study)
        for row in series:
            self.put_series(row)
        for image in images:
            self.put_image(image)
        # Shared carts (createSharedList / getContentsByName), in creation order.
        self.carts: list[Cart] = []
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_lock = threading.Lock()

    # -- snapshots -------------------------------------------------------------------------
    @property
    def licenses(self) -> tuple[License, ...]:
        with self.lock:
            return tuple(self._licenses.values())

    @property
    def collections(self) -> tuple[Collection, ...]:
        with self.lock:
            return tuple(self._collections.values())

    @property
    def patients(self) -> tuple[Patient, ...]:
        with self.lock:
            return tuple(self._patients.values())

    @property
    def studies(self) -> tuple[Study, ...]:
        with self.lock:
            return tuple(self._studies.values())

    @property
    def series(self) -> tuple[Series, ...]:
        with self.lock:
            return tuple(self._series.values())

    @property
    def images(self) -> tuple[Image, ...]:
        with self.lock:
            return tuple(self._images.values())

    # -- lookups ---------------------------------------------------------------------------
    def license(self, short_name: str) -> License | None:
        """The license with that short name, or None."""
        return self._licenses.get(short_name)

    def license_by_long_name(self, long_name: str | None) -> License | None:
        """The license whose long name matches (the join NBIA's DAO makes), or None."""
        with self.lock:
            return next(
                (lic for lic in self._licenses.values() if lic.long_name == long_name), None
            )

    def collection(self, name: str) -> Collection | None:
        """The collection with exactly that name, or None."""
        return self._collections.get(name)

    def patient(self, collection: str, patient_id: str) -> Patient | None:
        """The patient row of ``patient_id`` in ``collection``, or None."""
        return self._patients.get((collection, patient_id))

    def study(self, study_uid: str) -> Study | None:
        """The study row, or None."""
        return self._studies.get(study_uid)

    def series_by_uid(self, series_uid: str) -> Series | None:
        """The series row (any visibility), or None."""
        return self._series.get(series_uid)

    def image_by_sop(self, sop_uid: str) -> Image | None:
        """The image row, or None."""
        return self._images.get(sop_uid)

    def images_of(self, series_uid: str) -> tuple[Image, ...]:
        """The series' images in DB row order (the order NBIA's un-ORDERed queries return)."""
        with self.lock:
            return tuple(self._images[sop] for sop in self._series_images.get(series_uid, ()))

    def series_of_study(self, study_uid: str) -> tuple[Series, ...]:
        """Every series row of a study, any visibility."""
        with self.lock:
            return tuple(s for s in self._series.values() if s.study_uid == study_uid)

    def pk(self, key: str) -> int:
        """The surrogate key of a series or study UID, or of ``collection//patient_id``.

        Raises:
            KeyError: no row was ever inserted under that key.
        """
        return self._pks[key]

    def image_pk(self, sop_uid: str) -> int | None:
        """``image_pk_id`` of an image ever inserted, or None."""
        with self.lock:
            return self._image_pks.get(sop_uid)

    def image_by_pk(self, pk: int) -> Image | None:
        """The live image row whose ``image_pk_id`` is ``pk``, or None."""
        with self.lock:
            sop = next((k for k, v in self._image_pks.items() if v == pk), None)
            return self._images.get(sop) if sop is not None else None

    def _assign_pk(self, key: str) -> None:
        if key not in self._pks:
            self._pks[key] = len(self._pks) + 1

    def image_bytes(self, sop_uid: str) -> bytes:
        """The stored file of an image, exactly as the archive serves it.

        Raises:
            KeyError: no image has that SOP Instance UID.
        """
        image = self._images[sop_uid]
        source = image.source
        if isinstance(source, BytesSource):
            return source.data
        if isinstance(source, FileSource):
            return source.path.read_bytes()
        return self._generated(source)

    def _generated(self, source: GeneratedSource) -> bytes:
        key = source.fields.sop_uid
        with self._cache_lock:
            data = self._cache.get(key)
            if data is not None:
                self._cache.move_to_end(key)
                return data
        data = encode_image(source.fields)
        with self._cache_lock:
            self._cache[key] = data
            while len(self._cache) > _CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return data

    # -- writes ----------------------------------------------------------------------------
    def put_license(self, lic: License) -> None:
        """Insert or replace a license row."""
        with self.lock:
            self._licenses[lic.short_name] = lic

    def put_collection(self, collection: Collection) -> None:
        """Insert or replace a collection row."""
        with self.lock:
            self._collections[collection.name] = collection
            self.collection_md5.setdefault(collection.name, None)

    def put_patient(self, patient: Patient) -> None:
        """Insert or replace a patient row."""
        with self.lock:
            self._patients[(patient.collection, patient.patient_id)] = patient
            self._assign_pk(f"{patient.collection}//{patient.patient_id}")

    def put_study(self, study: Study) -> None:
        """Insert or replace a study row."""
        with self.lock:
            self._studies[study.study_uid] = study
            self._assign_pk(study.study_uid)

    def put_series(self, series: Series) -> None:
        """Insert or replace a series row."""
        with self.lock:
            self._series[series.series_uid] = series
            self._series_images.setdefault(series.series_uid, [])
            self._assign_pk(series.series_uid)

    def put_image(self, image: Image) -> None:
        """Insert (appended in DB order) or replace (position kept) an image row."""
        with self.lock:
            order = self._series_images.setdefault(image.series_uid, [])
            if image.sop_uid not in self._images:
                order.append(image.sop_uid)
            self._images[image.sop_uid] = image
            # general_image.image_pk_id: its own auto-increment, never reused.
            self._image_pks.setdefault(image.sop_uid, len(self._image_pks) + 1)
        with self._cache_lock:
            self._cache.pop(image.sop_uid, None)

    def delete_image(self, sop_uid: str) -> Image:
        """Remove an image row and return it.

        Raises:
            KeyError: no such image.
        """
        with self.lock:
            image = self._images.pop(sop_uid)
            self._series_images[image.series_uid].remove(sop_uid)
        with self._cache_lock:
            self._cache.pop(sop_uid, None)
        return image

    def delete_series(self, series_uid: str) -> Series:
        """Remove a series row and all its images, and return the series.

        Raises:
            KeyError: no such series.
        """
        with self.lock:
            series = self._series.pop(series_uid)
            for sop in self._series_images.pop(series_uid, []):
                self._images.pop(sop, None)
            return series
