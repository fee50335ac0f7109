"""The first half of reading a machine file: PyYAML's events to a small node tree.

Every node keeps its line and column; only the events are taken from PyYAML, never its
constructors, so no tag can instantiate anything. Nesting depth is bounded here, alias
expansion where the tree becomes values (agentfsm.spec.yamlsource).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.scanner import Scanner


class PyEventParser(Reader, Scanner, Parser):
    """PyYAML's pure-Python event parser, used when libyaml is not available."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)


EventParser: Any
if yaml.__with_libyaml__:
    from yaml.cyaml import CParser

    EventParser = CParser
else:
    EventParser = PyEventParser


MAX_FILE_BYTES = 5 * 1024 * 1024
# Nodes built through aliases before the document is taken for a "billion laughs" bomb.
MAX_ALIASED_NODES = 100_000
# Machine files nest a dozen levels at most; the bound keeps construction far from
# Python's recursion limit.
MAX_DEPTH = 100

NodePath = tuple[str | int, ...]

TAG_PREFIX = "tag:yaml.org,2002:"
STR_TAG = TAG_PREFIX + "str"
INT_TAG = TAG_PREFIX + "int"
FLOAT_TAG = TAG_PREFIX + "float"
BOOL_TAG = TAG_PREFIX + "bool"
NULL_TAG = TAG_PREFIX + "null"
MAP_TAG = TAG_PREFIX + "map"
SEQ_TAG = TAG_PREFIX + "seq"
MERGE_TAG = TAG_PREFIX + "merge"

# Plain scalars are typed by the YAML 1.2 core schema, as modern YAML tools do: only
# true/false are booleans (`no`, `on`, `yes` stay text), `017` is 17, `1:20` is text and
# `1e3` a number. Timestamps are not typed at all: data is JSON.
_CORE_RESOLVERS: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    (NULL_TAG, "~nN", re.compile(r"^(?:~|null|Null|NULL)$")),
    (BOOL_TAG, "tTfF", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")),
    (INT_TAG, "-+0123456789", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")),
    (
        FLOAT_TAG,
        "-+.0123456789",
        re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    ),
    (MERGE_TAG, "<", re.compile(r"^<<$")),
)
# Keyed by the scalar's first character, so most text is typed without a regex.
_IMPLICIT_RESOLVERS: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
for _tag, _firsts, _pattern in _CORE_RESOLVERS:
    for _first in _firsts:
        _IMPLICIT_RESOLVERS.setdefault(_first, []).append((_tag, _pattern))


def core_int(text: str) -> int:
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def core_float(text: str) -> float:
    lowered = text.lower()
    if lowered.endswith(".inf"):
        return float("-inf") if text.startswith("-") else float("inf")
    if lowered == ".nan":
        return float("nan")
    return float(text)


BOOL_TEXT = {"true": True, "false": False}

# Tags a mapping key may carry; whatever it says, the key is its text.
KEY_TAGS = {STR_TAG, INT_TAG, FLOAT_TAG, BOOL_TAG, NULL_TAG}


@dataclass(frozen=True, slots=True)
class Mark:
    """A position in the file, 1-based as editors show it."""

    line: int
    column: int


DOCUMENT_START = Mark(1, 1)


# --- node tree ------------------------------------------------------------------------
# Plain slotted classes rather than dataclasses: they are created per node and the CLI
# imports this module on every run.


class ScalarNode:
    __slots__ = ("tag", "value", "mark", "style")

    def __init__(self, tag: str, value: str, mark: Mark, style: str) -> None:
        self.tag = tag
        self.value = value
        self.mark = mark
        self.style = style  # "|" literal block, ">" folded block, "'" or '"' quoted, "" plain


class SequenceNode:
    __slots__ = ("tag", "items", "mark")

    def __init__(self, tag: str, items: list[Node], mark: Mark) -> None:
        self.tag = tag
        self.items = items
        self.mark = mark


class MappingNode:
    __slots__ = ("tag", "flat", "mark")

    def __init__(self, tag: str, flat: list[Node], mark: Mark) -> None:
        self.tag = tag
        self.flat = flat  # key, value, key, value ... in source order
        self.mark = mark


class AliasNode:
    __slots__ = ("name", "target", "mark")

    def __init__(self, name: str, target: Node, mark: Mark) -> None:
        self.name = name
        self.target = target
        self.mark = mark


Node = ScalarNode | SequenceNode | MappingNode | AliasNode


class YamlFatal(Exception):
    """A problem after which no document can be returned."""

    def __init__(self, mark: Mark, code: str, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.code = code
        self.message = message


def yaml_mark_of(yaml_mark: Any) -> Mark:
    return Mark(yaml_mark.line + 1, yaml_mark.column + 1)


def tag_name(tag: str) -> str:
    return "!!" + tag[len(TAG_PREFIX) :] if tag.startswith(TAG_PREFIX) else tag


def resolve_scalar(value: str, plain: bool) -> str:
    if not plain:
        return STR_TAG
    if not value:
        return NULL_TAG
    for tag, regexp in _IMPLICIT_RESOLVERS.get(value[0], ()):
        if regexp.match(value):
            return tag
    return STR_TAG


class Composer:
    """Builds the node tree of the first document from parser events, without recursion."""

    def __init__(self, parser: Any) -> None:
        self._parser = parser
        self._anchors: dict[str, Node] = {}

    def compose(self) -> tuple[Node | None, Mark | None]:
        """Return the first document's root (None for an empty stream) and where a second document starts."""
        parser = self._parser
        parser.get_event()  # StreamStart
        if parser.check_event(StreamEndEvent):
            return None, None
        parser.get_event()  # DocumentStart
        root = self._compose_root()
        parser.get_event()  # DocumentEnd
        nxt = parser.peek_event()
        return root, None if isinstance(nxt, StreamEndEvent) else yaml_mark_of(nxt.start_mark)

    def _compose_root(self) -> Node:
        stack: list[SequenceNode | MappingNode] = []
        while True:
            event = self._parser.get_event()
            kind = type(event)
            if kind is SequenceEndEvent or kind is MappingEndEvent:
                done = stack.pop()
                if not stack:
                    return done
                continue
            node = self._node(event, kind)
            if stack:
                parent = stack[-1]
                (parent.items if type(parent) is SequenceNode else parent.flat).append(node)
            if type(node) is SequenceNode or type(node) is MappingNode:
                stack.append(node)
                if len(stack) > MAX_DEPTH:
                    raise YamlFatal(node.mark, "yaml-syntax", f"the document nests more than {MAX_DEPTH} levels deep")
            elif not stack:
                return node

    def _node(self, event: Any, kind: type) -> Node:
        mark = yaml_mark_of(event.start_mark)
        if kind is AliasEvent:
            target = self._anchors.get(event.anchor)
            if target is None:
                raise YamlFatal(mark, "yaml-syntax", f"alias *{event.anchor} names no anchor defined before it")
            return AliasNode(event.anchor, target, mark)
        tag = event.tag
        node: Node
        if kind is ScalarEvent:
            if tag is None or tag == "!":
                tag = resolve_scalar(event.value, event.implicit[0])
            node = ScalarNode(tag, event.value, mark, event.style or "")
        elif kind is SequenceStartEvent:
            node = SequenceNode(SEQ_TAG if tag is None or tag == "!" else tag, [], mark)
        else:  # MappingStartEvent
            node = MappingNode(MAP_TAG if tag is None or tag == "!" else tag, [], mark)
        if event.anchor is not None:
            self._add_anchor(event.anchor, node)
        return node

    def _add_anchor(self, name: str, node: Node) -> None:
        first = self._anchors.get(name)
        if first is not None:
            raise YamlFatal(node.mark, "yaml-syntax", f"anchor &{name} is defined twice (first at line {first.mark.line})")
        # Registered before the children are composed, as PyYAML does, so an alias inside
        # its own anchor points back at it; construction reports that as recursion.
        self._anchors[name] = node


# --- construction ---------------------------------------------------------------------
