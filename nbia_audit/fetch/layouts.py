"""Where fetched images go: the folder layouts and the user template, with safe names.

Every path is computed from the lock's metadata and the values read from each image's DICOM
header, never from a ZIP member name (protocol §2.2: those are positional counters). Every
field value is sanitised before it becomes part of a path: no separators, no ``.``/``..``,
no control characters, bounded length, so no archive string can climb out of the
destination or hide a file.

Layouts (protocol §9.1 for the NBIA Data Retriever's two):

* ``classic``      ``<Collection>/<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/``
* ``descriptive``  ``<Collection>/<PatientID>/<StudyPart>/<SeriesPart>/``
* ``flat``         ``<SeriesInstanceUID>/``
* a template such as ``{collection}/{patient}/{series_uid}/{instance_number:>04}.dcm``

Files are named ``<SOPInstanceUID>.dcm`` unless the template's last component uses an image
field (``{sop_uid}`` or ``{instance_number}``), in which case that component names the file.
"""

from __future__ import annotations

import functools
import string
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath

from nbia_audit.dicom.fields import HeaderValues, read_header_values
from nbia_audit.errors import SpecError
from nbia_audit.models import LockedSeries
from nbia_audit.store.statefolder import STATE_DIR

__all__ = [
    "BUILTIN_LAYOUTS",
    "FIELD_NAMES",
    "ImageFields",
    "Layout",
    "SeriesFields",
    "image_paths",
    "parse_layout",
    "sanitise",
    "series_fields",
]

MAX_FIELD = 120  # UTF-8 bytes of one field value: a UID (64) fits, two fit in a component
MAX_COMPONENT = 255  # bytes of one path component (ext4, APFS, NTFS)
_FORBIDDEN = frozenset('/\\:*?"<>|')  # separators here and on Windows/SMB shares
_NBIA_CLEAN = frozenset(string.ascii_letters + string.digits + " .-")
_IMAGE_FIELDS = frozenset({"sop_uid", "instance_number"})
_HEADER_SERIES_FIELDS = frozenset(
    {"study_date", "series_date", "study_description", "study_id", "study_part"}
)


@dataclass(frozen=True, slots=True)
class SeriesFields:
    """What a layout may use about a series: the lock's metadata and its images' headers.

    Dates are ``YYYYMMDD`` as DICOM stores them, ``""`` when unknown.
    """

    collection: str
    patient: str
    study_uid: str
    series_uid: str
    modality: str = ""
    series_number: str = ""
    series_description: str = ""
    body_part: str = ""
    study_date: str = ""
    series_date: str = ""
    study_description: str = ""
    study_id: str = ""


@dataclass(frozen=True, slots=True)
class ImageFields:
    """What a layout may use about one image, read from its DICOM header."""

    sop_uid: str
    instance_number: str = ""


_SERIES_NAMES = tuple(f.name for f in fields(SeriesFields))
_COMPUTED = ("study_part", "series_part")
FIELD_NAMES: tuple[str, ...] = (*_SERIES_NAMES, *_COMPUTED, "sop_uid", "instance_number")

BUILTIN_LAYOUTS: dict[str, str] = {
    "classic": "{collection}/{patient}/{study_uid}/{series_uid}/{sop_uid}.dcm",
    "descriptive": "{collection}/{patient}/{study_part}/{series_part}/{sop_uid}.dcm",
    "flat": "{series_uid}/{sop_uid}.dcm",
}


def sanitise(value: str) -> str:
    """Make ``value`` safe as (part of) one path component; ``"NA"`` when nothing is left.

    Separators, Windows-reserved characters and control characters become ``-``; leading
    and trailing dots and spaces go (no ``..``, no hidden files, nothing Windows refuses);
    the result is cut to ``MAX_FIELD`` UTF-8 bytes (at a character boundary), so a layout
    whose components hold one field each never exceeds a file system's name limit.
    """
    text = unicodedata.normalize("NFC", value)
    cleaned = "".join(
        "-" if ch in _FORBIDDEN or unicodedata.category(ch).startswith("C") else ch for ch in text
    )
    cut = cleaned.strip(" .").encode("utf-8")[:MAX_FIELD].decode("utf-8", errors="ignore")
    return cut.strip(" .") or "NA"


def _nbia_clean(value: str) -> str:
    # DownloadServletV4#cleanStr keeps [A-Za-z0-9 .-]; the server sends "NA" for an empty
    # description or StudyID (protocol §9.1), so the Data Retriever shows "NA".
    return "".join(ch for ch in value if ch in _NBIA_CLEAN).strip() or "NA"


def _part(value: str) -> str:
    # LocalSeriesDownloader#getPartOfName: empty or "null" parts are left out.
    return "" if value in ("", "null") else value + "-"


def _desc_part(value: str) -> str:
    # getDescPartOfName: "/" -> "-", cut to 53 characters.
    text = value.replace("/", "-")
    return "" if text in ("", "null", "-") else text[:53] + "-"


def _mm_dd_yyyy(dicom_date: str) -> str:
    text = dicom_date.strip()
    if len(text) != 8 or not text.isdigit():
        return ""
    return f"{text[4:6]}-{text[6:8]}-{text[:4]}"


def _series_number(raw: str) -> str:
    # The Data Retriever prints NBIA's double column: 3 -> "3.000000".
    text = raw.strip()
    try:
        return f"{float(text):.6f}" if text else ""
    except ValueError:
        return _nbia_clean(text)


def _iso_date(dicom_date: str) -> str:
    text = dicom_date.strip()
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text


def study_part(s: SeriesFields) -> str:
    """``[StudyDate-][StudyID-][StudyDesc53-]`` + the StudyInstanceUID's last 5 characters."""
    return (
        _part(_mm_dd_yyyy(s.study_date))
        + _part(_nbia_clean(s.study_id))
        + _desc_part(_nbia_clean(s.study_description))
        + s.study_uid[-5:]
    )


def series_part(s: SeriesFields) -> str:
    """``[SeriesNumber-][SeriesDesc53-]`` + the SeriesInstanceUID's last 5 characters."""
    return (
        _part(_series_number(s.series_number))
        + _desc_part(_nbia_clean(s.series_description))
        + s.series_uid[-5:]
    )


@functools.lru_cache(maxsize=64)
def _series_values(s: SeriesFields) -> dict[str, str]:
    # Computed once per series (a series has thousands of images); callers copy it.
    raw = {name: str(getattr(s, name)) for name in _SERIES_NAMES}
    raw["study_date"], raw["series_date"] = _iso_date(s.study_date), _iso_date(s.series_date)
    raw.update(study_part=study_part(s), series_part=series_part(s))
    return {name: sanitise(value) for name, value in raw.items()}


def _values(s: SeriesFields, i: ImageFields) -> dict[str, str]:
    values = dict(_series_values(s))
    values.update(sop_uid=sanitise(i.sop_uid), instance_number=sanitise(i.instance_number))
    return values


@dataclass(frozen=True, slots=True)
class Layout:
    """A parsed layout: path components with ``{field}`` placeholders.

    Build one with :func:`parse_layout`.
    """

    name: str  # "classic", "descriptive", "flat" or "template"
    template: str
    components: tuple[str, ...]
    used: frozenset[str]

    @property
    def needs_series_header(self) -> bool:
        """True when a series-level value must be read from an image header."""
        return bool(self.used & _HEADER_SERIES_FIELDS)

    @property
    def needs_image_header(self) -> bool:
        """True when each image's own header value is needed (``instance_number``)."""
        return "instance_number" in self.used

    @property
    def static(self) -> bool:
        """True when the lock alone fixes every path (SOP UIDs are pinned)."""
        return not (self.needs_series_header or self.needs_image_header)

    def path(self, series: SeriesFields, image: ImageFields) -> PurePosixPath:
        """The image's path relative to the destination.

        Raises:
            SpecError: a component would be longer than a file system allows.
        """
        values = _values(series, image)
        parts = []
        for component in self.components:
            text = component.format_map(values)
            if text in (".", "..") or "/" in text or "\\" in text:
                raise _layout_error(self.template, f"a component became {text!r}")
            if len(text.encode("utf-8")) > MAX_COMPONENT:
                raise _layout_error(
                    self.template, f"{text[:40]!r}... is longer than {MAX_COMPONENT} bytes"
                )
            parts.append(text)
        return PurePosixPath(*parts)


def parse_layout(text: str) -> Layout:
    """Parse ``classic``, ``descriptive``, ``flat`` or a template with ``{field}``s.

    Raises:
        SpecError: an unknown field, a bad format spec, an absolute path, an empty or
            ``..`` component, or a backslash/control character in the template.
    """
    name = text.strip()
    template = BUILTIN_LAYOUTS.get(name, name.rstrip("/"))  # "{series_uid}/" names a folder
    kind = name if name in BUILTIN_LAYOUTS else "template"
    if not template:
        raise _layout_error(text, "the layout is empty")
    if "{" not in template:
        raise _layout_error(
            text, f"not a layout name ({', '.join(BUILTIN_LAYOUTS)}) nor a template"
        )
    if template.startswith("/") or "\\" in template or any(ord(c) < 32 for c in template):
        raise _layout_error(text, "a template is a relative path with / separators")
    components = tuple(template.split("/"))
    if components[0] == STATE_DIR:
        raise _layout_error(text, f"{STATE_DIR}/ holds nbia-audit's own state, not images")
    used: set[str] = set()
    for component in components:
        used |= _check_component(text, component)
    if not used & _IMAGE_FIELDS or not _names_files(components[-1]):
        components = (*components, "{sop_uid}.dcm")
        used.add("sop_uid")
    return Layout(kind, template, components, frozenset(used))


def _names_files(component: str) -> bool:
    names = {f for _, f, _, _ in string.Formatter().parse(component) if f is not None}
    return bool(names & _IMAGE_FIELDS)


def _check_component(text: str, component: str) -> set[str]:
    if component.strip(" ") in ("", ".", ".."):
        raise _layout_error(text, f"the path component {component!r} is empty, '.' or '..'")
    used: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(component))
    except ValueError as exc:
        raise _layout_error(text, f"bad braces in {component!r} ({exc})") from None
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in FIELD_NAMES:
            raise _layout_error(
                text, f"unknown field {{{field}}}; fields are {', '.join(FIELD_NAMES)}"
            )
        if conversion or (spec and ("{" in spec or "/" in spec or "\\" in spec)):
            raise _layout_error(
                text, f"{{{field}}}: conversions, nested fields and separators are not allowed"
            )
        try:
            format("sample", spec or "")
        except ValueError as exc:
            raise _layout_error(text, f"{{{field}:{spec}}}: {exc}") from None
        used.add(field)
    return used


def _layout_error(text: str, message: str) -> SpecError:
    return SpecError(
        message,
        path="--layout",
        hint=f"got {text!r}; use classic, descriptive, flat or e.g. "
        "'{collection}/{patient}/{series_uid}/{instance_number:>04}.dcm'",
    )


def series_fields(series: LockedSeries, header: HeaderValues | None = None) -> SeriesFields:
    """The layout values of a series: the lock's metadata, completed from an image header.

    The lock's value wins where it has one; the header supplies what the lock does not hold
    (study date, ID and description, series date) and fills empty lock values.
    """
    h = header or HeaderValues()
    return SeriesFields(
        collection=series.collection,
        patient=series.patient_id,
        study_uid=series.study_uid,
        series_uid=series.series_uid,
        modality=series.modality or h.modality,
        series_number=series.series_number or h.series_number,
        series_description=series.description or h.series_description,
        body_part=series.body_part,
        study_date=h.study_date,
        series_date=h.series_date,
        study_description=h.study_description,
        study_id=h.study_id,
    )


def image_paths(
    layout: Layout, series: LockedSeries, files: Mapping[str, Path]
) -> dict[str, PurePosixPath]:
    """Each image's path under the destination, by SOPInstanceUID.

    ``files`` maps every SOPInstanceUID of the series to a verified copy of the image; its
    header is read only when the layout needs values the lock does not hold (the series
    values from the image with the lowest SOPInstanceUID, so every run agrees).

    Raises:
        SpecError: the layout makes a path component longer than file systems allow.
    """
    header = None
    if layout.needs_series_header and files:
        header = read_header_values(files[min(files)])
    values = series_fields(series, header)
    paths = {}
    for sop, path in files.items():
        instance = read_header_values(path).instance_number if layout.needs_image_header else ""
        paths[sop] = layout.path(values, ImageFields(sop, instance))
    return paths
