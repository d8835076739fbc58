"""Findings and audit reports: what ``verify`` and ``drift`` found, as values.

A finding is never an exception: an exception means a check could not be performed. A
report says what was checked and how (``facts``), whether the check covered everything it
set out to (``complete``), and lists findings sorted so that two runs over the same state
render identically.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "REPORT_SCHEMA_VERSION",
    "AuditReport",
    "FetchStatus",
    "Finding",
    "FindingKind",
    "ProblemKind",
    "SeriesState",
    "SeriesStatus",
]

REPORT_SCHEMA_VERSION = 1


# The enums below are StrEnums: each member is its word, so every output (text, JSON, JUnit,
# supplement, lock database) prints exactly what the bare strings printed before.


class FindingKind(enum.StrEnum):
    """What a finding says differs (meanings: docs/verify.md and docs/drift.md, Findings)."""

    # verify
    MISSING = "missing"
    MODIFIED = "modified"
    UNEXPECTED = "unexpected"
    DUPLICATE = "duplicate"
    UNREADABLE = "unreadable"
    LOCK_DATABASE_REJECTED = "lock-database-rejected"
    # drift
    SERIES_ADDED = "series-added"
    SERIES_REMOVED = "series-removed"
    SERIES_HIDDEN = "series-hidden"
    IMAGE_ADDED = "image-added"
    IMAGE_REMOVED = "image-removed"
    IMAGE_CHANGED = "image-changed"
    METADATA_CHANGED = "metadata-changed"


class SeriesState(enum.StrEnum):
    """The outcome of ``verify`` or ``drift`` for one locked series (``SeriesStatus.status``)."""

    OK = "ok"
    PROBLEM = "problem"  # some finding concerns the series
    NOT_CHECKED = "not-checked"  # something of it could not be read or judged: never a pass


class FetchStatus(enum.StrEnum):
    """What ``fetch`` did with one series (``SeriesOutcome.status``)."""

    FETCHED = "fetched"
    SKIPPED = "skipped"  # already in place and proven
    FAILED = "failed"


class ProblemKind(enum.StrEnum):
    """What the archive's own data got wrong at lock time (meanings: docs/lock-format.md)."""

    SERIES_HASH_MISMATCH = "series-hash-mismatch"  # only in locks written before pins settled
    IMAGE_COUNT_MISMATCH = "image-count-mismatch"
    EMPTY_SERIES_HASH = "empty-series-hash"
    STUDY_HASH_MISMATCH = "study-hash-mismatch"
    PATIENT_HASH_MISMATCH = "patient-hash-mismatch"
    IMAGES_NOT_VISIBLE = "images-not-visible"  # never written: lock refuses the series
    SHORT_ARCHIVE_MD5 = "short-archive-md5"
    MISSING_ARCHIVE_MD5 = "missing-archive-md5"

    @property
    def serious(self) -> bool:
        """The archive contradicts itself about what a series is (or hides it): a lock that
        records it is a finding. Short or missing archive MD5s are facts of old data."""
        return self not in (ProblemKind.SHORT_ARCHIVE_MD5, ProblemKind.MISSING_ARCHIVE_MD5)


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    """One thing that differs from the lock.

    ``kind`` names it exactly (``FindingKind``). ``old``/``new`` carry before/after values
    where they exist; ``paths`` lists every place of a duplicate.
    """

    kind: FindingKind
    series_uid: str = ""
    sop_uid: str = ""
    path: str = ""
    detail: str = ""
    old: str = ""
    new: str = ""
    paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SeriesStatus:
    """The outcome for one locked series (``SeriesState``).

    ``detail`` says what was proven (e.g. the series hash recomputed from the copy, or the
    level at which drift confirmed it unchanged). ``not-checked``: something of it could not
    be read or judged, so it is not ``ok`` either (a failing JUnit case).
    """

    series_uid: str
    status: SeriesState
    detail: str = ""
    collection: str = ""
    # verify only: how its images' content is known, the weakest of them (proofwords.PROOFS)
    proof: str = ""


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The result of one ``verify`` or ``drift`` run."""

    command: str  # "verify" | "drift"
    lock_path: str
    root_digest: str
    started_at: str  # ISO 8601 UTC
    finished_at: str
    findings: tuple[Finding, ...]
    series: tuple[SeriesStatus, ...]
    complete: bool  # False: part of the check could not be performed; never "clean"
    facts: Mapping[str, object] = field(default_factory=dict)
    # verify only: what the run proved about the content (proofwords.PROOFS, the weakest
    # over the series), and the day(s) the content was last proven by MD5 when the run
    # itself relied on that earlier pass (stat, quick)
    proof: str = ""
    proven_on: str = ""

    @property
    def clean(self) -> bool:
        """True only when the check was complete and found nothing (at its level: see
        ``proof`` for what that level proved)."""
        return self.complete and not self.findings

    @property
    def verified(self) -> bool:
        """Clean, and every file's content hashed in this run and equal to the lock: the
        only state the word "verified" is used for."""
        return self.clean and self.proof == "content"

    def counts(self) -> dict[str, int]:
        """Findings per kind, sorted by kind."""
        out: dict[str, int] = {}
        for finding in self.findings:
            out[finding.kind] = out.get(finding.kind, 0) + 1
        return dict(sorted(out.items()))
