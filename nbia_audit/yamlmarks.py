"""Safe YAML loading that remembers the line of every mapping key and sequence item.

``yaml.safe_load`` forgets where values came from, but every spec error must name its line.
This loader builds plain dicts and lists (subclasses that carry line numbers), refuses
duplicate keys (which ``safe_load`` silently resolves to the last one), and never constructs
anything but the YAML core types.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, SequenceNode

__all__ = ["DuplicateKeyError", "MarkedDict", "MarkedList", "load_marked", "type_name"]


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


class _MarkingLoader(yaml.SafeLoader):
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


def load_marked(text: str) -> Any:
    """Parse one YAML document with the safe core schema, keeping line numbers.

    Raises:
        yaml.YAMLError: on a syntax error, a duplicate key or an unsupported tag; the
            error's ``problem_mark`` (or ``line`` for duplicates) says where.
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
