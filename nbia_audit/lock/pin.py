"""Pin selected series: archive hashes, every image's archive MD5, and the checks between them.

The second half of resolution. For each series it asks ``getMD5Hierarchy``; unless pinning
series hashes only, it lists the series' SOPInstanceUIDs and asks each image's stored MD5
(there is no bulk endpoint), then recomputes the series hash from those strings. A
disagreement is a problem in the result, never hidden. Study, patient and collection
hashes are computed locally and compared with the archive's; a node whose hash agrees is
recorded as wholly covered by the lock, which is what lets drift ask one hash for it later.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from nbia_audit.archive.calls import CallRunner
from nbia_audit.archive.protocol import Archive
from nbia_audit.client.records import SeriesInfo
from nbia_audit.errors import ApiError
from nbia_audit.findings import ProblemKind
from nbia_audit.merkle import hierarchy_from_series, series_hash
from nbia_audit.models import HashNode, LockedImage, LockedSeries, Problem
from nbia_audit.progress import ProgressCallback

T = TypeVar("T")

__all__ = [
    "SETTLE_ROUNDS",
    "Pins",
    "hash_nodes",
    "image_problems",
    "locked_series",
    "pin_series",
]


@dataclass(frozen=True, slots=True)
class Pins:
    """Everything pinned for a set of series.

    ``unsettled`` names series whose archive hash and image MD5s kept disagreeing (the
    archive changed them while they were asked, every time): they are not pinned, and a
    lock must not be written with them.
    """

    series_hashes: dict[str, str]
    images: dict[str, tuple[LockedImage, ...]]  # empty for series-only pins
    problems: tuple[Problem, ...]
    unsettled: tuple[str, ...] = ()
    not_visible: tuple[str, ...] = ()  # images listed, none with an MD5: the lock must not
    # be written with them (see _not_visible)


# How many times a series whose hash and image MD5s disagree is asked again. A series
# the archive changes while it is asked settles on the next round; one that never agrees
# is the archive contradicting itself, and more rounds would not change that.
SETTLE_ROUNDS = 3


def pin_series(
    selected: dict[str, SeriesInfo],
    archive: Archive,
    *,
    series_only: bool = False,
    workers: int = 8,
    on_progress: ProgressCallback | None = None,
) -> Pins:
    """Pin every selected series.

    Unless pinning hashes only, a series' pins are accepted only when its image MD5s
    recompute (NBIA's algorithm) to the series hash the archive gave: a series that
    disagrees is asked again, hash and images together, up to :data:`SETTLE_ROUNDS` times.

    Raises:
        ApiError: the archive could not answer (after the client's retries).
    """
    uids = sorted(selected)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        calls = CallRunner(pool, on_progress)
        series_hashes = _ask_hashes(uids, archive, calls)
        images: dict[str, tuple[LockedImage, ...]] = {}
        unsettled: list[str] = []
        invisible: list[str] = []
        if not series_only:
            images = _pin_images(uids, archive, calls)
            unsettled = _disagreeing(series_hashes, images)
            # Not a change in progress, so asking again would not help (see _not_visible).
            invisible = [u for u in unsettled if _not_visible(images[u])]
            unsettled = [u for u in unsettled if u not in invisible]
            for _round in range(SETTLE_ROUNDS):
                if not unsettled:
                    break
                series_hashes.update(_ask_hashes(unsettled, archive, calls))
                images.update(_pin_images(unsettled, archive, calls))
                unsettled = _disagreeing({u: series_hashes[u] for u in unsettled}, images)
        settled = {u: h for u, h in series_hashes.items() if u not in unsettled}
        problems = [
            p
            for u in sorted(settled)
            for p in image_problems(
                u, selected[u], settled[u], None if series_only or u in invisible else images[u]
            )
        ]
        problems += [_invisible_problem(u, len(images[u])) for u in sorted(invisible)]
    return Pins(
        series_hashes=settled,
        images={u: i for u, i in images.items() if u not in unsettled},
        problems=tuple(problems),
        unsettled=tuple(sorted(unsettled)),
        not_visible=tuple(sorted(invisible)),
    )


def _not_visible(images: Sequence[LockedImage]) -> bool:
    """True when a series' images were listed but the archive gave no MD5 for any of them.

    v4 ``getSOPInstanceUIDs`` applies no visibility or authorization filter on the real
    archive (``InstanceDAOImpl``), while ``getMD5HashForImage`` answers "" for an image it
    will not show (protocol §2.4): a hidden or inaccessible series lists its images and then
    has no MD5 for any. That is a visibility problem, not removed images, and not a series
    changing while it is asked, so it is reported as such.
    """
    return bool(images) and all(i.archive_md5 is None for i in images)


def _invisible_problem(uid: str, listed: int) -> Problem:
    return Problem(
        uid,
        ProblemKind.IMAGES_NOT_VISIBLE,
        f"getSOPInstanceUIDs listed {listed} image(s) but the archive gave an MD5 for none, and "
        "the series hash disagrees: the series is hidden or not accessible to this account "
        "(v4 getSOPInstanceUIDs does not filter by visibility), not removed",
    )


def _ask_hashes(uids: Sequence[str], archive: Archive, calls: CallRunner) -> dict[str, str]:
    hashes = _run_per_series(
        calls, "series hashes", uids, [partial(archive.md5_hierarchy, series_uid=u) for u in uids]
    )
    return dict(zip(uids, hashes, strict=True))


def _run_per_series(
    calls: CallRunner, stage: str, owners: Sequence[str], fns: Sequence[Callable[[], T]]
) -> list[T]:
    """Make every call; if any failed, one error names every series that could not be pinned.

    A bad answer for one series does not hide the others': the user learns all of them from
    one run. Nothing is pinned from a run with failures (the lock is not written).

    Raises:
        ApiError: at least one call failed (chained to the first failure).
    """
    results = calls.run_keeping_errors(stage, fns)
    failed: dict[str, ApiError] = {}
    for owner, result in zip(owners, results, strict=True):
        if isinstance(result, ApiError):
            failed.setdefault(owner, result)
    if not failed:
        return results  # type: ignore[return-value]
    first, error = next(iter(sorted(failed.items())))
    others = sorted(failed)[1:]
    also = ""
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        also = f"; the same stage failed for {shown}"
    raise ApiError(
        f"could not pin {len(failed)} series ({stage}), so nothing was written; "
        f"series {first}: {error}{also}"
    ) from error


def _disagreeing(
    series_hashes: dict[str, str], images: dict[str, tuple[LockedImage, ...]]
) -> list[str]:
    return sorted(
        u for u, h in series_hashes.items() if series_hash(i.archive_md5 for i in images[u]) != h
    )


def _pin_images(
    uids: Sequence[str], archive: Archive, calls: CallRunner
) -> dict[str, tuple[LockedImage, ...]]:
    sop_lists = _run_per_series(
        calls, "image lists", uids, [partial(archive.sop_instance_uids, u) for u in uids]
    )
    pairs = [(series, sop) for series, sops in zip(uids, sop_lists, strict=True) for sop in sops]
    md5s = _run_per_series(
        calls,
        "image MD5s",
        [series for series, _ in pairs],
        [partial(archive.image_md5, sop) for _, sop in pairs],
    )
    images: defaultdict[str, list[LockedImage]] = defaultdict(list)
    for (series, sop), md5 in zip(pairs, md5s, strict=True):
        # The per-image endpoint answers "" for NULL (protocol §2.4); the lock keeps None.
        images[series].append(LockedImage(sop, series, md5 if md5 else None))
    return {u: tuple(sorted(images.get(u, []), key=lambda i: i.sop_uid)) for u in uids}


def image_problems(
    uid: str,
    info: SeriesInfo | None,
    pinned_hash: str,
    pinned: Sequence[LockedImage] | None,
) -> list[Problem]:
    """What a series' pins say about the archive's own data (recorded in the lock).

    ``info`` is the archive's listing now (None: not listed), ``pinned`` the pinned images
    (None: pinned by hash only). Computed afresh on every lock, for kept pins too, so a
    problem never outlives its cause.
    """
    problems = []
    if not pinned_hash:
        problems.append(
            Problem(uid, ProblemKind.EMPTY_SERIES_HASH, "the archive has no hash for this series")
        )
    if pinned is None:
        return problems
    expected = info.image_count if info is not None else None
    if expected is not None and expected != len(pinned):
        problems.append(
            Problem(
                uid,
                ProblemKind.IMAGE_COUNT_MISMATCH,
                f"the series lists {expected} images, getSOPInstanceUIDs gave {len(pinned)}",
            )
        )
    # CTP stored a single space when it had no digest (protocol §3): that is missing,
    # not short.
    short = sum(1 for i in pinned if i.archive_md5 and 0 < len(i.archive_md5.strip()) < 32)
    if short:
        problems.append(
            Problem(
                uid,
                ProblemKind.SHORT_ARCHIVE_MD5,
                f"{short} archive MD5 value(s) lack leading zeros (kept verbatim)",
            )
        )
    missing = sum(1 for i in pinned if not (i.archive_md5 or "").strip())
    if missing:
        problems.append(
            Problem(uid, ProblemKind.MISSING_ARCHIVE_MD5, f"{missing} image(s) have no archive MD5")
        )
    return problems


def hash_nodes(
    series: Sequence[LockedSeries],
    archive: Archive,
    *,
    whole_collections: Iterable[str] = (),
    whole_studies: Iterable[str] = (),
    whole_patients: Iterable[tuple[str, str]] = (),
    fresh: Iterable[str] | None = None,
    workers: int = 8,
    on_progress: ProgressCallback | None = None,
) -> tuple[list[HashNode], list[Problem]]:
    """Compute study, patient and whole-collection hashes and ask the archive for each.

    A node covers the whole of the archive's node when the spec selects it whole (by a
    collection or study UIDs, unfiltered) or when the archive's hash agrees. A node selected
    whole whose hash disagrees although every series under it was pinned just now
    (``fresh``; None: all) is the archive contradicting itself: a problem. Returns the
    nodes and those problems.

    Raises:
        ApiError: the archive could not answer.
    """
    wanted = set(whole_collections)
    tree = hierarchy_from_series(
        (s.collection, s.patient_id, s.study_uid, s.series_uid, s.series_hash) for s in series
    )
    studies, patients = dict(tree.studies), dict(tree.patients)
    collections = {c: v for c, v in tree.collections.items() if c in wanted}

    study_keys, patient_keys, collection_keys = (
        sorted(studies),
        sorted(patients),
        sorted(collections),
    )
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        calls = CallRunner(pool, on_progress)
        archive_studies = calls.run(
            "study hashes", [partial(archive.md5_hierarchy, study_uid=s) for s in study_keys]
        )
        archive_patients = calls.run(
            "patient hashes",
            [partial(archive.md5_hierarchy, collection=c, patient_id=p) for c, p in patient_keys],
        )
        archive_collections = calls.run(
            "collection hashes",
            [partial(archive.md5_hierarchy, collection=c) for c in collection_keys],
        )
    structural_studies, structural_patients = set(whole_studies), set(whole_patients)
    by_study: defaultdict[str, list[LockedSeries]] = defaultdict(list)
    by_patient: defaultdict[tuple[str, str], list[LockedSeries]] = defaultdict(list)
    for x in series:  # grouped once: a member list per node would cost series x nodes
        by_study[x.study_uid].append(x)
        by_patient[(x.collection, x.patient_id)].append(x)
    fresh_uids = None if fresh is None else set(fresh)
    nodes: list[HashNode] = []
    problems: list[Problem] = []
    for uid, answer in zip(study_keys, archive_studies, strict=True):
        whole = uid in structural_studies
        nodes.append(HashNode("study", uid, studies[uid], answer, whole or answer == studies[uid]))
        members = by_study[uid]
        if whole and answer != studies[uid] and _all_fresh(members, fresh_uids):
            problems.append(_node_problem(members, "study", uid, answer, studies[uid]))
    for (c, p), answer in zip(patient_keys, archive_patients, strict=True):
        whole = (c, p) in structural_patients
        key = f"{c}/{p}"
        nodes.append(
            HashNode("patient", key, patients[(c, p)], answer, whole or answer == patients[(c, p)])
        )
        members = by_patient[(c, p)]
        if whole and answer != patients[(c, p)] and _all_fresh(members, fresh_uids):
            problems.append(_node_problem(members, "patient", key, answer, patients[(c, p)]))
    # A whole collection is covered by construction; its archive hash is a nightly cache
    # (protocol §1.3), so a difference here is recorded, not judged.
    nodes += [
        HashNode("collection", c, collections[c], a, True)
        for c, a in zip(collection_keys, archive_collections, strict=True)
    ]
    return nodes, problems


def _all_fresh(members: Sequence[LockedSeries], fresh: set[str] | None) -> bool:
    return fresh is None or all(m.series_uid in fresh for m in members)


# What the archive's hash of a node selected whole disagreeing with its series is, by level.
_NODE_MISMATCH = {
    "study": ProblemKind.STUDY_HASH_MISMATCH,
    "patient": ProblemKind.PATIENT_HASH_MISMATCH,
}


def _node_problem(
    members: Sequence[LockedSeries], level: str, key: str, archive: str, computed: str
) -> Problem:
    return Problem(
        members[0].series_uid,
        _NODE_MISMATCH[level],
        f"{level} {key}: the archive's hash {archive or '(empty)'} != {computed} computed from "
        "the series hashes it gave for every series of it",
    )


def _iso_date(value: dt.datetime | None) -> str:
    return value.date().isoformat() if value else ""


def locked_series(info: SeriesInfo, series_hash: str, images_pinned: bool) -> LockedSeries:
    """The lock's record of a series as the archive lists it (``lock`` and ``drift`` both
    use this one mapping, so equal answers always compare equal)."""
    return LockedSeries(
        series_uid=info.series_uid,
        collection=info.collection or "",
        patient_id=info.patient_id or "",
        study_uid=info.study_uid or "",
        modality=info.modality or "",
        description=info.description or "",
        series_number="" if info.series_number is None else str(info.series_number),
        body_part=info.body_part or "",
        manufacturer=info.manufacturer or "",
        image_count=info.image_count or 0,
        bytes=info.file_size or 0,
        series_hash=series_hash,
        released=_iso_date(info.released),
        max_submission=info.max_submission.isoformat() if info.max_submission else "",
        license_name=info.license_name or "",
        license_url=info.license_url or "",
        doi=info.doi or "",
        third_party=bool(info.third_party),
        images_pinned=images_pinned,
    )
