"""NBIA's ``getMD5Hierarchy`` Merkle hashes, re-done step by step like the server (protocol §1.3).

This is deliberately an independent implementation that mimics the DAO's SQL/HQL and Java
steps (``GeneralSeriesDAOImpl`` ll.2132-2310) rather than sharing code with
``nbia_audit.merkle``: a bug there must not be hidden by the same bug here.

- series: ``SELECT md5_digest FROM general_image WHERE series_instance_uid=:uid ORDER BY
  md5_digest`` (latin1_general_ci: NULLs first, case-insensitive, PAD SPACE), concatenated with
  Java's ``+`` (NULL becomes ``"null"``), ``""`` if empty, else ``%032x`` MD5. No visibility or
  authorization filter.
- study: visible + authorized series of the study, their series hashes ``Collections.sort``-ed,
  non-null ones concatenated.
- patient: visible + authorized series of (patient, collection), grouped by study.
- collection: only the cached ``collection_descriptions.md5hash`` column, written by the nightly
  job with the guest's view; reads go through the 100-minute ``MD5Cache``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Collection, Iterable

from nbia_audit.emulator.corpus import Corpus

# UTIL/MD5Cache.java: an entry expires 6,000,000 ms after it is written.
MD5_CACHE_SECONDS = 6000.0

# DAO getMD5ForSeries is `synchronized` on the singleton: one series hash at a time.
_SERIES_LOCK = threading.Lock()


def _digest(text: str) -> str:
    # Java: MessageDigest over s.getBytes(), formatted "%032x" (lowercase, zero-padded).
    return hashlib.md5(text.encode("latin-1")).hexdigest()


def _mysql_ci_key(value: str | None) -> tuple[int, str]:
    # ORDER BY under latin1_general_ci: NULL first; case-insensitive; PAD SPACE ignores
    # trailing spaces. Ties keep row order (Python's sort is stable), as undefined in MySQL.
    if value is None:
        return (0, "")
    return (1, value.lower().rstrip(" "))


def _java_join(values: Iterable[str | None]) -> str:
    # String concatenation in Java renders null as "null".
    return "".join("null" if v is None else v for v in values)


def _combine(child_hashes: list[str | None]) -> str:
    # Collections.sort (UTF-16 code unit order == Python str order here), then the non-null
    # entries concatenated; an empty concatenation yields "" rather than md5("").
    joined = "".join(h for h in sorted(h for h in child_hashes if h is not None))
    return _digest(joined) if joined else ""


def series_hash(corpus: Corpus, series_uid: str) -> str:
    """``getMD5ForSeries``: every image row of the series, whatever its visibility."""
    with _SERIES_LOCK:
        digests = [image.stored_md5 for image in corpus.images_of(series_uid)]
        joined = _java_join(sorted(digests, key=_mysql_ci_key))
        return _digest(joined) if joined else ""


def _visible_authorized(corpus: Corpus, sites: Collection[str]) -> list[tuple[str, str, str, str]]:
    # (series_uid, study_uid, patient_id, collection) of visibility=1 series in authorized sites.
    return [
        (s.series_uid, s.study_uid, s.patient_id, s.collection)
        for s in corpus.series
        if s.visibility == "1" and s.collection in sites
    ]


def study_hash(corpus: Corpus, study_uid: str, sites: Collection[str]) -> str:
    """``getMD5ForStudy``: visible + authorized series of the study (no DISTINCT)."""
    uids = [row[0] for row in _visible_authorized(corpus, sites) if row[1] == study_uid]
    return _combine([series_hash(corpus, uid) for uid in uids])


def patient_hash(
    corpus: Corpus, patient_id: str, collection: str | None, sites: Collection[str]
) -> str:
    """``getMD5ForPatientId``: studies of (patient, collection); no collection matches nothing."""
    if collection is None:
        return ""  # `gs.project = :collection` with NULL matches no row
    studies: list[str] = []
    for _, study_uid, pid, project in _visible_authorized(corpus, sites):
        # patient_id is latin1_bin (exact); project has the default, case-insensitive collation.
        if pid == patient_id and project.lower() == collection.lower() and study_uid not in studies:
            studies.append(study_uid)  # GROUP BY gs.studyInstanceUID
    return _combine([study_hash(corpus, uid, sites) for uid in studies])


def compute_collection_hash(corpus: Corpus, collection: str, sites: Collection[str]) -> str:
    """What the nightly job computes for one collection (patients grouped by id and project)."""
    patients: list[tuple[str, str]] = []
    for _, _, pid, project in _visible_authorized(corpus, sites):
        if project == collection and (pid, project) not in patients:
            patients.append((pid, project))
    return _combine([patient_hash(corpus, pid, project, sites) for pid, project in patients])


def run_nightly_job(corpus: Corpus, guest_sites: Collection[str]) -> dict[str, str]:
    """``cacheMD5ForAllCollections``: refresh the cached column with the guest's view.

    A value is written only when the concatenation is non-empty and it differs
    (case-insensitively) from the stored one. Returns the collections whose column changed.
    """
    changed: dict[str, str] = {}
    for name in sorted(guest_sites):
        value = compute_collection_hash(corpus, name, guest_sites)
        if not value:
            continue
        with corpus.lock:
            old = corpus.collection_md5.get(name)
            if name in corpus.collection_md5 and (old is None or old.lower() != value.lower()):
                corpus.collection_md5[name] = value
                changed[name] = value
    return changed


class MD5Cache:
    """``UTIL/MD5Cache``: collection -> (hash, expiry), 100 minutes by default, injectable clock."""

    def __init__(self, clock: Callable[[], float], lifetime: float = MD5_CACHE_SECONDS) -> None:
        self._clock = clock
        self.lifetime = lifetime  # settable, so tests need not wait 100 minutes
        self._entries: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()

    def get(self, collection: str) -> str | None:
        """The cached value if present and unexpired; None (a miss) otherwise."""
        with self._lock:
            entry = self._entries.get(collection)
        if entry is None or self._clock() >= entry[1]:
            return None
        return entry[0]

    def set(self, collection: str, value: str | None) -> None:
        """Remember a value (even None, as the server does) for ``lifetime`` (100 minutes)."""
        with self._lock:
            self._entries[collection] = (value, self._clock() + self.lifetime)

    def clear(self) -> None:
        """Forget every entry (what a server restart does)."""
        with self._lock:
            self._entries.clear()


def collection_hash(corpus: Corpus, cache: MD5Cache, collection: str) -> str | None:
    """The request path for a collection: memory cache, else the DB column (then cached)."""
    value = cache.get(collection)
    if value is None:
        # getMD5ForCollection: `collectionName=:project`, default (case-insensitive) collation.
        with corpus.lock:
            value = next(
                (v for k, v in corpus.collection_md5.items() if k.lower() == collection.lower()),
                None,
            )
        cache.set(collection, value)
    return value
