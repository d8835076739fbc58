"""Read and write NBIA ``.tcia`` manifests (version 3.x), as pure functions on text.

The format (protocol §6.1) is a Java-properties header, a ``ListOfSeriesToDownload=`` line,
then one SeriesInstanceUID per line::

    downloadServerUrl=https://nbia.cancerimagingarchive.net/nbia-download/servlet/DownloadServlet
    includeAnnotation=true
    noOfrRetry=4
    databasketId=manifest-1638281314414.tcia
    manifestVersion=3.0
    ListOfSeriesToDownload=
    1.3.6.1.4.1.14519.5.2.1.77448168097054134804408859683533100584

The list is read the way NBIA's own Java Data Retriever reads it, so both tools agree on which
series a manifest names: every character except ``[0-9.]`` is deleted from each line, and lines
that end up empty are skipped (``DM/StandaloneDMDispatcher.java#getSeriesList``). That makes a
``Series ID`` heading (seen in a real manifest), blank trailing lines, CRLF endings and a
missing final newline harmless. Unlike the Java reader, a line whose digits and dots do not form
a DICOM UID (empty component, over 64 characters) is an error naming the file and line, and a
line that lost characters other than whitespace is reported in ``Manifest.warnings``.

A manifest names series only; it holds no hashes, counts or sizes, so it is not a pin.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from nbia_audit.boundedinput import excerpt, read_bounded
from nbia_audit.errors import SpecError

__all__ = [
    "DEFAULT_DOWNLOAD_SERVER_URL",
    "Manifest",
    "format_manifest",
    "parse_manifest",
    "read_manifest",
]

MANIFEST_MAX_BYTES = 32 << 20
"""The largest manifest read: about 500,000 series, over twice NLST's 203,087 (the largest
collection), and read in under 300 MB."""

DEFAULT_DOWNLOAD_SERVER_URL = (
    "https://nbia.cancerimagingarchive.net/nbia-download/servlet/DownloadServlet"
)
"""The download server named by TCIA manifests made since 2022 (real samples)."""

_LIST_MARKER = "ListOfSeriesToDownload"
_NOT_UID_CHARS = re.compile(r"[^0-9.]")
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_UID_MAX_LENGTH = 64  # DICOM PS3.5 §9.1
_KNOWN_KEYS = frozenset(
    {
        "downloadServerUrl",
        "includeAnnotation",
        "noOfrRetry",
        "databasketId",
        "manifestVersion",
        "dataType",
    }
)


@dataclass(frozen=True, slots=True)
class Manifest:
    """The content of a ``.tcia`` manifest.

    ``series_uids`` keeps the file's order and any duplicates (see ``unique_series_uids``).
    ``retries`` is the header's ``noOfrRetry`` (sic). ``extra`` holds header keys this module
    does not interpret, in file order. ``warnings`` (ignored by ``==``) says which lines were
    read only after deleting characters, as the Java reader does.
    """

    series_uids: tuple[str, ...]
    include_annotation: bool = False
    download_server_url: str | None = None
    databasket_id: str | None = None
    manifest_version: str = "3.0"
    retries: int | None = None
    data_type: str | None = None
    extra: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)
    # The 1-based line each entry of ``series_uids`` was read from, so a later check (the
    # archive does not serve a UID) can name the line.
    lines: tuple[int, ...] = field(default=(), compare=False)

    def line_of(self, uid: str) -> int | None:
        """The first line that names ``uid``, if known."""
        for number, listed in zip(self.lines, self.series_uids, strict=False):
            if listed == uid:
                return number
        return None

    @property
    def unique_series_uids(self) -> tuple[str, ...]:
        """The series UIDs without repeats, in first-seen order."""
        return tuple(dict.fromkeys(self.series_uids))


@dataclass(frozen=True, slots=True)
class _HeaderLine:
    number: int
    key: str
    value: str


def read_manifest(path: str | Path) -> Manifest:
    """Read and parse the manifest file at ``path`` (the only function here that does I/O).

    Raises:
        SpecError: the file cannot be read or is not a valid version 3 manifest.
    """
    raw = read_bounded(Path(path), limit=MANIFEST_MAX_BYTES, what="manifest")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # Java's Properties default; UIDs are ASCII anyway
    del raw  # a large manifest is held once, as text, while it is parsed
    return parse_manifest(text, source=str(path))


def parse_manifest(text: str, *, source: str = "<manifest>") -> Manifest:
    """Parse manifest text; ``source`` names the file in error messages.

    Raises:
        SpecError: no ``ListOfSeriesToDownload=`` line, a malformed header line, an
            unsupported ``manifestVersion``, or a list line that is not a UID; the error
            names ``source`` and the 1-based line number.
    """
    lines = text.removeprefix("\ufeff").splitlines()
    header, marker_index, marker_rest = _read_header(lines, source)
    # Anything after "=" on the marker line is read as the first list line.
    numbered = [(marker_index + 1, marker_rest)]
    numbered += [(index + 1, lines[index]) for index in range(marker_index + 1, len(lines))]
    uids: list[str] = []
    found_on: list[int] = []
    warnings: list[str] = []
    for number, line in numbered:
        uid, warning = _read_uid_line(line, number, source)
        if uid:
            uids.append(uid)
            found_on.append(number)
        if warning:
            warnings.append(warning)
    built = _build(header, tuple(uids), tuple(warnings), source)
    return dataclasses.replace(built, lines=tuple(found_on))


def format_manifest(manifest: Manifest) -> str:
    """Render ``manifest`` as version 3.0 text with LF endings and a final newline.

    Missing header values get the portal's defaults (``noOfrRetry=4``, a TCIA download server
    URL, ``databasketId=manifest-nbia-audit.tcia``).
    """
    lines = [
        f"downloadServerUrl={manifest.download_server_url or DEFAULT_DOWNLOAD_SERVER_URL}",
        f"includeAnnotation={'true' if manifest.include_annotation else 'false'}",
        f"noOfrRetry={4 if manifest.retries is None else manifest.retries}",
        f"databasketId={manifest.databasket_id or 'manifest-nbia-audit.tcia'}",
    ]
    if manifest.data_type is not None:
        lines.append(f"dataType={manifest.data_type}")
    lines.extend(f"{key}={value}" for key, value in manifest.extra)
    lines.append(f"manifestVersion={manifest.manifest_version}")
    lines.append(f"{_LIST_MARKER}=")
    lines.extend(manifest.series_uids)
    return "\n".join(lines) + "\n"


def _read_header(lines: list[str], source: str) -> tuple[list[_HeaderLine], int, str]:
    """Return the header lines, the marker line's index and the text after its '='."""
    header: list[_HeaderLine] = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped[0] in "#!":  # blank lines and Java-properties comments
            continue
        key, separator, value = _split_property(stripped)
        if key == _LIST_MARKER:
            return header, index, value
        if not separator:
            raise SpecError(
                f"expected 'key=value' before '{_LIST_MARKER}=', got {_shorten(stripped)}",
                path=source,
                line=index + 1,
                hint="is this a .tcia manifest?",
            )
        header.append(_HeaderLine(index + 1, key, value))
    raise SpecError(
        f"no '{_LIST_MARKER}=' line, so no series are listed",
        path=source,
        line=len(lines) or None,
        hint="is this a .tcia manifest (version 3)?",
    )


def _split_property(line: str) -> tuple[str, str, str]:
    # Java properties end the key at the first '=' or ':' (whitespace around is ignored).
    cut = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
    if cut < 0:
        return line, "", ""
    return line[:cut].strip(), line[cut], line[cut + 1 :].strip()


def _read_uid_line(line: str, number: int, source: str) -> tuple[str, str | None]:
    """Apply the Java reader's rule to one list line; return (uid or "", warning or None)."""
    uid = _NOT_UID_CHARS.sub("", line)
    if not uid:
        return "", None
    if not _UID.fullmatch(uid) or len(uid) > _UID_MAX_LENGTH:
        raise SpecError(
            f"{_shorten(line.strip())} is not a SeriesInstanceUID (digits and single dots, at "
            f"most {_UID_MAX_LENGTH} characters)",
            path=source,
            line=number,
        )
    dropped = re.sub(r"[0-9.\s]", "", line)
    if dropped:
        return uid, f"{source}:{number}: read {uid} from {_shorten(line.strip())}"
    return uid, None


def _build(
    header: list[_HeaderLine], uids: tuple[str, ...], warnings: tuple[str, ...], source: str
) -> Manifest:
    values = {h.key: h for h in header}  # a repeated key: the last one wins, as in Java
    version = values["manifestVersion"].value if "manifestVersion" in values else "3.0"
    if not version.startswith("3."):
        raise SpecError(
            f"manifestVersion={version} is not supported (only 3.x, the format since 2018)",
            path=source,
            line=values["manifestVersion"].number,
        )
    return Manifest(
        series_uids=uids,
        include_annotation=_boolean(values.get("includeAnnotation"), source),
        download_server_url=_value(values, "downloadServerUrl"),
        databasket_id=_value(values, "databasketId"),
        manifest_version=version,
        retries=_retries(values.get("noOfrRetry"), source),
        data_type=_value(values, "dataType"),
        extra=tuple((h.key, h.value) for h in header if h.key not in _KNOWN_KEYS),
        warnings=warnings,
    )


def _value(values: dict[str, _HeaderLine], key: str) -> str | None:
    line = values.get(key)
    return line.value if line is not None and line.value else None


def _boolean(line: _HeaderLine | None, source: str) -> bool:
    if line is None or not line.value:
        return False
    if line.value.lower() not in ("true", "false"):
        raise SpecError(
            f"includeAnnotation must be true or false, got {_shorten(line.value)}",
            path=source,
            line=line.number,
        )
    return line.value.lower() == "true"


def _retries(line: _HeaderLine | None, source: str) -> int | None:
    if line is None or not line.value:
        return None
    if not re.fullmatch(r"[0-9]+", line.value):
        raise SpecError(
            f"noOfrRetry must be a whole number, got {_shorten(line.value)}",
            path=source,
            line=line.number,
        )
    return int(line.value)


def _shorten(text: str) -> str:
    return excerpt(text)
