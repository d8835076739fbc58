"""What changed upstream since a lock, as one pure comparison (no I/O).

``lock --check`` (its reasons), re-locking (the ``+ - ~ m`` lines ``lock`` prints) and
``drift`` (its findings) all compare a locked series set with what the archive serves now
through :func:`compare` and :func:`field_changes`, over the one field table :data:`FIELDS`,
so none of them can report a change the others miss (docs/drift.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from nbia_audit.client.records import SeriesInfo
from nbia_audit.lock.pin import locked_series
from nbia_audit.models import LockedSeries

__all__ = [
    "FIELDS",
    "FIELD_LABELS",
    "Compared",
    "FieldChange",
    "LockChanges",
    "MetaField",
    "SeriesMeta",
    "SeriesState",
    "changes_upstream",
    "compare",
    "field_changes",
    "states_of",
]


@dataclass(frozen=True, slots=True)
class MetaField:
    """One descriptive field of a series that a change upstream can touch."""

    name: str  # the SeriesMeta attribute
    label: str  # how reports name it
    # Follows from the images: when the content changed, the content finding explains it.
    from_content: bool = False
    # A spec's sources and filters look at it: a change can take a series out of the spec.
    selects: bool = False
    # Moves when the archive re-publishes a series: a hint its content may have changed.
    hints_content: bool = False


# The one table of what is compared, in report order.
FIELDS: tuple[MetaField, ...] = (
    MetaField("collection", "collection", selects=True),
    MetaField("patient_id", "patient", selects=True),
    MetaField("study_uid", "study", selects=True),
    MetaField("modality", "modality", selects=True),
    MetaField("body_part", "body part", selects=True),
    MetaField("manufacturer", "manufacturer", selects=True),
    MetaField("description", "description"),
    MetaField("license", "license"),
    MetaField("doi", "DOI", selects=True),
    MetaField("released", "release date", selects=True, hints_content=True),
    MetaField("image_count", "image count", from_content=True, hints_content=True),
    MetaField("bytes", "size in bytes", from_content=True, hints_content=True),
)
FIELD_LABELS = {f.name: f.label for f in FIELDS}


@dataclass(frozen=True, slots=True)
class SeriesMeta:
    """The descriptive fields compared, as the lock records them (text, ISO dates), in the
    order of :data:`FIELDS`."""

    collection: str = ""
    patient_id: str = ""
    study_uid: str = ""
    modality: str = ""
    body_part: str = ""
    manufacturer: str = ""
    description: str = ""
    license: str = ""
    doi: str = ""
    released: str = ""
    image_count: int = 0
    bytes: int = 0

    @classmethod
    def from_locked(cls, series: LockedSeries) -> SeriesMeta:
        # Read through the table (the attributes are in its order, tests/lock/test_changes.py
        # checks), so a field added to FIELDS is compared everywhere at once. The lock keeps
        # a license as name and URL; both are compared, as one value.
        license = _license(series.license_name, series.license_url)
        values: list[Any] = [
            license if f.name == "license" else getattr(series, f.name) for f in FIELDS
        ]
        return cls(*values)

    @classmethod
    def from_info(cls, info: SeriesInfo) -> SeriesMeta:
        # The very mapping `lock` applies, so equal answers compare equal whichever listing
        # endpoint gave them.
        return cls.from_locked(locked_series(info, "", True))


def _license(name: str, url: str) -> str:
    return f"{name} <{url}>" if url else name


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field of one series that differs, with both values as text."""

    field: MetaField
    old: str
    new: str

    @property
    def label(self) -> str:
        return self.field.label


def field_changes(
    old: SeriesMeta, new: SeriesMeta, *, content_changed: bool
) -> tuple[FieldChange, ...]:
    """The fields that differ, in :data:`FIELDS` order.

    Image count and size follow from the images, so they are left out when the content
    changed (or is unknown): the content change already explains them.
    """
    return tuple(
        FieldChange(f, str(before), str(after))
        for f in FIELDS
        if not (content_changed and f.from_content)
        and (before := getattr(old, f.name)) != (after := getattr(new, f.name))
    )


class Compared(Protocol):
    """One series at one moment: its metadata and series hash (None: not known)."""

    @property
    def meta(self) -> SeriesMeta: ...

    @property
    def series_hash(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class SeriesState:
    """A plain :class:`Compared`."""

    meta: SeriesMeta
    series_hash: str | None


@dataclass(frozen=True, slots=True)
class LockChanges:
    """How what upstream serves differs from a lock, by SeriesInstanceUID."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()  # same series, different series hash
    # Same series, other metadata: (series UID, the fields that differ).
    fields: tuple[tuple[str, tuple[FieldChange, ...]], ...] = ()

    @property
    def metadata(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(series UID, the labels of the fields that differ), as ``lock`` prints them."""
        return tuple((uid, tuple(f.label for f in found)) for uid, found in self.fields)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.fields)


def compare(locked: Mapping[str, Compared], upstream: Mapping[str, Compared]) -> LockChanges:
    """Series added, removed, with other content, and with other metadata.

    A series whose upstream hash is unknown (None) is not reported as changed: that it could
    not be checked is the caller's to say.
    """
    both = sorted(set(locked) & set(upstream))
    changed = [u for u in both if _content_changed(locked[u], upstream[u]) is True]
    fields = []
    for uid in both:
        old, new = locked[uid], upstream[uid]
        moved = _content_changed(old, new) is not False
        found = field_changes(old.meta, new.meta, content_changed=moved)
        if found:
            fields.append((uid, found))
    return LockChanges(
        added=tuple(sorted(set(upstream) - set(locked))),
        removed=tuple(sorted(set(locked) - set(upstream))),
        changed=tuple(changed),
        fields=tuple(fields),
    )


def states_of(series: Iterable[LockedSeries]) -> dict[str, SeriesState]:
    """Locked series as compared, by SeriesInstanceUID."""
    return {s.series_uid: SeriesState(SeriesMeta.from_locked(s), s.series_hash) for s in series}


def changes_upstream(
    locked: Iterable[LockedSeries], listed: Mapping[str, SeriesInfo], hashes: Mapping[str, str]
) -> LockChanges:
    """How what the archive serves now differs from the locked series.

    ``listed`` is the spec's resolution now (the archive's listing of each series),
    ``hashes`` the live series hashes; a listed series without a live hash is not compared.
    """
    upstream = {
        uid: SeriesState(SeriesMeta.from_info(listed[uid]), digest)
        for uid, digest in hashes.items()
        if uid in listed
    }
    return compare(states_of(locked), upstream)


def _content_changed(old: Compared, new: Compared) -> bool | None:
    """True or False when both hashes are known, None when upstream's is not."""
    if new.series_hash is None:
        return None
    return new.series_hash != old.series_hash
