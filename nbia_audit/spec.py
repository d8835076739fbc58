"""The dataset spec (``dataset.yaml``): load, validate and normalise, before any request.

Every problem is a :class:`~nbia_audit.errors.SpecError` naming the file, the line and the key
(``select[2].modality``), what is wrong and what would be right. Validation here is offline;
checks that need the archive (an unknown collection, an empty selection) happen in the
resolver and report the same way, using the line numbers kept on each selector.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import SpecError
from .yamlmarks import DuplicateKeyError, MarkedDict, MarkedList, load_marked

__all__ = [
    "SOURCE_KINDS",
    "DatasetSpec",
    "Selector",
    "SpecOptions",
    "load_spec",
    "parse_spec",
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
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]*")


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


def load_spec(path: str | Path) -> DatasetSpec:
    """Read and validate the spec file at ``path``.

    Raises:
        SpecError: the file is unreadable or invalid; the message names file, line and key.
    """
    spec_path = Path(path)
    try:
        text = spec_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("no such file", path=str(spec_path), hint="check the path") from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"not UTF-8 text (byte {exc.start})", path=str(spec_path), hint="save it as UTF-8"
        ) from None
    except OSError as exc:
        raise SpecError(f"cannot read the file: {exc.strerror}", path=str(spec_path)) from None
    return parse_spec(text, path=str(spec_path), base_dir=spec_path.parent)


def parse_spec(text: str, *, path: str = "<spec>", base_dir: Path | None = None) -> DatasetSpec:
    """Validate spec text; ``base_dir`` resolves relative manifest paths.

    Raises:
        SpecError: the text is not a valid spec.
    """
    return _Validator(path, base_dir or Path.cwd()).spec(_parse_yaml(text, path))


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


def _parse_yaml(text: str, path: str) -> MarkedDict:
    try:
        data = load_marked(text)
    except DuplicateKeyError as exc:
        raise SpecError(
            f"duplicate key (first defined on line {exc.first_line})",
            path=path,
            line=exc.line,
            key=str(exc.key),
            hint="keep one of them",
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        raise SpecError(
            f"YAML syntax error: {problem}",
            path=path,
            line=mark.line + 1 if mark else None,
            hint="check indentation, colons and quotes",
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"YAML error: {exc}", path=path) from None
    except (ValueError, OverflowError) as exc:  # a constructor failing on an odd scalar
        raise SpecError(f"cannot read a value: {exc}", path=path, hint="quote it") from None
    if data is None:
        raise SpecError(
            "the spec is empty", path=path, hint="it needs at least `name:` and `select:`"
        )
    if not isinstance(data, MarkedDict):
        raise SpecError(
            f"the spec must be a mapping of keys, not a {_type_name(data)}",
            path=path,
            line=1,
            hint="start with `name: my-dataset`",
        )
    return data


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "true/false value"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, dt.date):
        return "date"
    return "null" if value is None else type(value).__name__


def _closest(word: str, choices: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


class _Validator:
    """Walks the marked YAML tree; every error carries the file, the line and the key."""

    def __init__(self, path: str, base_dir: Path) -> None:
        self.path = path
        self.base_dir = base_dir

    def error(self, message: str, line: int | None, key: str, hint: str | None = None) -> SpecError:
        return SpecError(message, path=self.path, line=line, key=key, hint=hint)

    def check_keys(self, mapping: MarkedDict, allowed: Sequence[str], where: str) -> None:
        for key in mapping:
            if not isinstance(key, str) or key not in allowed:
                close = _closest(str(key), allowed)
                hint = f"did you mean `{close}`?" if close else "allowed: " + ", ".join(allowed)
                raise self.error(
                    "unknown key", mapping.key_lines[key], _join(where, str(key)), hint
                )

    def spec(self, data: MarkedDict) -> DatasetSpec:
        self.check_keys(data, TOP_LEVEL_KEYS, "")
        if "name" not in data:
            raise self.error("missing", data.line, "name", "give the dataset a name")
        name = self.string(data, "name", "", pattern=_NAME, pattern_hint="letters, digits, ._-")
        if "select" not in data:
            raise self.error(
                "missing", data.line, "select", "list at least one selector, e.g. `- collection: X`"
            )
        select = self.selectors(data, "select", required=True)
        exclude = self.selectors(data, "exclude", required=False) if "exclude" in data else ()
        return DatasetSpec(
            name=name,
            description=self.string(data, "description", "", default=""),
            server=self.server(data),
            api=self.choice(data, "api", "", API_FAMILIES, default="v4"),
            select=select,
            exclude=exclude,
            options=self.options(data),
            path=self.path,
        )

    def server(self, data: MarkedDict) -> str:
        value = self.string(data, "server", "", default="public")
        if value in ("public", "nlst"):
            return value
        if re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            return value.rstrip("/")
        raise self.error(
            f"not a server: {value!r}",
            data.key_lines["server"],
            "server",
            "use `public`, `nlst` or a URL such as https://host/nbia-api/services",
        )

    def options(self, data: MarkedDict) -> SpecOptions:
        if "options" not in data:
            return SpecOptions()
        opts = data["options"]
        if not isinstance(opts, MarkedDict):
            raise self.error(
                f"must be a mapping, not a {_type_name(opts)}", data.key_lines["options"], "options"
            )
        self.check_keys(opts, OPTION_KEYS, "options")
        value = opts.get("include_annotations", False)
        if not isinstance(value, bool):
            raise self.error(
                f"must be true or false, not {value!r}",
                opts.key_lines["include_annotations"],
                "options.include_annotations",
            )
        return SpecOptions(include_annotations=value)

    def selectors(self, data: MarkedDict, key: str, *, required: bool) -> tuple[Selector, ...]:
        items = data[key]
        line = data.key_lines[key]
        if items is None or items == []:
            if required:
                raise self.error("is empty", line, key, "list at least one selector")
            return ()
        if not isinstance(items, MarkedList):
            raise self.error(
                f"must be a list of selectors, not a {_type_name(items)}",
                line,
                key,
                "start each selector with `- `",
            )
        out = []
        for index, item in enumerate(items):
            where = f"{key}[{index}]"
            if not isinstance(item, MarkedDict):
                raise self.error(
                    f"a selector must be a mapping, not a {_type_name(item)}",
                    items.item_lines[index],
                    where,
                    "e.g. `- collection: LIDC-IDRI`",
                )
            out.append(self.selector(item, where))
        return tuple(out)

    def selector(self, item: MarkedDict, where: str) -> Selector:
        self.check_keys(item, SELECTOR_KEYS, where)
        exclusive = [k for k in ("doi", "manifest", "cart", "search", "text") if k in item]
        if len(exclusive) > 1:
            raise self.error(
                f"has both `{exclusive[0]}` and `{exclusive[1]}`",
                item.key_lines[exclusive[1]],
                where,
                "split them into two selectors",
            )
        if exclusive:
            kind = exclusive[0]
            if "collection" in item and kind != "search":
                kind_line = item.key_lines["collection"]
                raise self.error(
                    f"`collection` cannot be combined with `{kind}`",
                    kind_line,
                    _join(where, "collection"),
                    "use a separate selector",
                )
        elif "studies" in item and "series" in item:
            raise self.error(
                "has both `studies` and `series`",
                item.key_lines["series"],
                where,
                "split them into two selectors",
            )
        elif "studies" in item or "series" in item:
            # Explicit UIDs are the source; a collection given with them is a constraint.
            kind = "studies" if "studies" in item else "series"
        elif "collection" in item:
            kind = "collection"
        elif "patients" in item:
            raise self.error(
                "`patients` needs a `collection`",
                item.key_lines["patients"],
                _join(where, "patients"),
                "patient IDs repeat across collections; add `collection: <name>`",
            )
        else:
            raise self.error(
                "says nothing to select",
                item.line,
                where,
                "give one of: " + ", ".join(SOURCE_KINDS),
            )
        return self.build_selector(item, where, kind)

    def build_selector(self, item: MarkedDict, where: str, kind: str) -> Selector:
        values: dict[str, Any] = {"kind": kind, "line": item.line, "where": where}
        if "collection" in item:
            values["collection"] = self.string(item, "collection", where)
        for key in UID_LIST_KEYS:
            if key in item:
                values[key] = self.string_list(item, key, where, uid=True)
        for key in FILTER_LIST_KEYS:
            if key in item:
                values[key] = self.string_list(item, key, where, uid=False)
        for key in DATE_KEYS:
            if key in item:
                values[key] = self.date(item, key, where)
        after, before = values.get("released_after"), values.get("released_before")
        if after and before and after > before:
            raise self.error(
                f"{after} is after released_before {before}",
                item.key_lines["released_after"],
                _join(where, "released_after"),
                "swap the dates",
            )
        if "doi" in item:
            values["doi"] = self.doi(item, where)
        if "cart" in item:
            values["cart"] = self.string(item, "cart", where)
        if "text" in item:
            values["text"] = self.string(item, "text", where)
        if "search" in item:
            values["search"] = self.search(item, where)
        if "manifest" in item:
            values["manifest"], values["series"] = self.manifest(item, where)
        return Selector(**values)

    def string(
        self,
        data: MarkedDict,
        key: str,
        where: str,
        *,
        default: str | None = None,
        pattern: re.Pattern[str] | None = None,
        pattern_hint: str = "",
    ) -> str:
        if key not in data:
            if default is None:
                raise self.error("missing", data.line, _join(where, key))
            return default
        value = data[key]
        line = data.key_lines[key]
        if not isinstance(value, str):
            raise self.error(
                f"must be a string, not a {_type_name(value)} ({value!r})",
                line,
                _join(where, key),
                "quote it",
            )
        value = value.strip()
        if not value:
            raise self.error("is empty", line, _join(where, key))
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(f"{value!r} is not allowed", line, _join(where, key), pattern_hint)
        return value

    def choice(
        self, data: MarkedDict, key: str, where: str, choices: Sequence[str], *, default: str
    ) -> str:
        value = self.string(data, key, where, default=default)
        if value not in choices:
            close = _closest(value, choices)
            raise self.error(
                f"unknown value {value!r}",
                data.key_lines[key],
                _join(where, key),
                f"did you mean `{close}`?" if close else "one of: " + ", ".join(choices),
            )
        return value

    def string_list(self, data: MarkedDict, key: str, where: str, *, uid: bool) -> tuple[str, ...]:
        raw = data[key]
        line = data.key_lines[key]
        if isinstance(raw, str):
            raw_items: list[Any] = [raw]
            lines = [line]
        elif isinstance(raw, MarkedList):
            raw_items, lines = list(raw), raw.item_lines
        else:
            raise self.error(
                f"must be a string or a list of strings, not a {_type_name(raw)}",
                line,
                _join(where, key),
                "quote values such as UIDs and IDs",
            )
        if not raw_items:
            raise self.error("is an empty list", line, _join(where, key), "remove it or add items")
        out: set[str] = set()
        for index, (value, item_line) in enumerate(zip(raw_items, lines, strict=True)):
            item_key = f"{_join(where, key)}[{index}]"
            if not isinstance(value, str):
                raise self.error(
                    f"must be a string, not a {_type_name(value)} ({value!r})",
                    item_line,
                    item_key,
                    "quote it, so YAML keeps it exactly as written",
                )
            value = value.strip()
            if not value:
                raise self.error("is empty", item_line, item_key)
            if uid and (len(value) > 64 or not _UID.fullmatch(value)):
                raise self.error(
                    f"{value!r} is not a DICOM UID",
                    item_line,
                    item_key,
                    "a UID is digits and dots, at most 64 characters",
                )
            out.add(value)
        return tuple(sorted(out))

    def date(self, data: MarkedDict, key: str, where: str) -> dt.date:
        value = data[key]
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise self.error(
            f"not a date: {value!r}", data.key_lines[key], _join(where, key), "use YYYY-MM-DD"
        )

    def doi(self, data: MarkedDict, where: str) -> str:
        value = self.string(data, "doi", where)
        bare = re.sub(r"^(https?://(dx\.)?doi\.org/|doi:)", "", value, flags=re.IGNORECASE)
        if not re.fullmatch(r"10\.\d{4,9}/\S+", bare):
            raise self.error(
                f"not a DOI: {value!r}",
                data.key_lines["doi"],
                _join(where, "doi"),
                "e.g. 10.7937/K9/TCIA.2015.PF0M9REI or https://doi.org/10.7937/...",
            )
        # NBIA matches description_uri exactly, as https://doi.org/<doi> (protocol §7).
        return "https://doi.org/" + bare

    def search(self, data: MarkedDict, where: str) -> dict[str, tuple[str, ...]]:
        criteria = data["search"]
        line = data.key_lines["search"]
        key = _join(where, "search")
        if not isinstance(criteria, MarkedDict) or not criteria:
            raise self.error(
                "must be a mapping of search criteria", line, key, "e.g. `modality: [CT]`"
            )
        self.check_keys(criteria, SEARCH_KEYS, key)
        return {k: self.string_list(criteria, k, key, uid=False) for k in sorted(criteria)}

    def manifest(self, data: MarkedDict, where: str) -> tuple[str, tuple[str, ...]]:
        from .manifest import read_manifest

        relative = self.string(data, "manifest", where)
        line = data.key_lines["manifest"]
        key = _join(where, "manifest")
        manifest_path = (self.base_dir / relative).resolve()
        if not manifest_path.is_file():
            raise self.error(
                f"no such manifest file: {manifest_path}",
                line,
                key,
                "manifest paths are relative to the spec file",
            )
        try:
            uids = read_manifest(manifest_path).series_uids
        except SpecError as exc:
            # Name both places: the spec line that points at the manifest, and the
            # manifest's own line that is wrong.
            raise self.error(f"bad manifest: {exc}", line, key) from None
        if not uids:
            raise self.error(f"the manifest {relative} lists no series", line, key)
        return Path(relative).as_posix(), tuple(sorted(set(uids)))


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
