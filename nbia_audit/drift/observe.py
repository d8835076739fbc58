"""Below the hash tree: where a locked series went, and which of its images changed.

Two questions the hierarchy hashes cannot answer on their own:

* A locked series the spec no longer resolves to: is it still served (its metadata comes
  back), hidden (not served, but its series hash, which ignores visibility, still answers;
  protocol §1.3) or removed (not served and no image left: the hash is "")? An empty listing
  is never read as a removal on its own (§4.3): "hidden" and "removed" also need the
  series-level hash, and a series the hash tree just proved present is never called gone.
* A series whose hash differs: which images were added, removed or changed? One
  ``getSOPInstanceUIDs`` gives the image list; the MD5s of new images come next, and only if
  those do not add up to the archive's new series hash are the remaining images asked, one
  request each (NBIA has no bulk MD5 endpoint short of downloading the series). Whatever is
  concluded must reproduce the archive's series hash exactly, or the series is "not checked".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

from nbia_audit.archive.calls import CallRunner
from nbia_audit.archive.protocol import Archive
from nbia_audit.client.records import SeriesInfo
from nbia_audit.drift.tree import Proof
from nbia_audit.errors import ApiError
from nbia_audit.merkle import series_hash

__all__ = ["Absent", "ImageTarget", "Images", "observe_absent", "observe_images"]

METADATA_BATCH = 1000  # UIDs per getSeriesMetadata call, as the client batches (protocol §8)


@dataclass(slots=True)
class Absent:
    """Where the locked series missing from the current resolution are."""

    served: dict[str, SeriesInfo] = field(default_factory=dict)
    hidden: dict[str, str] = field(default_factory=dict)  # UID -> series hash, verbatim
    removed: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)  # UID -> why not determined


def observe_absent(
    uids: Sequence[str],
    archive: Archive,
    runner: CallRunner,
    *,
    series_answers: Mapping[str, str],
    proofs: Mapping[str, Proof],
) -> Absent:
    """Classify locked series the spec no longer resolves to.

    ``series_answers`` are series hashes the descent already asked (not asked again);
    ``proofs`` are its live verdicts, which a "not served" answer must not contradict.
    """
    result = Absent()
    ordered = sorted(uids)
    batches = [ordered[i : i + METADATA_BATCH] for i in range(0, len(ordered), METADATA_BATCH)]
    answers = runner.run_keeping_errors(
        "metadata of series no longer selected",
        [partial(archive.series_metadata, batch) for batch in batches],
    )
    unserved: list[str] = []
    for batch, answer in zip(batches, answers, strict=True):
        if isinstance(answer, ApiError):
            result.failed.update({uid: f"metadata could not be asked: {answer}" for uid in batch})
            continue
        found = {info.series_uid: info for info in answer if info.series_uid in batch}
        result.served.update(found)
        unserved += [uid for uid in batch if uid not in found]
    _classify_unserved(unserved, archive, runner, series_answers, proofs, result)
    return result


def _classify_unserved(
    uids: list[str],
    archive: Archive,
    runner: CallRunner,
    series_answers: Mapping[str, str],
    proofs: Mapping[str, Proof],
    result: Absent,
) -> None:
    for uid in uids:
        proof = proofs.get(uid)
        if proof is not None and proof.level in ("study", "patient"):
            # A live study or patient hash counts only visible series (protocol §1.3), and
            # it just counted this one: the listing that left it out is not believed.
            result.failed[uid] = (
                f"not listed, yet the live {proof.level} hash still includes it; "
                "the listing may be incomplete (protocol §4.3)"
            )
    to_ask = [u for u in uids if u not in series_answers and u not in result.failed]
    asked = runner.run_keeping_errors(
        "series hashes of unlisted series",
        [partial(archive.md5_hierarchy, series_uid=u) for u in to_ask],
    )
    hashes: dict[str, str | ApiError] = {**series_answers, **dict(zip(to_ask, asked, strict=True))}
    for uid in uids:
        if uid in result.failed:
            continue
        answer = hashes[uid]
        if isinstance(answer, ApiError):
            result.failed[uid] = f"series hash could not be asked: {answer}"
        elif answer:
            result.hidden[uid] = answer
        else:
            result.removed.add(uid)


@dataclass(frozen=True, slots=True)
class ImageTarget:
    """A changed series with pinned images: the lock's images and the archive's new hash."""

    locked: Mapping[str, str | None]
    current_hash: str


@dataclass(slots=True)
class Images:
    """The current images of changed series (SOP UID -> stored MD5), or why not known."""

    current: dict[str, dict[str, str | None]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    md5_requests: int = 0


def observe_images(
    targets: Mapping[str, ImageTarget], archive: Archive, runner: CallRunner
) -> Images:
    """Find the current image list and MD5s of each target series, as cheaply as proven.

    Round 1 lists every target's images; round 2 asks the MD5s of images the lock lacks; a
    series whose remaining images, taken from the lock, then reproduce the archive's hash is
    done. Round 3 asks the MD5s of the others' remaining images.
    """
    out = Images()
    uids = sorted(targets)
    listed = runner.run_keeping_errors(
        "image lists", [partial(archive.sop_instance_uids, u) for u in uids]
    )
    lists: dict[str, list[str]] = {}
    for uid, answer in zip(uids, listed, strict=True):
        if isinstance(answer, ApiError):
            out.failed[uid] = f"image list could not be asked: {answer}"
        else:
            lists[uid] = sorted(set(answer))
    new = {u: [s for s in sops if s not in targets[u].locked] for u, sops in lists.items()}
    md5s = _ask_md5s(new, archive, runner, out, "MD5s of new images")
    pending: dict[str, list[str]] = {}
    for uid, sops in lists.items():
        if uid in out.failed:
            continue
        target = targets[uid]
        current = {s: md5s[s] if s in md5s else target.locked[s] for s in sops}
        if series_hash(current.values()) == target.current_hash:
            out.current[uid] = current
        else:
            pending[uid] = [s for s in sops if s in target.locked]
    again = _ask_md5s(pending, archive, runner, out, "MD5s of locked images")
    for uid in pending:
        if uid not in out.failed:
            current = {s: again[s] if s in again else md5s[s] for s in lists[uid]}
            _accept(uid, current, targets[uid], out)
    return out


def _accept(uid: str, current: dict[str, str | None], target: ImageTarget, out: Images) -> None:
    """Keep ``current`` only if it reproduces the archive's series hash exactly."""
    if series_hash(current.values()) == target.current_hash:
        out.current[uid] = current
    else:
        out.failed[uid] = (
            "its image list and MD5s do not reproduce the archive's series hash (it changed "
            "while being checked, or an answer was incomplete); run again"
        )


def _ask_md5s(
    wanted: Mapping[str, list[str]],
    archive: Archive,
    runner: CallRunner,
    out: Images,
    stage: str,
) -> dict[str, str | None]:
    pairs = [(uid, sop) for uid, sops in sorted(wanted.items()) for sop in sops]
    calls: list[Callable[[], str | None]] = [partial(archive.image_md5, sop) for _, sop in pairs]
    answers = runner.run_keeping_errors(stage, calls)
    out.md5_requests += len(pairs)
    found: dict[str, str | None] = {}
    for (uid, sop), answer in zip(pairs, answers, strict=True):
        if isinstance(answer, ApiError):
            out.failed.setdefault(uid, f"image MD5 could not be asked: {answer}")
        else:
            found[sop] = answer
    return found
