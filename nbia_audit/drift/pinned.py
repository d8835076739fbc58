"""The lock's pinned images as drift looks at them: SOP UID -> archive MD5, one series at a time.

Drift compares a series' pinned images with the archive's only where it must (a changed hash,
or a hash that cannot see a swap). The views it builds for every locked series therefore carry
a handle, not the images: :class:`SeriesImages` reads its series from the proven lock
(:class:`store.lockimages.ProvenImages`, proven again as it is read) when first looked at,
and keeps only the last series read (per thread), so drift never holds every image.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping

from nbia_audit.models import LockedImage

__all__ = ["PinnedImages", "SeriesImages"]


class PinnedImages(Mapping[str, "SeriesImages"]):
    """Series UID -> a handle on its pinned images; no image is read to build it."""

    def __init__(self, proven: Mapping[str, tuple[LockedImage, ...]]) -> None:
        self._proven = proven
        self._last = threading.local()

    def __len__(self) -> int:
        return len(self._proven)

    def __iter__(self) -> Iterator[str]:
        return iter(self._proven)

    def __contains__(self, key: object) -> bool:
        return key in self._proven

    def __getitem__(self, series_uid: str) -> SeriesImages:
        if series_uid not in self._proven:
            raise KeyError(series_uid)
        return SeriesImages(self, series_uid)

    def load(self, series_uid: str) -> dict[str, str | None]:
        """The series' SOP UID -> MD5, read (and proven) unless it was the last one read here."""
        last = getattr(self._last, "value", None)
        if last is not None and last[0] == series_uid:
            return last[1]  # type: ignore[no-any-return]
        loaded = {i.sop_uid: i.archive_md5 for i in self._proven[series_uid]}
        self._last.value = (series_uid, loaded)
        return loaded


class SeriesImages(Mapping[str, str | None]):
    """One series' pinned images, SOP UID -> archive MD5, read when looked at."""

    __slots__ = ("_source", "_uid")

    def __init__(self, source: PinnedImages, series_uid: str) -> None:
        self._source = source
        self._uid = series_uid

    def __getitem__(self, sop_uid: str) -> str | None:
        return self._source.load(self._uid)[sop_uid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._source.load(self._uid))

    def __len__(self) -> int:
        return len(self._source.load(self._uid))

    def __contains__(self, key: object) -> bool:
        return key in self._source.load(self._uid)

    def __repr__(self) -> str:
        return f"SeriesImages({self._uid!r})"
