"""Findings and audit reports: what ``verify`` and ``drift`` found, as values.

A finding is never an exception: an exception means a check could not be performed. A
report says what was checked and how (``facts``), whether the check covered everything it
set out to (``complete``), and lists findings sorted so that two runs over the same state
render identically.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["REPORT_SCHEMA_VERSION", "AuditReport", "Finding", "SeriesStatus"]

REPORT_SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    """One thing that differs from the lock.

    ``kind`` names it exactly; verify uses ``missing``, ``modified``, ``unexpected``,
    ``duplicate``, ``unreadable``; drift uses ``series-added``, ``series-removed``,
    ``series-hidden``, ``image-added``, ``image-removed``, ``image-changed``,
    ``metadata-changed``. ``old``/``new`` carry before/after values where they exist;
    ``paths`` lists every place of a duplicate.
    """

    kind: str
    series_uid: str = ""
    sop_uid: str = ""
    path: str = ""
    detail: str = ""
    old: str = ""
    new: str = ""
    paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SeriesStatus:
    """The outcome for one locked series: ``ok``, ``problem`` or ``not-checked``.

    ``detail`` says what was proven (e.g. the series hash recomputed from the copy, or the
    level at which drift confirmed it unchanged). ``not-checked``: something of it could not
    be read or judged, so it is not ``ok`` either (a failing JUnit case).
    """

    series_uid: str
    status: str
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
