"""Validation of a parsed spec: every key, type and value, with the line it came from.

The YAML has already been parsed with line numbers (yamlmarks.py); this walks it and builds
the records of spec/model.py, raising a SpecError that names the file, line and key (and the
closest valid key or value) on the first problem.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from nbia_audit.boundedinput import excerpt
from nbia_audit.errors import SpecError
from nbia_audit.manifest import read_manifest
from nbia_audit.spec.model import (
    API_FAMILIES,
    DATE_KEYS,
    FILTER_LIST_KEYS,
    OPTION_KEYS,
    SEARCH_KEYS,
    SELECTOR_KEYS,
    SOURCE_KINDS,
    TOP_LEVEL_KEYS,
    UID_LIST_KEYS,
    DatasetSpec,
    Selector,
    SpecOptions,
)
from nbia_audit.spec.yamlmarks import MarkedDict, MarkedList, key_text, type_name

__all__ = ["Validator"]

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
# Longer values are refused: they would be echoed in later messages and sent to the archive.
MAX_VALUE_CHARS = 1024
MAX_DESCRIPTION_CHARS = 65_536
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]*")


def _closest(word: str, choices: Iterable[str]) -> str | None:
    if len(word) > 100:  # no key or value is this long; difflib's cost grows with it
        return None
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


class Validator:
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
                    "unknown key", mapping.key_lines[key], _join(where, key_text(key)), hint
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
            f"not a server: {excerpt(value)}",
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
                f"must be a mapping, not a {type_name(opts)}", data.key_lines["options"], "options"
            )
        self.check_keys(opts, OPTION_KEYS, "options")
        value = opts.get("include_annotations", False)
        if not isinstance(value, bool):
            raise self.error(
                f"must be true or false, not {excerpt(value)}",
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
                f"must be a list of selectors, not a {type_name(items)}",
                line,
                key,
                "start each selector with `- `",
            )
        out = []
        for index, item in enumerate(items):
            where = f"{key}[{index}]"
            if not isinstance(item, MarkedDict):
                raise self.error(
                    f"a selector must be a mapping, not a {type_name(item)}",
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
                f"must be a string, not a {type_name(value)} ({excerpt(value)})",
                line,
                _join(where, key),
                "quote it",
            )
        value = value.strip()
        if not value:
            raise self.error("is empty", line, _join(where, key))
        self.check_length(value, line, _join(where, key))
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(
                f"{excerpt(value)} is not allowed", line, _join(where, key), pattern_hint
            )
        return value

    def check_length(self, value: str, line: int, key: str) -> None:
        limit = MAX_DESCRIPTION_CHARS if key == "description" else MAX_VALUE_CHARS
        if len(value) > limit:
            raise self.error(
                f"is {len(value):,} characters long ({excerpt(value)})",
                line,
                key,
                f"at most {limit:,}",
            )

    def choice(
        self, data: MarkedDict, key: str, where: str, choices: Sequence[str], *, default: str
    ) -> str:
        value = self.string(data, key, where, default=default)
        if value not in choices:
            close = _closest(value, choices)
            raise self.error(
                f"unknown value {excerpt(value)}",
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
                f"must be a string or a list of strings, not a {type_name(raw)}",
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
                    f"must be a string, not a {type_name(value)} ({excerpt(value)})",
                    item_line,
                    item_key,
                    "quote it, so YAML keeps it exactly as written",
                )
            value = value.strip()
            if not value:
                raise self.error("is empty", item_line, item_key)
            self.check_length(value, item_line, item_key)
            if uid and (len(value) > 64 or not _UID.fullmatch(value)):
                raise self.error(
                    f"{excerpt(value)} is not a DICOM UID",
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
            text = value.strip()
            try:
                return dt.date.fromisoformat(text)
            except ValueError:
                pass
            try:  # a timestamp, or a date without zero padding (2020-1-1)
                return dt.datetime.fromisoformat(text).date()
            except ValueError:
                pass
            try:
                return dt.datetime.strptime(text, "%Y-%m-%d").date()
            except ValueError:
                pass
        raise self.error(
            f"not a date: {excerpt(value)}",
            data.key_lines[key],
            _join(where, key),
            "use YYYY-MM-DD",
        )

    def doi(self, data: MarkedDict, where: str) -> str:
        value = self.string(data, "doi", where)
        bare = re.sub(r"^(https?://(dx\.)?doi\.org/|doi:)", "", value, flags=re.IGNORECASE)
        if not re.fullmatch(r"10\.\d{4,9}/\S+", bare):
            raise self.error(
                f"not a DOI: {excerpt(value)}",
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
        relative = self.string(data, "manifest", where)
        line = data.key_lines["manifest"]
        key = _join(where, "manifest")
        manifest_path = (self.base_dir / relative).resolve()
        if not manifest_path.exists():  # a folder, device or FIFO: read_manifest says which
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
