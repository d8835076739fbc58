"""The doctor's rows about one small public series: listings, formats, hashes and the ZIP.

Each row states what nbia-audit assumes (``expected``), what the archive answered, and a
verdict. The assumptions are the ones the client, lock and verify code are built on
(protocol §1, §2.3, §2.4, §5; docs/nbia-protocol-supplement.md). Rows run in order and
share what earlier rows learnt (:class:`SeriesFacts`); a row whose inputs are missing is
skipped, never passed.
"""

from __future__ import annotations

import csv
import enum
import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any

from nbia_audit.doctor.http import Answer, Prober
from nbia_audit.merkle import MATCHES, check_archive_md5, normalise_archive_md5, series_hash

__all__ = [
    "PER_IMAGE_LIMIT",
    "UNKNOWN_UID",
    "Check",
    "SeriesFacts",
    "Verdict",
    "check",
    "describe",
    "discover_series",
    "json_rows",
    "series_checks",
    "skip",
]

PER_IMAGE_LIMIT = 10
"""Per-image MD5 requests the doctor allows itself; a larger series skips those rows."""

UNKNOWN_UID = "2.25.0"
"""A well-formed UID that no archive holds (the 2.25 UUID arc with UUID 0)."""

_HASH = re.compile("[0-9a-f]{32}")
_CSV_NAME = "md5hashes.csv"
_UNPACKED_LIMIT = 2 * 1024**3  # a small series is far below; a ZIP bomb is not read
_CSV_HEADER = "Filename,MD5Hash"


class Verdict(enum.Enum):
    """The outcome of one row."""

    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"  # could not be judged here (no credentials, a missing input): never a pass


@dataclass(frozen=True, slots=True)
class Check:
    """One row of the doctor's table."""

    name: str  # stable identifier, e.g. "hash-from-csv"
    title: str
    expected: str
    answered: str
    verdict: Verdict

    def to_json(self) -> dict[str, str]:
        """The row as the JSON report writes it."""
        return {
            "check": self.name,
            "title": self.title,
            "expected": self.expected,
            "answered": self.answered,
            "verdict": self.verdict.value,
        }


@dataclass(slots=True)
class SeriesFacts:
    """What the rows learnt about the sample series, for the rows after them."""

    series_uid: str
    collection: str | None = None
    patient_id: str | None = None
    study_uid: str | None = None
    doi: str | None = None  # DataDescriptionURI
    license_name: str | None = None
    license_url: str | None = None
    image_count: int | None = None
    object_count: int | None = None
    sop_uids: list[str] = field(default_factory=list)
    archive_hash: str | None = None
    per_image: list[str] | None = None  # the stored MD5 strings, verbatim
    csv_rows: dict[str, str] | None = None  # zip entry name -> stored MD5, verbatim
    images: dict[str, bytes] | None = None  # zip entry name -> bytes


def describe(answer: Answer, note: str = "") -> str:
    """A short account of an answer: status, type, size, and an optional note."""
    kind = answer.content_type.split(";")[0].strip() or "no content type"
    size = "empty body" if not answer.body.strip() else f"{len(answer.body)} bytes"
    text = f"{answer.status}, {kind}, {size}"
    return f"{text}; {note}" if note else text


def json_rows(answer: Answer) -> list[dict[str, Any]] | None:
    """The answer as a list of JSON objects (an empty body is no rows), or None if it is not."""
    if not answer.body.strip():
        return []
    try:
        decoded = json.loads(answer.body)
    except ValueError:
        return None
    if isinstance(decoded, list) and all(isinstance(row, dict) for row in decoded):
        return decoded
    return None


def check(name: str, title: str, expected: str, answered: str, ok: bool) -> Check:
    """A judged row: pass when ``ok``, else fail."""
    return Check(name, title, expected, answered, Verdict.PASS if ok else Verdict.FAIL)


def skip(name: str, title: str, expected: str, why: str) -> Check:
    """A row that could not be asked, and why."""
    return Check(name, title, expected, f"not asked: {why}", Verdict.SKIP)


def discover_series(prober: Prober, collections: list[str]) -> tuple[Check, str | None]:
    """Pick the smallest series of the first listed collection (a URL has no known sample)."""
    title = "a small public series to examine"
    expected = "v4/getSeries?Collection= lists series with an integer ImageCount"
    if not collections:
        return check("sample", title, expected, "no collection to look in", False), None
    answer = prober.get("v4/getSeries", {"Collection": collections[0]})
    rows = json_rows(answer) or []
    sized = [
        (row["ImageCount"], str(row["SeriesInstanceUID"]))
        for row in rows
        if isinstance(row.get("ImageCount"), int)
        and row["ImageCount"] > 0
        and isinstance(row.get("SeriesInstanceUID"), str)
    ]
    if answer.status != 200 or not sized:
        return check("sample", title, expected, describe(answer, "no usable series"), False), None
    count, uid = min(sized)
    note = f"{uid} in {collections[0]}, {count} image(s)"
    return check("sample", title, expected, describe(answer, note), True), uid


def series_checks(prober: Prober, facts: SeriesFacts) -> list[Check]:
    """Every row about the sample series, in order."""
    rows = [
        _series_row(prober, facts),
        _series_size(prober, facts),
        _sop_uids(prober, facts),
        _metadata(prober, facts),
        _strict_parameters(prober, facts),
        _hierarchy(prober, facts),
        _per_image(prober, facts),
        _download(prober, facts),
    ]
    rows += _recomputed(facts)
    return rows


def _series_row(prober: Prober, facts: SeriesFacts) -> Check:
    title = "v4/getSeries by SeriesInstanceUID"
    expected = (
        "200, JSON array: one row with SeriesInstanceUID, StudyInstanceUID, PatientID, "
        "Collection and an integer ImageCount"
    )
    answer = prober.get("v4/getSeries", {"SeriesInstanceUID": facts.series_uid})
    rows = json_rows(answer)
    if answer.status != 200 or rows is None:
        return check("series-row", title, expected, describe(answer, "not a JSON array"), False)
    mine = [row for row in rows if row.get("SeriesInstanceUID") == facts.series_uid]
    if len(rows) != 1 or len(mine) != 1:
        note = f"{len(rows)} row(s), {len(mine)} for the series"
        return check("series-row", title, expected, describe(answer, note), False)
    row = mine[0]
    missing = [k for k in ("StudyInstanceUID", "PatientID", "Collection") if not row.get(k)]
    count = _whole(row.get("ImageCount"))
    if count is None:
        missing.append("ImageCount (integer)")
    if missing or count is None:
        note = "lacks " + ", ".join(missing)
        return check("series-row", title, expected, describe(answer, note), False)
    facts.collection, facts.image_count = str(row["Collection"]), count
    facts.patient_id, facts.study_uid = str(row["PatientID"]), str(row["StudyInstanceUID"])
    facts.doi = _text(row, "DataDescriptionURI")
    facts.license_name = _text(row, "LicenseName")
    facts.license_url = _text(row, "LicenseURI")
    note = f"{facts.collection}, {count} image(s)"
    return check("series-row", title, expected, describe(answer, note), True)


def _series_size(prober: Prober, facts: SeriesFacts) -> Check:
    title = "v4/getSeriesSize"
    expected = "200, JSON [{TotalSizeInBytes, ObjectCount}], integers; ObjectCount = ImageCount"
    answer = prober.get("v4/getSeriesSize", {"SeriesInstanceUID": facts.series_uid})
    rows = json_rows(answer)
    row = rows[0] if rows and len(rows) == 1 else {}
    size, count = _whole(row.get("TotalSizeInBytes")), _whole(row.get("ObjectCount"))
    if answer.status != 200 or size is None or count is None:
        return check("series-size", title, expected, describe(answer, "no such row"), False)
    facts.object_count = count
    note = f"ObjectCount {count}, {size} bytes"
    ok = facts.image_count is None or count == facts.image_count
    if not ok:
        note += f"; getSeries said {facts.image_count} images"
    return check("series-size", title, expected, describe(answer, note), ok)


def _text(row: dict[str, Any], key: str) -> str | None:
    value = row.get(key)
    return value if isinstance(value, str) and value else None


def _whole(value: object) -> int | None:
    """A whole number as NBIA may print one: 12, 12.0 or "12" (decimal columns, CSV)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _sop_uids(prober: Prober, facts: SeriesFacts) -> Check:
    title = "v4/getSOPInstanceUIDs"
    expected = "200, JSON [{SOPInstanceUID}], one distinct UID per image (ObjectCount)"
    answer = prober.get("v4/getSOPInstanceUIDs", {"SeriesInstanceUID": facts.series_uid})
    rows = json_rows(answer)
    if answer.status != 200 or rows is None:
        return check("sop-uids", title, expected, describe(answer, "not a JSON array"), False)
    uids = [row.get("SOPInstanceUID") for row in rows]
    if not all(isinstance(uid, str) and uid for uid in uids):
        return check("sop-uids", title, expected, describe(answer, "a row lacks it"), False)
    listed = [str(uid) for uid in uids]
    distinct = len(set(listed))
    note = f"{len(uids)} UID(s), {distinct} distinct"
    ok = distinct == len(uids) > 0 and facts.object_count in (None, len(uids))
    if ok:
        facts.sop_uids = listed
    return check("sop-uids", title, expected, describe(answer, note), ok)


def _metadata(prober: Prober, facts: SeriesFacts) -> Check:
    title = "v4/getSeriesMetadata (POST list, format=json)"
    expected = "200, JSON array with the series' row (SeriesInstanceUID, Collection)"
    form = {"list": facts.series_uid, "format": "json"}
    answer = prober.post("v4/getSeriesMetadata", form)
    rows = json_rows(answer)
    mine = [r for r in rows or [] if r.get("SeriesInstanceUID") == facts.series_uid]
    ok = answer.status == 200 and len(mine) == 1 and bool(mine[0].get("Collection"))
    note = f"{len(rows)} row(s), {len(mine)} for the series" if rows is not None else "not JSON"
    return check("metadata", title, expected, describe(answer, note), ok)


def _strict_parameters(prober: Prober, facts: SeriesFacts) -> Check:
    title = "v4 rejects a misspelt parameter"
    expected = "400 for getSeriesSize?SeriesInstanceUid= (a filter is never silently dropped)"
    answer = prober.get("v4/getSeriesSize", {"SeriesInstanceUid": facts.series_uid})
    first_line = answer.text.strip().splitlines()[0][:60] if answer.body.strip() else ""
    return check(
        "strict-parameters", title, expected, describe(answer, first_line), answer.status == 400
    )


def _hierarchy(prober: Prober, facts: SeriesFacts) -> Check:
    title = "v4/getMD5Hierarchy for the series (form POST)"
    expected = "200, the bare hash: 32 lowercase hex characters, no quotes, no newline"
    answer = prober.post("v4/getMD5Hierarchy", {"SeriesInstanceUID": facts.series_uid})
    ok = answer.status == 200 and _HASH.fullmatch(answer.text) is not None
    if ok:
        facts.archive_hash = answer.text
    return check("hierarchy-series", title, expected, describe(answer, answer.text[:40]), ok)


def _per_image(prober: Prober, facts: SeriesFacts) -> Check:
    title = "v4/getMD5HashForImage (SOPInstanceUID) per image"
    expected = "200, each body the stored MD5 string (hex, at most 32 characters)"
    if not facts.sop_uids:
        return skip("image-md5", title, expected, "no SOPInstanceUIDs")
    if len(facts.sop_uids) > PER_IMAGE_LIMIT:
        return skip("image-md5", title, expected, f"{len(facts.sop_uids)} images is too many")
    values: list[str] = []
    bad: list[str] = []
    for uid in facts.sop_uids:
        answer = prober.get("v4/getMD5HashForImage", {"SOPInstanceUID": uid})
        values.append(answer.text)
        if answer.status != 200 or normalise_archive_md5(answer.text) is None:
            bad.append(describe(answer, repr(answer.text[:40])))
    if bad:
        note = f"{len(bad)} of {len(values)} unusable, first: {bad[0]}"
        return check("image-md5", title, expected, note, False)
    facts.per_image = values
    return check("image-md5", title, expected, f"200 x {len(values)}, all usable", True)


def _download(prober: Prober, facts: SeriesFacts) -> Check:
    title = "v4/getImageWithMD5Hash ZIP"
    expected = (
        "200 ZIP: one flat entry per image (ObjectCount) and md5hashes.csv "
        "(a LICENSE entry is ignored)"
    )
    answer = prober.get("v4/getImageWithMD5Hash", {"SeriesInstanceUID": facts.series_uid})
    if answer.status != 200:
        return check("download-zip", title, expected, describe(answer), False)
    try:
        with zipfile.ZipFile(io.BytesIO(answer.body)) as archive:
            names = archive.namelist()
            unpacked = sum(info.file_size for info in archive.infolist())
            if unpacked > _UNPACKED_LIMIT:
                note = f"would unpack to {unpacked} bytes; not read"
                return check("download-zip", title, expected, describe(answer, note), False)
            # Read in memory only: a member name is never used as a path.
            contents = {name: archive.read(name) for name in names}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return check("download-zip", title, expected, describe(answer, f"not a ZIP: {exc}"), False)
    images = [n for n in names if n not in (_CSV_NAME, "LICENSE")]
    problems = []
    if _CSV_NAME not in names:
        problems.append("no md5hashes.csv")
    nested = [n for n in images if not n or "/" in n or "\\" in n]
    if nested:
        problems.append(f"entry named {nested[0]!r}")
    if len(set(names)) != len(names):
        problems.append("a name repeats")
    if facts.object_count is not None and len(images) != facts.object_count:
        problems.append(f"{len(images)} images for ObjectCount {facts.object_count}")
    facts.images = {n: contents[n] for n in images}
    if _CSV_NAME in contents:
        facts.csv_rows = _read_md5_csv(contents[_CSV_NAME])
    shape = f"{len(images)} image(s) named like {images[0]!r}" if images else "no images"
    if names:
        shape += f", {names[-1]!r} last"
    note = shape + "; " + ("; ".join(problems) if problems else "as expected")
    return check("download-zip", title, expected, describe(answer, note), not problems)


def _read_md5_csv(data: bytes) -> dict[str, str] | None:
    """``Filename,MD5Hash`` rows as name -> stored value, or None if the header differs."""
    text = data.decode("utf-8", errors="replace")
    lines = text.split("\n")
    if lines[0].rstrip("\r") != _CSV_HEADER:
        return None
    rows: dict[str, str] = {}
    for row in csv.reader(io.StringIO("\n".join(lines[1:]), newline="")):
        if row:
            rows[row[0]] = row[1] if len(row) > 1 else ""
    return rows


def _recomputed(facts: SeriesFacts) -> list[Check]:
    return [_csv_rows(facts), _bytes_match(facts), _per_image_vs_csv(facts)] + [
        _hash_from("hash-from-per-image", "the per-image MD5s", facts.per_image, facts),
        _hash_from(
            "hash-from-csv",
            "md5hashes.csv",
            list(facts.csv_rows.values()) if facts.csv_rows is not None else None,
            facts,
        ),
    ]


def _csv_rows(facts: SeriesFacts) -> Check:
    title = "md5hashes.csv format"
    expected = f"header exactly {_CSV_HEADER!r}, then one '<entry>,<md5>' row per image entry"
    if facts.images is None:
        return skip("md5hashes-csv", title, expected, "no ZIP")
    if facts.csv_rows is None:
        return check("md5hashes-csv", title, expected, "missing, or another header", False)
    ok = set(facts.csv_rows) == set(facts.images)
    note = f"{len(facts.csv_rows)} row(s) for {len(facts.images)} image entries"
    return check("md5hashes-csv", title, expected, note, ok)


def _bytes_match(facts: SeriesFacts) -> Check:
    title = "served bytes match md5hashes.csv"
    expected = "md5(entry bytes) = the stored value (zero-padded, any case)"
    if facts.images is None or facts.csv_rows is None:
        return skip("bytes-match-csv", title, expected, "no ZIP or no md5hashes.csv")
    wrong = [
        name
        for name, data in sorted(facts.images.items())
        if check_archive_md5(facts.csv_rows.get(name), hashlib.md5(data).hexdigest()) not in MATCHES
    ]
    note = f"{len(facts.images) - len(wrong)} of {len(facts.images)} match"
    if wrong:
        note += f"; first mismatch {wrong[0]}"
    return check("bytes-match-csv", title, expected, note, not wrong and bool(facts.images))


def _per_image_vs_csv(facts: SeriesFacts) -> Check:
    title = "per-image MD5s = md5hashes.csv values"
    expected = "the same stored strings, verbatim (as multisets)"
    if facts.per_image is None or facts.csv_rows is None:
        return skip("per-image-vs-csv", title, expected, "a source is missing")
    ok = sorted(facts.per_image) == sorted(facts.csv_rows.values())
    note = "identical" if ok else "they differ"
    return check("per-image-vs-csv", title, expected, note, ok)


def _hash_from(name: str, source: str, values: list[str] | None, facts: SeriesFacts) -> Check:
    title = f"series hash recomputed from {source}"
    expected = "md5 of the sorted stored strings concatenated = getMD5Hierarchy's answer"
    if values is None or facts.archive_hash is None:
        return skip(name, title, expected, "an input is missing")
    mine = series_hash(values)
    ok = mine == facts.archive_hash
    note = f"recomputed {mine}" + ("" if ok else f", archive {facts.archive_hash}")
    return check(name, title, expected, note, ok)
