"""The publication supplement: what a dataset is, where it came from, how to check a copy.

Built from the lock alone (text lock and database), plus, optionally, the report of a
``verify`` run on a local copy. Rendering (Markdown, HTML, JSON) is in report/supplement_render.py.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from nbia_audit.errors import StoreError
from nbia_audit.findings import AuditReport, SeriesState
from nbia_audit.models import LockedLicense, LockedSeries, LockHeader
from nbia_audit.store.reader import read_lock

__all__ = ["CollectionSummary", "Supplement", "Verification", "build_supplement"]

SUPPLEMENT_SCHEMA_VERSION = 1
# How a reader installs nbia-audit; authors set it (report --install-command) to wherever
# their readers get it, e.g. a VCS URL pinned to the release they used.
DEFAULT_INSTALL = "python3 -m pip install nbia-audit"


@dataclass(frozen=True, slots=True)
class CollectionSummary:
    """One collection's share of the dataset."""

    name: str
    dois: tuple[str, ...]
    licenses: tuple[str, ...]
    subjects: int
    studies: int
    series: int
    images: int
    bytes: int
    modalities: tuple[str, ...]
    released_first: str
    released_last: str


@dataclass(frozen=True, slots=True)
class Verification:
    """What a ``verify`` run proved about one local copy."""

    level: str
    finished_at: str
    clean: bool
    complete: bool
    counts: dict[str, int]
    series_ok: int
    series_total: int
    proof: str = ""  # what "clean" rests on (verify.words.PROOFS)
    proven_on: str = ""  # stat, quick: the day(s) the content was last hashed with MD5
    verified: bool = False  # clean, and every file's content hashed in that run


@dataclass(frozen=True, slots=True)
class Supplement:
    """Everything the supplement states, in rendering order."""

    lock_name: str  # the lock's file name, as readers will receive it
    header: LockHeader
    description: str
    collections: tuple[CollectionSummary, ...]
    licenses: tuple[LockedLicense, ...]
    modalities: dict[str, int]  # series per modality
    subjects: int
    studies: int
    series: tuple[LockedSeries, ...]
    verification: Verification | None
    install_command: str = DEFAULT_INSTALL

    def reader_commands(self) -> list[str]:
        """The exact commands a reader runs to fetch and verify their own copy."""
        lock = self.lock_name
        return [
            self.install_command,
            f"nbia-audit fetch {lock} --dest data/",
            f"nbia-audit verify {lock} data/",
            f"nbia-audit drift {lock}",
        ]


def build_supplement(
    lock_path: str | os.PathLike[str],
    verification: AuditReport | None = None,
    *,
    install_command: str = DEFAULT_INSTALL,
) -> Supplement:
    """Collect the supplement's content from the lock (and a verify report, if given).

    Raises:
        LockNotFound, StoreError: the lock cannot be read.
        ValueError: ``verification`` is not a ``verify`` report of this lock (a drift
            report, or another lock's copy), which the supplement would misstate as proof.
    """
    lock_path = Path(lock_path)
    lock = read_lock(lock_path, load_images=False)
    if verification is not None:
        _check_verification_is_of(lock.header.root_digest, verification)
    series, licenses = lock.series, lock.licenses
    try:
        spec = json.loads(lock.spec_json)
    except json.JSONDecodeError:
        spec = None
    if not isinstance(spec, dict):
        raise StoreError(f"{lock_path}: the embedded spec is not a JSON object")
    description = str(spec.get("description", ""))
    return Supplement(
        lock_name=lock_path.name,
        header=lock.header,
        description=description,
        collections=_collections(series),
        licenses=licenses,
        modalities=dict(sorted(Counter(s.modality or "?" for s in series).items())),
        subjects=len({(s.collection, s.patient_id) for s in series}),
        studies=len({s.study_uid for s in series}),
        series=series,
        verification=_verification(verification) if verification else None,
        install_command=install_command,
    )


def _collections(series: tuple[LockedSeries, ...]) -> tuple[CollectionSummary, ...]:
    groups: defaultdict[str, list[LockedSeries]] = defaultdict(list)
    for s in series:
        groups[s.collection].append(s)
    out = []
    for name, members in sorted(groups.items()):
        released = sorted(s.released for s in members if s.released)
        out.append(
            CollectionSummary(
                name=name,
                dois=tuple(sorted({s.doi for s in members if s.doi})),
                licenses=tuple(sorted({s.license_name for s in members if s.license_name})),
                subjects=len({s.patient_id for s in members}),
                studies=len({s.study_uid for s in members}),
                series=len(members),
                images=sum(s.image_count for s in members),
                bytes=sum(s.bytes for s in members),
                modalities=tuple(sorted({s.modality for s in members if s.modality})),
                released_first=released[0] if released else "",
                released_last=released[-1] if released else "",
            )
        )
    return tuple(out)


def _check_verification_is_of(root_digest: str, report: AuditReport) -> None:
    if report.command != "verify":
        raise ValueError(
            f"the verification must be a verify report, not a {report.command!r} report:"
            " pass what verify_copy returned for this lock"
        )
    if report.root_digest != root_digest:
        raise ValueError(
            f"the verification is of another lock (root {report.root_digest}, this lock's"
            f" is {root_digest}): verify this lock's copy and pass that report"
        )


def _verification(report: AuditReport) -> Verification:
    return Verification(
        level=str(report.facts.get("level", "")),
        finished_at=report.finished_at,
        clean=report.clean,
        complete=report.complete,
        counts=report.counts(),
        series_ok=sum(1 for s in report.series if s.status == SeriesState.OK),
        series_total=len(report.series),
        proof=report.proof,
        proven_on=report.proven_on,
        verified=report.verified,
    )
