"""Drift as a pure function: ``diff(locked, upstream)`` -> findings, with no I/O.

The descent (drift_tree.py) decides *how little* to ask the archive; this module decides
*what the answers mean*. ``locked`` is every series of the lock as a :class:`SeriesView`;
``upstream`` is what the archive serves now, as far as drift had to look: a series proven
unchanged by a matching hash higher in the tree carries the lock's own hash and images, so
``diff(x, Upstream.unchanged(x))`` is empty.

Kinds (docs/drift.md): ``series-added``, ``series-removed``, ``series-hidden``,
``image-added``, ``image-removed``, ``image-changed``, ``metadata-changed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from nbia_audit.findings import Finding, FindingKind
from nbia_audit.lock.changes import (
    FIELD_LABELS,
    FIELDS,
    FieldChange,
    SeriesMeta,
    compare,
    field_changes,
)
from nbia_audit.merkle import normalise_archive_md5
from nbia_audit.models import LockedSeries

__all__ = [
    "EXTERNAL_SELECTOR_KINDS",
    "FIELD_LABELS",
    "Reach",
    "SeriesMeta",
    "SeriesView",
    "Upstream",
    "diff",
    "image_findings",
    "metadata_findings",
    "swap_blind",
]

# Selector kinds whose answer can change without any field of the series changing (a cart is
# edited, a search index rebuilt), so leaving the selection needs no metadata to explain it.
# A DOI is not one of them: NBIA resolves it from the series' own DataDescriptionURI
# (protocol §7), a field drift compares.
EXTERNAL_SELECTOR_KINDS = frozenset({"cart", "search", "text"})


@dataclass(frozen=True, slots=True)
class SeriesView:
    """One series at one moment.

    ``series_hash`` None: its content could not be determined (the status says why).
    ``images`` (SOPInstanceUID -> archive MD5 string verbatim, None for NULL) is None when
    images are not pinned (a series-only lock) or were not looked at.
    """

    series_uid: str
    meta: SeriesMeta
    series_hash: str | None
    images: Mapping[str, str | None] | None = None


@dataclass(frozen=True, slots=True)
class Upstream:
    """What the archive serves now, in the terms of the lock's series.

    - ``selected``: the series the spec resolves to now (locked or not);
    - ``deselected``: locked series still served, that the spec no longer resolves to;
    - ``hidden``: locked series no longer served whose images still exist (their hash);
    - ``removed``: locked series no longer served with no image left;
    - a locked series in none of these could not be checked (no finding; the report's
      status says so and the report is incomplete).
    """

    selected: Mapping[str, SeriesView]
    deselected: Mapping[str, SeriesView] = field(default_factory=dict)
    hidden: Mapping[str, str] = field(default_factory=dict)
    removed: frozenset[str] = frozenset()

    @classmethod
    def unchanged(cls, locked: Mapping[str, SeriesView]) -> Upstream:
        """An archive that serves exactly what was locked."""
        return cls(selected=dict(locked))

    def accounts_for(self, series_uid: str) -> bool:
        """True when the series' presence upstream is known."""
        return (
            series_uid in self.selected
            or series_uid in self.deselected
            or series_uid in self.hidden
            or series_uid in self.removed
        )


def diff(locked: Mapping[str, SeriesView], upstream: Upstream) -> tuple[Finding, ...]:
    """Every difference between the lock and upstream, sorted.

    Series added and metadata changed come from :func:`nbia_audit.lock.changes.compare`,
    the comparison ``lock --check`` makes; drift adds the images and the reasons a series
    left (deselected, hidden, removed).
    """
    changes = compare(locked, upstream.selected)
    found: list[Finding] = [_added(upstream.selected[uid]) for uid in changes.added]
    found += [f for uid, fields in changes.fields for f in _metadata(uid, fields)]
    for uid, old in locked.items():
        if uid in upstream.selected:
            found += _content_findings(old, upstream.selected[uid])
        elif uid in upstream.deselected:
            new = upstream.deselected[uid]
            found.append(
                Finding(
                    FindingKind.SERIES_REMOVED,
                    series_uid=uid,
                    detail="still served, but the spec no longer resolves to it",
                )
            )
            found += metadata_findings(uid, old.meta, new.meta, content_changed=True)
        elif uid in upstream.hidden:
            found.append(_hidden(old, upstream.hidden[uid]))
        elif uid in upstream.removed:
            found.append(
                Finding(
                    FindingKind.SERIES_REMOVED,
                    series_uid=uid,
                    detail="deleted: not served, and the archive has no image of it left",
                )
            )
    return tuple(sorted(found))


def _added(view: SeriesView) -> Finding:
    m = view.meta
    return Finding(
        FindingKind.SERIES_ADDED,
        series_uid=view.series_uid,
        new=view.series_hash or "",
        detail=(
            f"{m.collection} / {m.patient_id} / study {m.study_uid}: {m.modality} "
            f"{m.description!r}, {m.image_count} images, released {m.released or '?'}"
        ),
    )


def _hidden(old: SeriesView, current_hash: str) -> Finding:
    if current_hash == old.series_hash:
        return Finding(
            FindingKind.SERIES_HIDDEN,
            series_uid=old.series_uid,
            detail="exists but is no longer served (visibility withdrawn); its images are "
            "unchanged (series hash, which ignores visibility, matches the lock)",
        )
    return Finding(
        FindingKind.SERIES_HIDDEN,
        series_uid=old.series_uid,
        old=old.series_hash or "",
        new=current_hash,
        detail="exists but is no longer served (visibility withdrawn); its images changed "
        "too (series hash differs), which cannot be looked into while it is hidden",
    )


def _content_findings(old: SeriesView, new: SeriesView) -> list[Finding]:
    if old.images is not None and new.images is not None:
        # Compared even under an equal hash: the hash commits to the stored MD5 strings, not
        # to the UIDs, so an image swapped for one with the same string (NULL, say) leaves
        # it unchanged.
        found = image_findings(old.series_uid, old.images, new.images)
        if found:
            return found
    if new.series_hash is None or new.series_hash == old.series_hash:
        return []
    # No per-image pins (a series-only lock), or the images were not looked at: say what is
    # known, at series level, rather than guess which images changed.
    why = (
        "the lock pins no images of this series (series-only), so which images changed "
        "cannot be told; lock with images, or fetch, to see them"
        if old.images is None
        else "the series hash changed but its image list and MD5s did not"
    )
    return [
        Finding(
            FindingKind.IMAGE_CHANGED,
            series_uid=old.series_uid,
            old=old.series_hash or "",
            new=new.series_hash,
            detail=f"series content changed ({old.meta.image_count} -> "
            f"{new.meta.image_count} images listed); {why}",
        )
    ]


def image_findings(
    series_uid: str, old: Mapping[str, str | None], new: Mapping[str, str | None]
) -> list[Finding]:
    """Images added, removed and changed (same SOPInstanceUID, another stored MD5 string).

    Stored strings compare verbatim (protocol §3): a value that only lost its leading zeros
    is a change of what the archive stores (every hash above it changes), reported with a
    detail saying the content is the same.
    """
    found = [
        Finding(FindingKind.IMAGE_ADDED, series_uid=series_uid, sop_uid=sop, new=_md5(new[sop]))
        for sop in sorted(set(new) - set(old))
    ]
    found += [
        Finding(FindingKind.IMAGE_REMOVED, series_uid=series_uid, sop_uid=sop, old=_md5(old[sop]))
        for sop in sorted(set(old) - set(new))
    ]
    for sop in sorted(set(old) & set(new)):
        before, after = old[sop], new[sop]
        if before != after:
            found.append(
                Finding(
                    FindingKind.IMAGE_CHANGED,
                    series_uid=series_uid,
                    sop_uid=sop,
                    old=_md5(before),
                    new=_md5(after),
                    detail=_md5_change(before, after),
                )
            )
    return found


def _md5(value: str | None) -> str:
    return "NULL" if value is None else value


def _md5_change(before: str | None, after: str | None) -> str:
    same = normalise_archive_md5(before)
    if same is not None and same == normalise_archive_md5(after):
        return (
            "same content: only the archive's stored MD5 string changed (leading zeros or "
            "case, protocol §3); every hash above it changes"
        )
    if after is None or not after.strip():
        return "the archive no longer stores an MD5 for this image"
    return "new content (another MD5)"


def metadata_findings(
    series_uid: str, old: SeriesMeta, new: SeriesMeta, *, content_changed: bool
) -> list[Finding]:
    """One ``metadata-changed`` per differing field, with old and new values.

    Image count and size follow from the images, so they are reported only when the content
    is proven unchanged (otherwise the image findings explain them).
    """
    return _metadata(series_uid, field_changes(old, new, content_changed=content_changed))


def _metadata(series_uid: str, changes: Iterable[FieldChange]) -> list[Finding]:
    return [
        Finding(
            FindingKind.METADATA_CHANGED,
            series_uid=series_uid,
            detail=c.label,
            old=c.old,
            new=c.new,
        )
        for c in changes
    ]


@dataclass(frozen=True, slots=True)
class Reach:
    """Which of the spec's selectors could take one series in or out, judged by the series'
    own locked fields (computed by ``drift_select.reach_of``).

    - ``by_fields``: a selector whose answer follows from those fields alone (collection,
      study, UID list, manifest, DOI) selects it;
    - ``external``: a cart, search or text selector whose filters it passes could have;
    - ``excluded``: an exclude selector could take it out.
    """

    by_fields: bool = False
    external: bool = False
    excluded: bool = False


def deselection_explained(old: SeriesMeta, new: SeriesMeta, reach: Reach) -> bool:
    """Whether a series that is still served may really have left the spec's resolution.

    Decided for this series alone. A changed field the spec can select on explains it, and
    so does an exclude that could now take it out. Otherwise, if a selector that reads only
    the series' unchanged fields selects it, the spec must still resolve to it: the listing
    that left it out is not trusted (it may be an empty or short answer, protocol §4.3) and
    the series is reported as not checked, never as removed. Only a series that nothing but
    a cart, search or text selector could have selected may leave without a visible cause.
    """
    if any(f.selects and getattr(old, f.name) != getattr(new, f.name) for f in FIELDS):
        return True
    if reach.excluded:
        return True
    if reach.by_fields:
        return False
    return reach.external


def swap_blind(images: Mapping[str, str | None]) -> bool:
    """True when the series hash cannot see an image swapped for another one.

    The hash commits to the stored MD5 strings only (protocol §1.3). Real MD5s differ for
    different files (the SOPInstanceUID is inside the bytes), but a NULL, blank or repeated
    stored value does not: such a series' image list must be looked at.
    """
    values = list(images.values())
    missing = any(v is None or not v.strip() for v in values)
    return missing or len(set(values)) < len(values)


def views_of(
    series: Iterable[LockedSeries], images: Mapping[str, Mapping[str, str | None]]
) -> Iterator[SeriesView]:
    """The lock's series as views; images only where the lock pins them."""
    for s in series:
        pinned = images.get(s.series_uid, {}) if s.images_pinned else None
        yield SeriesView(s.series_uid, SeriesMeta.from_locked(s), s.series_hash, pinned)
