"""The dataset spec's records and vocabulary: what a validated ``dataset.yaml`` is.

Both the loader (spec/load.py) and the validator (spec/validate.py) build on these; neither is
needed to read a spec back from a lock (:func:`spec_from_normalised`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nbia_audit.errors import SpecError

__all__ = [
    "SOURCE_KINDS",
    "DatasetSpec",
    "Selector",
    "SpecOptions",
    "spec_from_normalised",
]

SPEC_FORMAT = 1
TOP_LEVEL_KEYS = ("name", "description", "server", "api", "select", "exclude", "options")
OPTION_KEYS = ("include_annotations",)
API_FAMILIES = ("v4", "v2", "v1")
# Sources: exactly one per selector; `collection` is a source only when no other is given.
SOURCE_KINDS = ("doi", "manifest", "cart", "search", "text", "collection", "studies", "series")
UID_LIST_KEYS = ("studies", "series")
FILTER_LIST_KEYS = ("modality", "body_part", "manufacturer", "patients")
DATE_KEYS = ("released_after", "released_before")
# The portal's simple-search criteria (docs/nbia-protocol-supplement.md §2.2), by our names.
SEARCH_KEYS = (
    "collection",
    "modality",
    "body_part",
    "manufacturer",
    "model",
    "software_version",
    "species",
    "patient_sex",
    "phantom",
    "third_party",
    "description",
    "patients",
    "studies",
    "series",
)
SELECTOR_KEYS = (*SOURCE_KINDS, "patients", "modality", "body_part", "manufacturer", *DATE_KEYS)


@dataclass(frozen=True, slots=True)
class Selector:
    """One entry of ``select`` or ``exclude``: a source of series plus optional filters.

    ``kind`` is the source: ``collection``, ``studies``, ``series``, ``doi``, ``manifest``,
    ``cart``, ``search`` or ``text``. Filters narrow whatever the source yields. For a
    ``manifest`` the series UIDs are read at load time into ``series``, so a changed
    manifest file changes the spec digest.
    """

    kind: str
    collection: str | None = None
    patients: tuple[str, ...] = ()
    studies: tuple[str, ...] = ()
    series: tuple[str, ...] = ()
    modality: tuple[str, ...] = ()
    body_part: tuple[str, ...] = ()
    manufacturer: tuple[str, ...] = ()
    released_after: dt.date | None = None
    released_before: dt.date | None = None
    doi: str | None = None
    manifest: str | None = None
    cart: str | None = None
    search: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    text: str | None = None
    line: int = 0  # where the selector starts in the spec file, for later error messages
    where: str = ""  # e.g. "select[2]"

    def normalised(self) -> dict[str, Any]:
        """The selector as canonical JSON-ready data (no line numbers, no empty fields)."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            if f.name in ("kind", "line", "where"):
                continue
            value = getattr(self, f.name)
            if value in (None, (), {}):
                continue
            if isinstance(value, dt.date):
                value = value.isoformat()
            elif isinstance(value, Mapping):
                value = {k: list(v) for k, v in sorted(value.items())}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


@dataclass(frozen=True, slots=True)
class SpecOptions:
    """Options that change what a lock contains."""

    include_annotations: bool = False


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """A validated dataset spec."""

    name: str
    description: str
    server: str
    api: str
    select: tuple[Selector, ...]
    exclude: tuple[Selector, ...]
    options: SpecOptions
    path: str  # the spec file, for messages; never part of the digest

    def normalised(self) -> dict[str, Any]:
        """The spec as canonical data: what the lock embeds and the digest covers."""
        return {
            "format": SPEC_FORMAT,
            "name": self.name,
            "description": self.description,
            "server": self.server,
            "api": self.api,
            "select": [s.normalised() for s in self.select],
            "exclude": [s.normalised() for s in self.exclude],
            "options": dataclasses.asdict(self.options),
        }

    def digest(self) -> str:
        """``sha256:<hex>`` over the canonical JSON of :meth:`normalised`."""
        canonical = json.dumps(self.normalised(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


_NORMALISED_TUPLES = ("patients", "studies", "series", "modality", "body_part", "manufacturer")
_NORMALISED_TEXT = ("collection", "doi", "manifest", "cart", "text")


def spec_from_normalised(data: Mapping[str, Any], *, path: str = "<lock>") -> DatasetSpec:
    """Rebuild a spec from :meth:`DatasetSpec.normalised` data, as a lock embeds it.

    The inverse of ``normalised()`` (same digest). A manifest selector keeps the series UIDs
    embedded when it was locked; the manifest file is not read again.

    Raises:
        SpecError: ``data`` is not a normalised spec of a format this version knows.
    """
    try:
        if data["format"] != SPEC_FORMAT:
            raise ValueError(f"spec format {data['format']!r}")
        return DatasetSpec(
            name=str(data["name"]),
            description=str(data["description"]),
            server=str(data["server"]),
            api=str(data["api"]),
            select=tuple(_selector_from(d, f"select[{i}]") for i, d in enumerate(data["select"])),
            exclude=tuple(
                _selector_from(d, f"exclude[{i}]") for i, d in enumerate(data["exclude"])
            ),
            options=SpecOptions(**data["options"]),
            path=path,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SpecError(
            f"the embedded spec is not one this nbia-audit reads ({exc})",
            path=path,
            hint="re-run `nbia-audit lock` with this version",
        ) from None


def _selector_from(data: Mapping[str, Any], where: str) -> Selector:
    known = {"kind", "search", *DATE_KEYS, *_NORMALISED_TUPLES, *_NORMALISED_TEXT}
    unknown = set(data) - known
    if unknown or data["kind"] not in SOURCE_KINDS:
        raise ValueError(f"{where}: unknown {sorted(unknown) or data['kind']}")
    values: dict[str, Any] = {"kind": data["kind"], "where": where}
    values.update({k: tuple(str(v) for v in data[k]) for k in _NORMALISED_TUPLES if k in data})
    values.update({k: str(data[k]) for k in _NORMALISED_TEXT if k in data})
    values.update({k: dt.date.fromisoformat(data[k]) for k in DATE_KEYS if k in data})
    if "search" in data:
        values["search"] = {k: tuple(str(v) for v in vs) for k, vs in data["search"].items()}
    return Selector(**values)
