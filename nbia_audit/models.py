"""Typed records shared across layers: what a lock pins.

A lock pins series (with their NBIA series hash) and, unless it was made with
``--series-only``, every image of each series with the archive's MD5 string verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HashNode", "LockHeader", "LockedImage", "LockedLicense", "LockedSeries", "Problem"]

# 2: the header carries ``metadata-digest`` (a digest of what the database holds beyond the
# text lock). Format 1 locks are still read; their database metadata is not covered.
LOCK_FORMAT = 2


@dataclass(frozen=True, slots=True)
class LockedSeries:
    """One pinned series and the metadata a paper needs about it."""

    series_uid: str
    collection: str
    patient_id: str
    study_uid: str
    modality: str
    description: str
    series_number: str
    body_part: str
    manufacturer: str
    image_count: int
    bytes: int
    series_hash: str  # NBIA getMD5Hierarchy for the series, verbatim
    released: str  # ISO date (YYYY-MM-DD) or ""
    max_submission: str  # ISO timestamp or ""
    license_name: str
    license_url: str
    doi: str
    third_party: bool
    images_pinned: bool  # False in a --series-only lock until fetch fills the images in


@dataclass(frozen=True, slots=True)
class LockedImage:
    """One pinned image: its SOPInstanceUID and the archive's stored MD5 string verbatim."""

    sop_uid: str
    series_uid: str
    archive_md5: str | None  # None: the archive stores NULL (protocol §1.3)
    size: int | None = None  # bytes, when known (fetch records it)


@dataclass(frozen=True, slots=True)
class HashNode:
    """A study, patient or collection hash computed from the lock, and what the archive said.

    ``archive_hash`` is None when the node was not compared (the selection does not cover
    the whole node, or, for a collection, the archive's nightly value was not asked for).
    """

    level: str  # "study" | "patient" | "collection"
    key: str  # study UID, "<collection>/<patient id>", or collection name
    computed_hash: str
    archive_hash: str | None
    covers_whole_node: bool


@dataclass(frozen=True, slots=True)
class LockHeader:
    """The header of a lock: where it came from and a digest of everything it pins."""

    format: int
    name: str
    spec_digest: str
    server: str  # as written in the spec: public, nlst or a URL
    base_url: str
    api: str
    tool_version: str
    resolved_at: str  # ISO 8601 UTC, seconds
    root_digest: str
    series_count: int
    image_count: int
    total_bytes: int
    series_only: bool
    # sha256 over the database's series rows, licenses, hash nodes and problems (everything
    # the text lock does not already pin); "" in a format 1 lock.
    metadata_digest: str = ""


@dataclass(frozen=True, slots=True)
class Problem:
    """Something about the archive's own data found while locking, kept in the lock."""

    series_uid: str
    # A findings.ProblemKind; a str as read back from a lock, which keeps it as written.
    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class LockedLicense:
    """A license some locked series carries, as the archive described it (``getLicenses``)."""

    name: str  # the long name, as series carry it (LicenseName)
    short_name: str
    url: str
    commercial_use: str  # the archive's flag, verbatim (e.g. "YES"/"NO"); "" when unknown
