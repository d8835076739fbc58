"""From what the walk found to findings and per-series status: the verdict of ``verify``.

Pure bookkeeping over values (the one exception: a modified file is re-read cheaply to tell
a truncated image, ``unreadable``, from a changed one, ``modified``). A locked image is
judged by its archive MD5 (protocol §3 comparison rule); a series whose images the lock does
not pin is judged by NBIA's series hash recomputed from its files (protocol §1.3).
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Container, Iterable
from dataclasses import dataclass, field

from nbia_audit.dicom.scan import truncation
from nbia_audit.findings import Finding, FindingKind, SeriesState, SeriesStatus
from nbia_audit.merkle import MATCHES, ArchiveMd5Check, check_archive_md5, series_hash
from nbia_audit.verify.expectation import Expectation, ExpectedSeries
from nbia_audit.verify.sampling import Sample
from nbia_audit.verify.tally import Seen, Tally
from nbia_audit.verify.words import CONTENT, FINGERPRINT, NONE, SAMPLE, STAT

__all__ = ["HOW_MD5", "HOW_PRESENT", "HOW_STAT", "HOW_XXH3", "Seen", "Tally", "Verdict", "judge"]

HOW_MD5 = "md5"  # MD5 computed in this run
HOW_XXH3 = "xxh3"  # xxh3-128 equal to the fingerprint of the file's last full pass
HOW_STAT = "stat"  # stat key unchanged since the last full pass; not re-read
HOW_PRESENT = "present"  # identified, not hashed (outside a --sample)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Findings, per-series status and the counts the report's facts quote."""

    findings: tuple[Finding, ...]
    series: tuple[SeriesStatus, ...]
    short_md5: int  # images matched against an archive string that lost leading zeros
    unprovable: int  # present images whose archive MD5 is NULL or malformed
    sample_checked: int  # sampled units hashed
    sample_failures: int  # of those, corrupt
    sample_size: int = 0  # units in the sample (present or not)


@dataclass(slots=True)
class _Acc:
    """One judgement: what it reads (the walk's tally, the copy's root, the sample) and
    what it accumulates for the :class:`Verdict`."""

    tally: Tally
    root: str
    sample: Sample | None
    findings: list[Finding] = field(default_factory=list)
    short_md5: int = 0
    unprovable: int = 0
    sample_checked: int = 0
    sample_failures: int = 0
    sample_size: int = 0
    # Read from the tally once: the units of unreadable files (in memory when few, which is
    # the rule: they are problems), and what a missing image's finding says.
    blocked: Container[str] = frozenset()
    missing_note: str = ""


@dataclass(slots=True)
class _Known:
    """How the images of one series are known, as its images are judged one by one."""

    inputs: list[str] = field(default_factory=list)  # the series hash's inputs
    hows: Counter[str] = field(default_factory=Counter)
    days: set[str] = field(default_factory=set)  # when stat-trusted images were verified
    hashed_all: bool = True  # every image's content was hashed (or recorded)
    count: int = 0

    def add(self, seen: Seen) -> None:
        self.hows[seen.how] += 1
        if seen.how == HOW_STAT:
            self.days.add(seen.since[:10])


def _how_summary(hows: Counter[str], since: tuple[str, str]) -> str:
    parts = []
    if hows[HOW_MD5]:
        parts.append(f"{hows[HOW_MD5]} proven by MD5")
    if hows[HOW_XXH3]:
        parts.append(
            f"{hows[HOW_XXH3]} proven by xxh3-128 against the fingerprint of their last full pass"
        )
    if hows[HOW_STAT]:
        when = since[0] if since[0] == since[1] else f"{since[0]} .. {since[1]}"
        parts.append(
            f"{hows[HOW_STAT]} unchanged since verified by content on {when} (stat; not re-read)"
        )
    if hows[HOW_PRESENT]:
        parts.append(f"{hows[HOW_PRESENT]} present, not hashed (outside the sample)")
    return "; ".join(parts)


def proof_of(hows: Counter[str]) -> str:
    """The weakest way any image of a series is known (verify.words.PROOFS)."""
    for how, proof in ((HOW_PRESENT, SAMPLE), (HOW_STAT, STAT), (HOW_XXH3, FINGERPRINT)):
        if hows[how]:
            return proof
    return CONTENT if hows[HOW_MD5] else NONE


def _since_range(days: set[str]) -> tuple[str, str]:
    known = {d for d in days if d}
    return (min(known), max(known)) if known else ("", "")


def _bad_copy(root: str, series: str, sop: str, seen: Seen, archive: str | None) -> Finding:
    try:
        truncated = truncation(os.path.join(root, seen.rel))
    except OSError:
        truncated = None
    if truncated is not None:
        return Finding(FindingKind.UNREADABLE, series, sop, seen.rel, truncated)
    note = {
        HOW_MD5: "",
        HOW_XXH3: " (the MD5 recorded at its last full pass; its fingerprint is unchanged)",
        HOW_STAT: f" (the MD5 recorded on {seen.since[:10]}; stat unchanged, not re-read)",
        HOW_PRESENT: " (the MD5 recorded at its last pass; stat unchanged, outside the sample)",
    }.get(seen.how, "")
    return Finding(
        FindingKind.MODIFIED,
        series,
        sop,
        seen.rel,
        "MD5 differs from the lock" + note,
        archive or "",
        seen.md5,
    )


def _judge_images(s: ExpectedSeries, work: Iterable[tuple[str, str | None]], acc: _Acc) -> _Known:
    """Judge images (SOP, archive MD5) of one series; return how they are known."""
    known = _Known()
    sample = acc.sample
    placed = acc.tally.copies_in_series(s.series_uid)  # this series' files only
    for sop, archive in work:
        known.count += 1
        copies = placed.get(sop, [])
        if sample is None and len(copies) == 1 and archive == copies[0].md5:
            # The common case, kept lean: one copy, equal to a full lowercase pin.
            known.add(copies[0])
            known.inputs.append(archive)
            continue
        known.hashed_all &= _judge_image(s, sop, archive, copies, acc, known)
    return known


def _judge_image(
    s: ExpectedSeries,
    sop: str,
    archive: str | None,
    copies: list[Seen],
    acc: _Acc,
    known: _Known,
) -> bool:
    """Judge one locked image in full, into ``acc`` and ``known``; return whether its
    content was hashed."""
    root, sample = acc.root, acc.sample
    drawn = sample is not None and sop in sample
    acc.sample_size += drawn
    if not copies:
        if sop not in acc.blocked:
            acc.findings.append(
                Finding(FindingKind.MISSING, s.series_uid, sop, "", acc.missing_note)
            )
        return False
    if len(copies) > 1:
        paths = tuple(sorted(c.rel for c in copies))
        acc.findings.append(
            Finding(
                FindingKind.DUPLICATE, s.series_uid, sop, "", f"{len(copies)} copies", paths=paths
            )
        )
    good = bad = None
    for copy in copies:
        known.add(copy)
        check = check_archive_md5(archive, copy.md5)
        if copy.how == HOW_PRESENT:
            # Outside the sample and unchanged: not re-read, but a file its last pass found
            # wrong is still wrong (that pass recorded the wrong MD5 with the stat key).
            if copy.md5 and check is ArchiveMd5Check.MISMATCH:
                acc.findings.append(_bad_copy(root, s.series_uid, sop, copy, archive))
            continue
        if check in MATCHES:
            good = copy
            acc.short_md5 += check is ArchiveMd5Check.MATCH_SHORT
        elif check is ArchiveMd5Check.MISMATCH:
            bad = copy
            acc.findings.append(_bad_copy(root, s.series_uid, sop, copy, archive))
        else:
            acc.unprovable += 1
    if drawn and (good or bad):
        # Only the random draw counts: a new or changed file hashed outside it is judged,
        # but would bias the bound (verify.plan.Run.admit).
        acc.sample_checked += 1
        acc.sample_failures += bad is not None
    if good is not None:
        known.inputs.append(archive or "")
    elif bad is not None:
        known.inputs.append(bad.md5)
    return good is not None or bad is not None


def _missing_note(unattributed: int) -> str:
    if unattributed:
        return (
            f"not found in the copy; {unattributed} file(s) could not be read "
            "and it may be one of them"
        )
    return "not found in the copy"


_BLOCKED_IN_MEMORY = 65_536  # more units of unreadable files than this stay in SQLite


def _image_status(
    s: ExpectedSeries, work: Iterable[tuple[str, str | None]], acc: _Acc
) -> SeriesStatus:
    before = len(acc.findings)
    unprovable_before = acc.unprovable
    known = _judge_images(s, work, acc)
    hows, count = known.hows, known.count
    summary = _how_summary(hows, _since_range(known.days))
    unprovable = acc.unprovable - unprovable_before
    if known.hashed_all:
        recomputed = series_hash(known.inputs)
        if recomputed == s.series_hash:
            hashes = f"series hash recomputed from the copy: {recomputed} (matches the lock)"
        else:
            hashes = f"series hash recomputed from the copy: {recomputed} (lock: {s.series_hash})"
    else:
        hashes = "series hash not recomputed (not every image was hashed)"
    detail = f"{count} images: {summary}; {hashes}" if summary else f"{count} images; {hashes}"
    problem = len(acc.findings) > before
    if unprovable and not problem:
        # Present, but the archive stores no usable MD5 (NULL or malformed): nothing can say
        # these bytes are the locked ones, so the series is not "ok" (fetch refuses it too).
        detail += f"; {unprovable} image(s) cannot be proven: the archive stores no usable MD5"
        return SeriesStatus(
            s.series_uid, SeriesState.NOT_CHECKED, detail, s.collection, proof_of(hows)
        )
    status = SeriesState.PROBLEM if problem else SeriesState.OK
    return SeriesStatus(s.series_uid, status, detail, s.collection, proof_of(hows))


def _series_copies(
    s: ExpectedSeries, sops: list[str], acc: _Acc
) -> tuple[Counter[str], list[str], set[str], int]:
    """Report duplicates; return how the images were known, their MD5s (this run's, or
    recorded at the last pass), the days stat-trusted ones were verified, and how many
    were hashed in this run."""
    hows: Counter[str] = Counter()
    md5s: list[str] = []
    days: set[str] = set()
    hashed = 0
    for sop in sops:
        copies = acc.tally.copies(sop)  # by relative path: the first is canonical
        if len(copies) > 1:
            paths = tuple(sorted(c.rel for c in copies))
            acc.findings.append(
                Finding(
                    FindingKind.DUPLICATE,
                    s.series_uid,
                    sop,
                    "",
                    f"{len(copies)} copies",
                    paths=paths,
                )
            )
        hows.update(c.how for c in copies)
        days.update(c.since[:10] for c in copies if c.how == HOW_STAT)
        hashed += copies[0].how != HOW_PRESENT
        if copies[0].md5:
            md5s.append(copies[0].md5)
    return hows, md5s, days, hashed


def _series_hash_status(s: ExpectedSeries, sops: list[str], acc: _Acc) -> SeriesStatus:
    """Judge a series the lock pins by its hash only (text lock, or a series-only lock)."""
    sample = acc.sample
    before = len(acc.findings)
    hows, md5s, days, hashed = _series_copies(s, sops, acc)
    summary = _how_summary(hows, _since_range(days))
    attributed = s.series_uid in acc.blocked
    in_sample = sample is None or s.series_uid in sample
    acc.sample_size += sample is not None and in_sample
    known = len(md5s) == len(sops)
    padded = series_hash(md5s) if known else ""
    unpadded = series_hash((m.lstrip("0") or "0") for m in md5s) if known else ""
    matches = known and s.series_hash in (padded, unpadded)
    # Outside the sample a series is judged by count only, unless a file of it was new or
    # changed (and so hashed) or its last pass found it wrong: then its hash is recomputed,
    # unchanged files counting with the MD5s recorded at their last pass.
    if not known or (not in_sample and not hashed and matches):
        ok = len(sops) == s.image_count and not attributed
        detail = f"{len(sops)} of {s.image_count} images present (count only: not in the sample)"
        if not ok and not attributed:
            acc.findings.append(_count_finding(s, len(sops)))
        return _status(s, acc, before, detail, SAMPLE if sops else NONE)
    if matches:
        form = "32-character MD5s" if s.series_hash == padded else "CTP-style unpadded MD5s"
        detail = f"{len(sops)} images: {summary}; series hash from their {form} matches the lock"
        if sample is not None and in_sample:
            acc.sample_checked += 1
        return _status(s, acc, before, detail, proof_of(hows))
    if sample is not None and in_sample:
        acc.sample_checked += 1
        acc.sample_failures += 1
    _explain_series_mismatch(s, sops, acc, attributed)
    detail = (
        f"{len(sops)} of {s.image_count} images: {summary}; series hash recomputed from the "
        f"copy: {padded} (lock: {s.series_hash})"
    )
    return _status(s, acc, before, detail, proof_of(hows))


def _explain_series_mismatch(
    s: ExpectedSeries, sops: list[str], acc: _Acc, attributed: bool
) -> None:
    explained = attributed
    for sop in sops:
        for copy in acc.tally.copies(sop):
            try:
                truncated = truncation(os.path.join(acc.root, copy.rel))
            except OSError:
                truncated = None
            if truncated is not None:
                acc.findings.append(
                    Finding(FindingKind.UNREADABLE, s.series_uid, sop, copy.rel, truncated)
                )
                explained = True
    if not explained:
        acc.findings.append(_count_finding(s, len(sops)))


def _count_finding(s: ExpectedSeries, found: int) -> Finding:
    # A lock without per-image MD5s cannot say which image is wrong: say what it can.
    why = "the lock pins this series by its hash only, so it cannot name the image"
    if found < s.image_count:
        text = f"{s.image_count - found} of {s.image_count} images not found; {why}"
        return Finding(FindingKind.MISSING, s.series_uid, detail=text)
    if found > s.image_count:
        text = f"the copy holds {found} images, the lock pins {s.image_count}; {why}"
        return Finding(FindingKind.UNEXPECTED, s.series_uid, detail=text)
    text = f"series hash recomputed from the copy differs from the lock; {why}"
    return Finding(FindingKind.MODIFIED, s.series_uid, detail=text)


def _status(s: ExpectedSeries, acc: _Acc, before: int, detail: str, proof: str) -> SeriesStatus:
    status = SeriesState.PROBLEM if len(acc.findings) > before else SeriesState.OK
    return SeriesStatus(s.series_uid, status, detail, s.collection, proof)


def _unjudged(st: SeriesStatus, stray_series: set[str], blocked: Container[str]) -> SeriesStatus:
    """A series with a finding of its own is a problem; one with files that could not be read
    (a folder that cannot be listed holds some of its images) is never ``ok``."""
    if st.series_uid in stray_series:
        return dataclasses.replace(st, status=SeriesState.PROBLEM)
    if st.status == SeriesState.OK and st.series_uid in blocked:
        detail = st.detail + "; some of its files could not be read (see `unreadable`)"
        return dataclasses.replace(st, status=SeriesState.NOT_CHECKED, detail=detail)
    return st


def _work(exp: Expectation, uid: str) -> list[tuple[str, str | None]]:
    return [(sop, image.archive_md5) for sop, image in exp.images_of(uid)]


def judge(exp: Expectation, tally: Tally, root: str, sample: Sample | None) -> Verdict:
    """Turn a finished walk into findings and one status per locked series.

    Series by series: only one series' locked images and placed files are held at a time.
    """
    blocked: Container[str] = tally.blocked_units
    if len(tally.blocked_units) <= _BLOCKED_IN_MEMORY:
        blocked = frozenset(tally.blocked_units)
    acc = _Acc(tally, root, sample, blocked=blocked)
    acc.missing_note = _missing_note(tally.unattributed_blocked)
    statuses: list[SeriesStatus] = []
    for uid, s in exp.series.items():
        if not s.images_pinned:
            # The images whose first copy (by path) claims this series; never a pinned one.
            sops = [sop for sop in tally.images_first_seen_in(uid) if not exp.has_image(sop)]
            statuses.append(_series_hash_status(s, sops, acc))
        else:
            statuses.append(_image_status(s, _work(exp, uid), acc))
    strays = list(tally.strays)  # one per problem file
    stray_series = {f.series_uid for f in strays if f.series_uid}
    statuses = [_unjudged(st, stray_series, blocked) for st in statuses]
    findings = tuple(sorted(acc.findings + strays))
    return Verdict(
        findings,
        tuple(statuses),
        acc.short_md5,
        acc.unprovable,
        acc.sample_checked,
        acc.sample_failures,
        acc.sample_size,
    )
