"""Check a downloaded series ZIP against its pins, extracting each image safely.

A series ZIP from ``getImageWithMD5Hash`` holds the images under positional names and, last,
``md5hashes.csv`` with the archive's stored MD5 string of each (protocol §2.3). A failure in
the middle of the server's stream is silent: the ZIP is well-formed but short, usually
without the CSV (§2.1). So a ZIP is accepted only when

* it holds ``md5hashes.csv`` and nothing but plain, flat file names;
* its image count equals the CSV's, the lock's and the archive's ``getSeriesSize`` count;
* every image's computed MD5 equals its CSV value and the lock's (the §3 comparison rule);
* every image's SOPInstanceUID, read from its header, is pinned for the series (and the
  header names this series);
* the series hash recomputed from the CSV strings, verbatim, equals the pinned one (§1.3).

Member names are never used as paths: each member is streamed (``ZipFile.open``) into a
temporary file whose name this module chooses, so a hostile name (``..``, an absolute path,
a link) cannot write anywhere. Such names fail the check outright.
"""

from __future__ import annotations

import lzma
import re
import stat
import zipfile
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from nbia_audit.client.shapes import md5_csv
from nbia_audit.dicom.header import NotDicomError, read_identity
from nbia_audit.digests import digest_stream
from nbia_audit.errors import ApiProtocolError
from nbia_audit.merkle import MATCHES, ArchiveMd5Check, check_archive_md5, series_hash

__all__ = [
    "CSV_NAME",
    "ExtractedImage",
    "SeriesCheck",
    "SeriesExpectation",
    "check_series_zip",
    "unsafe_member",
]

CSV_NAME = "md5hashes.csv"
_NOT_IMAGES = frozenset({CSV_NAME, "LICENSE"})  # getImage adds LICENSE (protocol §2.2)
_CSV_LIMIT = 64 * 1024 * 1024  # a CSV row is < 200 bytes: 300k images fit easily
_DRIVE = re.compile(r"^[A-Za-z]:")
# What zipfile raises on a hostile or corrupt archive: bad structure, an unsupported version,
# compression method or encryption (NotImplementedError, RuntimeError), a corrupt deflate or
# lzma stream, a cut-off stream. (bz2 raises OSError; see _GuardedMember.)
_ZIP_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    NotImplementedError,
    RuntimeError,
)


@dataclass(frozen=True, slots=True)
class SeriesExpectation:
    """What the lock and the archive say a series ZIP must hold.

    ``pinned`` maps each pinned SOPInstanceUID to its archive MD5 string verbatim; it is
    None for a series pinned by its hash only (``lock --series-only``).
    """

    series_uid: str
    series_hash: str
    image_count: int
    archive_objects: int | None
    pinned: Mapping[str, str | None] | None
    max_bytes: int


@dataclass(frozen=True, slots=True)
class ExtractedImage:
    """One image streamed out of the ZIP into a temporary file, and what it proved to be."""

    member: str
    temp_path: Path
    sop_uid: str
    header_series_uid: str
    md5: str
    xxh3_128: str
    size: int
    archive_md5: str | None  # md5hashes.csv's string, verbatim (None: empty field)


@dataclass(frozen=True, slots=True)
class SeriesCheck:
    """The outcome: the extracted images, and every reason the ZIP cannot be accepted."""

    images: tuple[ExtractedImage, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why a member cannot be an NBIA image or CSV entry, or None when it is a plain name."""
    name = info.filename
    if not name or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "an empty name or control characters"  # first: is_dir() fails on ""
    if info.is_dir():
        return "a folder entry"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    if name.startswith("/") or _DRIVE.match(name):
        return "an absolute path"
    if ".." in re.split(r"[/\\]", name):
        return "a '..' component"
    if "/" in name or "\\" in name:
        return "a folder path (NBIA sends plain file names)"
    return None


def check_series_zip(zip_path: Path, expect: SeriesExpectation, workdir: Path) -> SeriesCheck:
    """Check the ZIP at ``zip_path`` and extract its images into ``workdir``.

    ``workdir`` must exist and be empty; the caller removes it (and the images) afterwards
    unless it places them.

    Raises:
        OSError: ``workdir`` cannot be written (disk full, permissions).
    """
    try:
        with zipfile.ZipFile(zip_path) as archive:
            return _check_open_zip(archive, expect, workdir)
    # UnicodeDecodeError: a member name flagged UTF-8 that is not. A member's open and read
    # errors are handled where they happen.
    except (*_ZIP_READ_ERRORS, UnicodeDecodeError) as exc:
        return SeriesCheck((), (f"the download is not a readable ZIP ({exc})",))


def _check_open_zip(
    archive: zipfile.ZipFile, expect: SeriesExpectation, workdir: Path
) -> SeriesCheck:
    infos = archive.infolist()
    unsafe = [
        f"hostile or malformed ZIP refused: member {i.filename!r} is {why}"
        for i in infos
        if (why := unsafe_member(i))
    ]
    if unsafe:
        return SeriesCheck((), tuple(unsafe))
    members = [i for i in infos if i.filename not in _NOT_IMAGES]
    problems = _structure_problems(infos, members, expect)
    if problems:
        return SeriesCheck((), tuple(problems))
    listed = _read_csv(archive)
    if isinstance(listed, str):
        return SeriesCheck((), (listed,))
    problems = _listing_problems(listed, members, expect)
    if any(p.startswith("md5hashes.csv") for p in problems):
        return SeriesCheck((), tuple(problems))
    images: list[ExtractedImage] = []
    for index, info in enumerate(members, start=1):
        image, problem = _extract(archive, info, workdir / f"{index:06d}.dcm", listed)
        if problem:
            problems.append(problem)
        if image is not None:
            images.append(image)
    problems += _image_problems(images, expect)
    return SeriesCheck(tuple(images), tuple(problems))


def _structure_problems(
    infos: list[zipfile.ZipInfo],
    members: list[zipfile.ZipInfo],
    expect: SeriesExpectation,
) -> list[str]:
    problems = []
    names = Counter(i.filename for i in infos)
    problems += [f"ZIP member {n!r} appears {c} times" for n, c in sorted(names.items()) if c > 1]
    if CSV_NAME not in names:
        problems.append(
            f"{CSV_NAME} is missing: the archive's stream was cut short (protocol §2.1)"
        )
    counts = {len(members), expect.image_count}
    if expect.archive_objects is not None:
        counts.add(expect.archive_objects)
    if len(counts) > 1:
        archive_says = "unknown" if expect.archive_objects is None else str(expect.archive_objects)
        problems.append(
            f"the ZIP holds {len(members)} images, the lock pins {expect.image_count}, "
            f"the archive reports {archive_says}"
        )
    declared = sum(i.file_size for i in members)
    if declared > expect.max_bytes:
        problems.append(
            f"the ZIP declares {declared} bytes of images, more than the {expect.max_bytes} "
            "this series can hold; refusing to extract it"
        )
    return problems


def _read_csv(archive: zipfile.ZipFile) -> dict[str, str | None] | str:
    """``{member name: MD5 string verbatim or None}``, or why the CSV is unusable."""
    info = archive.getinfo(CSV_NAME)
    if info.file_size > _CSV_LIMIT:
        return f"{CSV_NAME} is implausibly large ({info.file_size} bytes)"
    try:
        text = archive.read(info).decode("utf-8")
    except (*_ZIP_READ_ERRORS, UnicodeDecodeError, OSError) as exc:
        # OSError here is the ZIP's own offsets pointing outside it (nothing is written)
        return f"{CSV_NAME} is unreadable ({exc})"
    try:  # bounded fields, documented header and MD5 shapes (client.shapes)
        return md5_csv(text, CSV_NAME)
    except ApiProtocolError as exc:
        return str(exc)


def _listing_problems(
    listed: dict[str, str | None], members: list[zipfile.ZipInfo], expect: SeriesExpectation
) -> list[str]:
    problems = []
    names = {i.filename for i in members}
    if set(listed) != names:
        extra, absent = sorted(set(listed) - names), sorted(names - set(listed))
        problems.append(
            f"md5hashes.csv does not list exactly the ZIP's images (listed but absent: "
            f"{extra[:3]}, present but unlisted: {absent[:3]})"
        )
        return problems
    recomputed = series_hash(listed.values())
    if recomputed != expect.series_hash:
        problems.append(
            f"the series hash recomputed from md5hashes.csv is {recomputed or '(empty)'}, the "
            f"lock pins {expect.series_hash or '(empty)'}: the series changed upstream since it "
            "was locked (re-lock with --upgrade to take the new version)"
        )
    return problems


def _extract(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    target: Path,
    listed: dict[str, str | None],
) -> tuple[ExtractedImage | None, str | None]:
    """Stream one member into ``target`` (a name we chose), digesting it on the way."""
    try:
        source = archive.open(info)
    except (*_ZIP_READ_ERRORS, OSError) as exc:  # OSError: an offset outside the ZIP
        return None, f"ZIP member {info.filename!r} is corrupt ({exc})"
    try:
        with source, open(target, "xb") as sink:
            digest = digest_stream(cast("IO[bytes]", _GuardedMember(source)), copy_to=sink)
    except (_MemberReadError, *_ZIP_READ_ERRORS) as exc:
        return None, f"ZIP member {info.filename!r} is corrupt ({exc})"
    try:
        identity = read_identity(target)
    except NotDicomError as exc:
        return None, f"ZIP member {info.filename!r} is not a readable DICOM file ({exc})"
    image = ExtractedImage(
        member=info.filename,
        temp_path=target,
        sop_uid=identity.sop_uid,
        header_series_uid=identity.series_uid,
        md5=digest.md5,
        xxh3_128=digest.xxh3_128,
        size=digest.size,
        archive_md5=listed.get(info.filename),
    )
    return image, None


class _MemberReadError(Exception):
    """Reading a member's bytes failed: the ZIP is corrupt (an OSError here is not the disk)."""


class _GuardedMember:
    """A member's stream whose read errors (bz2 and lzma raise OSError and LZMAError on a
    corrupt stream) cannot be mistaken for a failed write of the extracted file."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source

    def readinto(self, buffer: bytearray) -> int:
        try:
            return self._source.readinto(buffer)  # type: ignore[attr-defined, no-any-return]
        except (*_ZIP_READ_ERRORS, OSError) as exc:
            raise _MemberReadError(str(exc)) from exc


def _image_problems(images: list[ExtractedImage], expect: SeriesExpectation) -> list[str]:
    problems = []
    seen = Counter(image.sop_uid for image in images)
    problems += [f"SOPInstanceUID {sop} appears {n} times" for sop, n in seen.items() if n > 1]
    for image in images:
        label = f"image {image.sop_uid} ({image.member})"
        if image.header_series_uid != expect.series_uid:
            problems.append(
                f"{label}: its header names series {image.header_series_uid or '(none)'}"
            )
        problems += _md5_problem(label, image.md5, "md5hashes.csv", image.archive_md5)
        if expect.pinned is None:
            continue
        if image.sop_uid not in expect.pinned:
            problems.append(f"{label}: this SOPInstanceUID is not pinned for the series")
        else:
            problems += _md5_problem(label, image.md5, "the lock", expect.pinned[image.sop_uid])
    if expect.pinned is not None:
        missing = sorted(set(expect.pinned) - set(seen))
        problems += [f"image {sop}, pinned by the lock, is not in the ZIP" for sop in missing]
    return problems


def _md5_problem(label: str, computed: str, source: str, stored: str | None) -> list[str]:
    # Protocol §3: compare after strip/lower/zfill(32); a short archive value still matches.
    outcome = check_archive_md5(stored, computed)
    if outcome in MATCHES:
        return []
    if outcome is ArchiveMd5Check.ARCHIVE_MISSING:
        return [f"{label}: {source} has no MD5 for it (NULL), so its bytes cannot be verified"]
    if outcome is ArchiveMd5Check.ARCHIVE_MALFORMED:
        return [f"{label}: {source} has a malformed MD5 {stored!r}"]
    return [f"{label}: computed MD5 {computed} != {source}'s {stored}"]
