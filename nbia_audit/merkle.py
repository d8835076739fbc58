"""NBIA's hierarchy hashes (``getMD5Hierarchy``) and the archive-MD5 comparison rule.

The archive publishes a Merkle tree over its per-image MD5 strings (protocol §1.3):

* series     = md5(concat(sorted(stored image MD5 strings)))   NULL -> "null", sorted first
* study      = md5(concat(sorted(series hashes of its visible series)))
* patient    = md5(concat(sorted(study hashes of the patient, within one collection)))
* collection = md5(concat(sorted(patient hashes of the public patients)))  (cached nightly)

At every level an empty concatenation gives "" rather than md5(""). The inputs are the
archive's stored strings *verbatim*: a historic value that lost its leading zeros (protocol §3)
must be fed in unpadded, or the series hash will not match the archive's.

Comparing a file's computed MD5 with the archive's string is a different operation with a
different rule: normalise the archive string (strip, lowercase, left-pad with zeros to 32) and
report a short archive value separately from a real mismatch.
"""

from __future__ import annotations

import enum
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "MATCHES",
    "ArchiveMd5Check",
    "Hierarchy",
    "SeriesLeaf",
    "check_archive_md5",
    "collection_hash",
    "combine",
    "compute_hierarchy",
    "hierarchy_from_series",
    "normalise_archive_md5",
    "patient_hash",
    "series_hash",
    "study_hash",
]

_HEX = frozenset("0123456789abcdef")
# Stored MD5s of other characters may sort differently under MySQL's collation. (A full
# match of the positive class is several times faster in `re` than a search for any other.)


def _md5_text(text: str) -> str:
    # Java: String.format("%032x", new BigInteger(1, md5(s.getBytes()))): lowercase, padded.
    # The input is hex (or "null"/" "), so the platform charset cannot matter; latin-1 keeps
    # any odd stored byte-for-byte instead of failing.
    return hashlib.md5(text.encode("latin-1", errors="replace")).hexdigest()


def _mysql_order_key(value: str) -> str:
    # ORDER BY md5_digest under latin1_general_ci with PAD SPACE: case-insensitive, trailing
    # spaces insignificant. For lowercase hex this equals plain code-point order (protocol
    # §1.4); the key only matters for odd stored values such as uppercase or CTP's " ".
    return value.lower().rstrip(" ")


def series_hash(stored_md5s: Iterable[str | None]) -> str:
    """Return NBIA's series hash over the archive's stored per-image MD5 strings.

    ``None`` stands for a SQL NULL, which Java concatenation renders as ``"null"`` and MySQL
    sorts before every value. Values are used verbatim: never pad or re-case them here.
    """
    values = list(stored_md5s)
    nulls = ["null"] * sum(1 for v in values if v is None)
    present = [v for v in values if v is not None]
    together = "".join(present)
    if " " not in together and together.lower() == together:
        # No value the collation key would change (lowercase hex is the norm): code-point
        # order is the collation's order. Five times faster to ask than a pattern.
        present.sort()
    else:
        present.sort(key=_mysql_order_key)  # upper case, spaces ...: MySQL's collation decides
    joined = "".join(nulls + present)
    return _md5_text(joined) if joined else ""


def combine(child_hashes: Iterable[str | None]) -> str:
    """Return the hash of one study, patient or collection from its children's hashes.

    Java ``Collections.sort`` (UTF-16 code-unit order, equal to Python's for ASCII), skip
    nulls, concatenate; an empty result is ``""``. Empty child hashes add nothing.
    """
    joined = "".join(sorted(c for c in child_hashes if c is not None))
    return _md5_text(joined) if joined else ""


study_hash = combine
patient_hash = combine
collection_hash = combine


@dataclass(frozen=True, slots=True)
class SeriesLeaf:
    """One series as the hierarchy sees it: where it hangs and its images' stored MD5s."""

    collection: str
    patient_id: str
    study_uid: str
    series_uid: str
    stored_md5s: tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """Every level's hash for a set of series, keyed as ``getMD5Hierarchy`` is asked.

    Patients are keyed by ``(collection, patient_id)`` because a PatientID is only unique
    within a collection (protocol §1.1: the patient level requires a Collection).
    """

    series: Mapping[str, str]
    studies: Mapping[str, str]
    patients: Mapping[tuple[str, str], str]
    collections: Mapping[str, str]


def compute_hierarchy(leaves: Iterable[SeriesLeaf]) -> Hierarchy:
    """Compute series, study, patient and collection hashes for the given visible series.

    The result equals the archive's answers only where the leaves cover the whole node
    (every visible series of a study, every study of a patient, every public patient of a
    collection); callers decide which levels they may compare.
    """
    return hierarchy_from_series(
        (
            leaf.collection,
            leaf.patient_id,
            leaf.study_uid,
            leaf.series_uid,
            series_hash(leaf.stored_md5s),
        )
        for leaf in leaves
    )


def hierarchy_from_series(rows: Iterable[tuple[str, str, str, str, str]]) -> Hierarchy:
    """The upper levels from ``(collection, patient, study, series, series hash)`` rows.

    For pins that hold a series hash but no images (a series-only lock), and for
    :func:`compute_hierarchy`.
    """
    series: dict[str, str] = {}
    series_by_study: defaultdict[str, list[str]] = defaultdict(list)
    studies_by_patient: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    for collection, patient_id, study_uid, series_uid, value in rows:
        series[series_uid] = value
        series_by_study[study_uid].append(series_uid)
        studies_by_patient[(collection, patient_id)].add(study_uid)
    studies = {
        study: study_hash(series[uid] for uid in uids) for study, uids in series_by_study.items()
    }
    patients = {
        key: patient_hash(studies[s] for s in study_uids)
        for key, study_uids in studies_by_patient.items()
    }
    patients_by_collection: defaultdict[str, list[str]] = defaultdict(list)
    for (collection, _pid), value in patients.items():
        patients_by_collection[collection].append(value)
    collections = {c: collection_hash(v) for c, v in patients_by_collection.items()}
    return Hierarchy(series=series, studies=studies, patients=patients, collections=collections)


class ArchiveMd5Check(enum.Enum):
    """Outcome of comparing a file's computed MD5 with the archive's stored string."""

    MATCH = "match"
    MATCH_SHORT = "match-short"  # equal once the archive's unpadded string is zero-padded
    MATCH_NONCANONICAL = "match-noncanonical"  # equal, but stored in upper case or padded
    MISMATCH = "mismatch"
    ARCHIVE_MISSING = "archive-missing"  # NULL, empty or CTP's single-space placeholder
    ARCHIVE_MALFORMED = "archive-malformed"  # not hex, or longer than 32 characters


def normalise_archive_md5(stored: str | None) -> str | None:
    """Return the archive's MD5 string as 32 lowercase hex digits, or None if unusable.

    Protocol §3: ``stored.strip().lower().zfill(32)``; values lost leading zeros when CTP
    formatted them with ``BigInteger.toString(16)``.
    """
    if stored is None:
        return None
    text = stored.strip().lower()
    if not text or len(text) > 32 or not set(text) <= _HEX:
        return None
    return text.zfill(32)


def check_archive_md5(stored: str | None, computed_hexdigest: str) -> ArchiveMd5Check:
    """Compare a locally computed MD5 hex digest with the archive's stored string."""
    if stored is None or not stored.strip():
        return ArchiveMd5Check.ARCHIVE_MISSING
    normalised = normalise_archive_md5(stored)
    if normalised is None:
        return ArchiveMd5Check.ARCHIVE_MALFORMED
    if normalised != computed_hexdigest.lower():
        return ArchiveMd5Check.MISMATCH
    if len(stored.strip()) < 32:
        return ArchiveMd5Check.MATCH_SHORT
    if stored != normalised:
        return ArchiveMd5Check.MATCH_NONCANONICAL
    return ArchiveMd5Check.MATCH


# The outcomes that mean "these bytes are the archive's": exact, unpadded (protocol §3), or
# stored in another case.
MATCHES = frozenset(
    {ArchiveMd5Check.MATCH, ArchiveMd5Check.MATCH_SHORT, ArchiveMd5Check.MATCH_NONCANONICAL}
)
