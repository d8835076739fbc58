"""Safe YAML loading that remembers the line of every mapping key and sequence item.

``yaml.safe_load`` forgets where values came from, but every spec error must name its line.
This loader builds plain dicts and lists (subclasses that carry line numbers), refuses
duplicate keys (which ``safe_load`` silently resolves to the last one), never constructs
anything but the YAML core types, and bounds the work a few bytes can ask for: nesting depth
(20,000 levels overflowed Python's stack) and the number of values once aliases are expanded
(a 300-byte "billion laughs" spec took 2.9 GB).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent
from yaml.nodes import CollectionNode, MappingNode, Node, ScalarNode, SequenceNode

from nbia_audit.boundedinput import excerpt

__all__ = [
    "MAX_DEPTH",
    "MAX_VALUES",
    "DuplicateKeyError",
    "MarkedDict",
    "MarkedList",
    "YamlTooBigError",
    "key_text",
    "load_marked",
    "type_name",
]

MAX_DEPTH = 64
"""Deepest nesting of lists and mappings read (a spec needs five levels)."""
MAX_VALUES = 100_000
"""Most values (keys, items, scalars) read, counting each alias as the values it repeats."""


class MarkedDict(dict[Any, Any]):
    """A mapping from YAML, with ``line`` (1-based) and ``key_lines`` for each key."""

    line: int
    key_lines: dict[Any, int]


class MarkedList(list[Any]):
    """A sequence from YAML, with ``line`` (1-based) and ``item_lines`` for each item."""

    line: int
    item_lines: list[int]


class DuplicateKeyError(yaml.YAMLError):
    """A mapping repeats a key."""

    def __init__(self, key: object, line: int, first_line: int) -> None:
        self.key = key
        self.line = line
        self.first_line = first_line
        super().__init__(f"duplicate key {key!r} (first defined on line {first_line})")


class YamlTooBigError(yaml.MarkedYAMLError):
    """The document nests too deep or expands to too many values; ``key`` says where."""

    def __init__(self, problem: str, mark: yaml.Mark | None, key: str) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.key = key


class _MarkingLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        # compose_node's index is really an int (a sequence item), a key's Node (a mapping
        # value) or None (a key, or the root); the typeshed stub says int.
        self._path: list[str] = []
        self._values = 0  # values composed, aliases not expanded
        self._expanded: dict[int, int] = {}  # id(collection node) -> values once expanded

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        # Bounded before the composer recurses: depth by the path, size by counting.
        self._path.append(_path_step(index))
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        if len(self._path) > MAX_DEPTH:
            raise YamlTooBigError(
                f"nested more than {MAX_DEPTH} levels deep", mark, self.key_path()
            )
        aliased = self.check_event(AliasEvent)
        node = super().compose_node(parent, index)
        if not aliased:
            self._values += 1
            if isinstance(node, CollectionNode):
                self._expanded[id(node)] = self._expanded_size(node, mark)
        if self._values > MAX_VALUES:
            raise YamlTooBigError(f"has more than {MAX_VALUES:,} values", mark, self.key_path())
        self._path.pop()
        return node

    def _expanded_size(self, node: CollectionNode, mark: yaml.Mark) -> int:
        children: list[Node] = []
        for child in node.value:
            children.extend(child if isinstance(child, tuple) else (child,))
        size = 1
        for child in children:
            if isinstance(child, CollectionNode):
                if id(child) not in self._expanded:  # still being composed: it contains itself
                    raise YamlTooBigError(
                        "an alias refers to a list or mapping that contains it",
                        mark,
                        self.key_path(),
                    )
                size += self._expanded[id(child)]
            else:
                size += 1
        if size > MAX_VALUES:
            raise YamlTooBigError(
                f"expands to more than {MAX_VALUES:,} values (through aliases)",
                mark,
                self.key_path(),
            )
        return size

    def key_path(self) -> str:
        """Where the composer is, as the spec's errors name keys: ``select[2].modality``."""
        path = "".join(self._path).lstrip(".")
        return path if len(path) <= 80 else path[:80] + "..."

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> MarkedDict:
        if not isinstance(node, MappingNode):
            raise ConstructorError(None, None, "expected a mapping", node.start_mark)
        self.flatten_mapping(node)
        result = MarkedDict()
        result.line = node.start_mark.line + 1
        result.key_lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                hash(key)
            except TypeError as exc:
                raise ConstructorError(
                    None, None, "a mapping key must be a plain value", key_node.start_mark
                ) from exc
            if key in result:
                raise DuplicateKeyError(key, line, result.key_lines[key])
            result[key] = self.construct_object(value_node, deep=True)
            result.key_lines[key] = line
        return result

    def construct_sequence(self, node: SequenceNode, deep: bool = False) -> MarkedList:
        if not isinstance(node, SequenceNode):
            raise ConstructorError(None, None, "expected a sequence", node.start_mark)
        result = MarkedList(self.construct_object(child, deep=True) for child in node.value)
        result.line = node.start_mark.line + 1
        result.item_lines = [child.start_mark.line + 1 for child in node.value]
        return result


def _construct_map(loader: _MarkingLoader, node: Node) -> MarkedDict:
    assert isinstance(node, MappingNode)
    return loader.construct_mapping(node)


def _construct_seq(loader: _MarkingLoader, node: Node) -> MarkedList:
    assert isinstance(node, SequenceNode)
    return loader.construct_sequence(node)


_MarkingLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_MarkingLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
# Unquoted dates stay strings: YAML's own timestamp constructor raises a bare ValueError,
# with no line, on an impossible date such as 2020-13-01; the spec validates dates itself.
_MarkingLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _path_step(index: object) -> str:
    if isinstance(index, int):
        return f"[{index}]"
    if isinstance(index, ScalarNode):  # composing the value of this key
        key = str(index.value)
        return "." + (key if len(key) <= 40 else key[:40] + "...")
    if isinstance(index, Node):
        return ".?"
    return ""  # the root, or a mapping key


def load_marked(text: str) -> Any:
    """Parse one YAML document with the safe core schema, keeping line numbers.

    Raises:
        yaml.YAMLError: on a syntax error, a duplicate key or an unsupported tag; the
            error's ``problem_mark`` (or ``line`` for duplicates) says where.
        YamlTooBigError: nested deeper than MAX_DEPTH or more than MAX_VALUES values.
    """
    return yaml.load(text, Loader=_MarkingLoader)  # noqa: S506 - a SafeLoader subclass


def type_name(value: object) -> str:
    """How a YAML value reads to a person: ``number``, ``list``, ``true/false value`` ..."""
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


def key_text(key: object) -> str:
    """A key as an error names it: itself if short and plain, else a bounded excerpt."""
    text = str(key) if isinstance(key, str) else excerpt(key)
    return text if len(text) <= 40 else excerpt(text)
