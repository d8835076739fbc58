"""The drift report: per-series statuses and the facts saying what each level proved, and when.

A reader must be able to tell, from the report alone, how strong its "no drift" is: which
hashes were computed by the archive on request (patient, study, series: proof as of the
moment they were asked) and which were the archive's nightly cache (collection: proof as of
its last refresh, protocol §1.3), what the change feed added, and what was not checked.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from nbia_audit.drift.diff import FIELD_LABELS, SeriesView, Upstream
from nbia_audit.drift.observe import Images
from nbia_audit.drift.select import CurrentSelection
from nbia_audit.drift.tree import Descent, LevelTally, Proof
from nbia_audit.findings import AuditReport, Finding, SeriesState, SeriesStatus
from nbia_audit.models import LockHeader

__all__ = ["STALENESS", "Evidence", "Feed", "build_report"]

# Protocol §1.3: the nightly job runs every 24 h; the REST layer caches a value 100 minutes.
STALENESS = dt.timedelta(hours=24, minutes=100)


@dataclass(frozen=True, slots=True)
class Feed:
    """The change feed's answer: series released after ``since`` (or why it failed)."""

    since: str
    series: frozenset[str]
    error: str


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything one drift run established, before it is written up."""

    fast: bool
    locked: Mapping[str, SeriesView]
    upstream: Upstream
    findings: tuple[Finding, ...]
    unknown: Mapping[str, str]  # locked series UID -> why it could not be checked
    descent: Descent
    images: Images
    selection: CurrentSelection
    listed_at: str
    feed: Feed
    requests: int


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_report(
    lock_path: str,
    header: LockHeader,
    evidence: Evidence,
    *,
    started: dt.datetime,
    now: Callable[[], dt.datetime],
) -> AuditReport:
    """Assemble the :class:`AuditReport` of one drift run."""
    finished = now()
    return AuditReport(
        command="drift",
        lock_path=lock_path,
        root_digest=header.root_digest,
        started_at=_iso(started),
        finished_at=_iso(finished),
        findings=evidence.findings,
        series=_statuses(evidence),
        complete=not evidence.unknown,
        facts=_facts(header, evidence, finished),
    )


def _statuses(evidence: Evidence) -> tuple[SeriesStatus, ...]:
    kinds: dict[str, set[str]] = {}
    for finding in evidence.findings:
        kinds.setdefault(finding.series_uid, set()).add(finding.kind)
    out = []
    for uid, view in sorted(evidence.locked.items()):
        collection = view.meta.collection
        if uid in evidence.unknown:
            status = SeriesStatus(uid, SeriesState.NOT_CHECKED, evidence.unknown[uid], collection)
        elif uid in kinds:
            status = SeriesStatus(
                uid, SeriesState.PROBLEM, ", ".join(sorted(kinds[uid])), collection
            )
        else:
            status = SeriesStatus(
                uid, SeriesState.OK, _proof_text(evidence.descent.unchanged.get(uid)), collection
            )
        out.append(status)
    return tuple(out)


def _proof_text(proof: Proof | None) -> str:
    if proof is None:
        return "unchanged"
    if proof.cached:
        return (
            f"unchanged as of the archive's last nightly refresh: collection {proof.key} "
            f"hash (cached) matched at {proof.at}"
        )
    return f"unchanged: {proof.level} {proof.key} hash matched live at {proof.at}"


def _facts(header: LockHeader, evidence: Evidence, finished: dt.datetime) -> dict[str, object]:
    locked = evidence.locked
    pinned = sum(len(v.images) for v in locked.values() if v.images is not None)
    cached = "collection" in evidence.descent.levels
    facts: dict[str, object] = {
        "requests": evidence.requests,
        "mode": _mode_text(evidence.fast, cached, bool(evidence.feed.error)),
        "lock": f"{len(locked)} series, {pinned} images pinned, resolved {header.resolved_at}",
        "selection": _selection_text(evidence),
    }
    facts.update(_level_facts(evidence))
    facts["images"] = _images_text(evidence)
    facts["metadata"] = (
        f"compared for {len(evidence.upstream.selected) + len(evidence.upstream.deselected)} "
        f"series from the archive's listings at {evidence.listed_at}: "
        + ", ".join(FIELD_LABELS.values())
        + " (image count and size only where the images are unchanged)"
    )
    facts["change_feed"] = _feed_text(evidence)
    if cached:
        facts["staleness_window"] = _staleness_text(finished)
    if evidence.unknown:
        facts["not_checked"] = (
            f"{len(evidence.unknown)} series could not be checked (see their status); "
            "the report is incomplete, never clean"
        )
    return facts


def _mode_text(fast: bool, cached: bool, feed_failed: bool) -> str:
    if fast and cached:
        return (
            "fast: the archive's cached collection hashes for whole collections, live hashes "
            "only below a differing or suspect collection"
        )
    live = "every covered patient's hash asked live (computed on request)"
    if fast and feed_failed:
        return f"fast requested, but the change feed could not be asked: {live}, as normal"
    if fast:
        return f"fast, but the lock holds no whole collection: {live}"
    return f"normal: {live}"


def _selection_text(evidence: Evidence) -> str:
    selection = evidence.selection
    text = (
        f"the lock's spec resolves to {len(selection.series)} series now "
        f"(listed at {evidence.listed_at})"
    )
    if selection.relaxed:
        text += "; no longer resolvable as locked: " + "; ".join(selection.relaxed)
    return text


def _level_facts(evidence: Evidence) -> dict[str, str]:
    levels = evidence.descent.levels
    out: dict[str, str] = {}
    collection = levels.get("collection")
    if collection is None:
        out["collection_hashes"] = (
            "not asked: cached by the archive and refreshed by a nightly job (protocol §1.3), "
            "a match proves nothing about changes since its last refresh"
            + ("" if evidence.fast else "; normal mode asks the patients live instead")
        )
    else:
        out["collection_hashes"] = _collection_text(collection, evidence)
    for level in ("patient", "study", "series"):
        tally = levels.get(level)
        if tally is not None:
            out[f"{level}_hashes"] = _tally_text(tally, "computed by the archive on request")
    return out


def _tally_text(tally: LevelTally, how: str) -> str:
    text = f"{tally.asked} asked live at {tally.at} ({how}): {tally.matched} matched"
    differed = tally.asked - tally.matched - tally.failed
    if differed:
        text += f", {differed} differed (asked below)"
    if tally.failed:
        text += f", {tally.failed} could not be asked"
    return text


def _collection_text(tally: LevelTally, evidence: Evidence) -> str:
    text = (
        f"{tally.asked} asked at {tally.at} (the archive's nightly cache): {tally.matched} "
        "matched, which proves no change up to the archive's last refresh and nothing after"
    )
    differing = evidence.descent.differing_collections
    if differing:
        text += (
            f"; {len(differing)} differed ({', '.join(sorted(differing))}), which may be a "
            "stale cache, so their patients were asked live before calling anything drift"
        )
    return text


def _images_text(evidence: Evidence) -> str:
    images = evidence.images
    listed = set(images.current) | set(images.failed)
    if not listed:
        return "no image-level look needed"
    blind = len(listed & set(evidence.descent.unchanged))
    text = (
        f"{len(listed)} image lists and {images.md5_requests} image MD5s asked (one request "
        "per image: NBIA has no bulk MD5 endpoint)"
    )
    if blind:
        text += (
            f"; {blind} of these series have an unchanged hash but missing or repeated "
            "archive MD5s, which a hash cannot tell apart, so their images were listed too"
        )
    return text


def _feed_text(evidence: Evidence) -> str:
    feed = evidence.feed
    if feed.error:
        failed = f"getUpdatedSeries since {feed.since} could not be asked ({feed.error})"
        if not evidence.fast:
            return f"{failed}; not needed: a hint only, every covered patient is asked live"
        # In fast mode the feed chooses which patients are re-checked live below a matching
        # cached collection hash: without it the fast guarantee would not hold, so the run
        # fell back to normal mode's live hashes rather than claim it (docs/drift.md).
        return (
            f"{failed}; --fast relies on it to choose which patients to re-check live below "
            "a matching cached collection hash, so without it that guarantee would not hold: "
            "every covered patient's hash was asked live instead (normal mode's guarantee, "
            "at normal mode's cost)"
        )
    mine = len(feed.series & set(evidence.locked))
    use = "sent to a live check" if evidence.fast else "a hint only: releases, not image changes"
    return (
        f"getUpdatedSeries since {feed.since}: {len(feed.series)} series released, {mine} of "
        f"them locked ({use})"
    )


def _staleness_text(finished: dt.datetime) -> str:
    start = _iso(finished - STALENESS)
    return (
        "a matching collection hash reflects the archive at its last nightly refresh, which "
        f"may be as old as {start} (24 h job + 100 min cache, protocol §1.3): image changes "
        "since then are not seen by --fast. Seen live regardless: series added, removed or "
        "hidden and metadata (listings), releases (change feed), image-count, size and "
        "submission changes (listings; their patients are asked live)"
    )
