"""Safe YAML reading for machine files, remembering where every node is.

PyYAML (libyaml when it is available) turns the text into events, and
agentfsm.spec.yamlnodes builds a small node tree from them. This module makes plain
JSON-like values of that tree, so that it controls every step: only the JSON tags are
accepted (nothing is ever instantiated from a tag), the line and column of every node and
alias are kept for error messages, and nesting depth and alias expansion are bounded.
"""

from __future__ import annotations

import pathlib
import stat
from dataclasses import dataclass
from typing import Any, NamedTuple

import yaml
from yaml.reader import Reader

from agentfsm.spec.problems import Problem, problem
from agentfsm.spec.yamlnodes import (
    AliasNode,
    BOOL_TAG,
    BOOL_TEXT,
    Composer,
    DOCUMENT_START,
    EventParser,
    FLOAT_TAG,
    INT_TAG,
    KEY_TAGS,
    MAP_TAG,
    MAX_ALIASED_NODES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MERGE_TAG,
    MappingNode,
    Mark,
    NULL_TAG,
    Node,
    NodePath,
    SEQ_TAG,
    STR_TAG,
    ScalarNode,
    SequenceNode,
    YamlFatal,
    core_float,
    core_int,
    tag_name,
    yaml_mark_of,
)

__all__ = [
    "MAX_FILE_BYTES",
    "Mark",
    "NodePath",
    "SourceMap",
    "YamlDocument",
    "load_yaml_file",
    "parse_yaml",
    "read_text",
]


class _Spot(NamedTuple):
    value: Mark
    key: Mark | None
    style: str


class _Entry(NamedTuple):
    key: str
    key_mark: Mark
    value: Node
    via: AliasNode | None  # the merge alias it came through, if any


def _describe(node: Node) -> str:
    return {ScalarNode: "a scalar", SequenceNode: "a list", MappingNode: "a mapping"}[type(node)]


def _tag_message(node: ScalarNode | SequenceNode | MappingNode) -> str:
    name = tag_name(node.tag)
    if node.tag in KEY_TAGS or node.tag in (MAP_TAG, SEQ_TAG):
        return f"tag {name} cannot be used on {_describe(node)}"
    return (
        f"tag {name} is not allowed; machine files hold plain data "
        "(text, numbers, true/false, null, lists and mappings)"
    )


class _Builder:
    """Turns the node tree into dicts, lists and scalars, recording a mark per path."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.problems: list[Problem] = []
        self.spots: dict[NodePath, _Spot] = {}
        self._aliased = 0
        self._active: set[int] = set()  # collections being built: an alias to one is recursion
        self._entries_cache: dict[int, list[_Entry]] = {}
        self._merge_depth = 0  # merges of merges are flattened recursively

    def report(self, mark: Mark, code: str, message: str) -> None:
        self.problems.append(problem(self.filename, mark.line, mark.column, code, message))

    def build(self, node: Node, path: NodePath, key_mark: Mark | None, depth: int, via: AliasNode | None) -> Any:
        if type(node) is AliasNode:
            via = via or node
            node = self._deref(node)
        if via is not None:
            self._count_aliased(via)
        self.spots[path] = _Spot(node.mark, key_mark, node.style if type(node) is ScalarNode else "")
        if type(node) is ScalarNode:
            return self._scalar(node)
        if depth >= MAX_DEPTH:
            raise YamlFatal(node.mark, "yaml-syntax", f"the document nests more than {MAX_DEPTH} levels deep")
        if not self._tag_fits(node):
            return None
        self._active.add(id(node))
        try:
            if type(node) is SequenceNode:
                return [self.build(item, (*path, i), item.mark, depth + 1, via) for i, item in enumerate(node.items)]
            return {
                e.key: self.build(e.value, (*path, e.key), e.key_mark, depth + 1, via or e.via)
                for e in self.entries(node)
            }
        finally:
            self._active.discard(id(node))

    def _deref(self, alias: AliasNode) -> Node:
        if id(alias.target) in self._active:
            raise YamlFatal(
                alias.mark,
                "yaml-alias-bomb",
                f"alias *{alias.name} is used inside its own anchor &{alias.name}, which makes an endless structure",
            )
        return alias.target

    def _count_aliased(self, via: AliasNode) -> None:
        self._aliased += 1
        if self._aliased > MAX_ALIASED_NODES:
            raise YamlFatal(
                via.mark,
                "yaml-alias-bomb",
                f"aliases expand to more than {MAX_ALIASED_NODES:,} nodes (starting with *{via.name} here); "
                "this looks like a 'billion laughs' document",
            )

    def _tag_fits(self, node: SequenceNode | MappingNode) -> bool:
        expected = SEQ_TAG if type(node) is SequenceNode else MAP_TAG
        if node.tag == expected:
            return True
        self.refuse_tag(node)
        return False

    def refuse_tag(self, node: ScalarNode | SequenceNode | MappingNode) -> None:
        self.report(node.mark, "yaml-tag", _tag_message(node))

    def _scalar(self, node: ScalarNode) -> Any:
        tag = node.tag
        if tag == STR_TAG or tag == MERGE_TAG:  # `<<` outside a key is just text
            return node.value
        if tag == NULL_TAG:
            return None
        try:
            if tag == BOOL_TAG:
                return BOOL_TEXT[node.value.lower()]
            if tag == INT_TAG:
                return core_int(node.value)
            if tag == FLOAT_TAG:
                return core_float(node.value)
        except (ValueError, KeyError, IndexError):
            # An explicit tag on the wrong text (`!!int abc`), or an int Python refuses to
            # convert (more than 4300 digits).
            shown = node.value if len(node.value) <= 40 else node.value[:37] + "..."
            self.report(node.mark, "invalid-value", f"{shown!r} is not a valid {tag_name(tag)}")
            return None
        self.refuse_tag(node)
        return None

    # mappings: keys, duplicates and merge keys

    def entries(self, node: MappingNode) -> list[_Entry]:
        """The mapping's entries in source order, merges flattened, first definitions kept."""
        cached = self._entries_cache.get(id(node))
        if cached is None:
            # Usually called from build(), which already marks the node as in progress.
            added = id(node) not in self._active
            self._active.add(id(node))
            self._merge_depth += 1
            if self._merge_depth > MAX_DEPTH:
                raise YamlFatal(node.mark, "yaml-syntax", f"merge keys nest more than {MAX_DEPTH} levels deep")
            try:
                cached = self._flatten(node)
            finally:
                self._merge_depth -= 1
                if added:
                    self._active.discard(id(node))
            self._entries_cache[id(node)] = cached
        return cached

    def _flatten(self, node: MappingNode) -> list[_Entry]:
        # Pass 1: explicit keys (they win over merged ones wherever `<<` stands).
        explicit: dict[str, Mark] = {}
        merge_mark: Mark | None = None
        items: list[_Entry | list[tuple[MappingNode, AliasNode | None]]] = []
        flat = node.flat
        for i in range(0, len(flat), 2):
            key_node, value_node = flat[i], flat[i + 1]
            key = self._key_text(key_node)
            if key is None:
                continue
            key_mark = key_node.mark
            is_merge = self._is_merge_key(key_node)
            first = merge_mark if is_merge else explicit.get(key)
            if first is not None:
                message = f"duplicate key {key!r} (first defined at line {first.line})"
                self.report(key_mark, "yaml-duplicate-key", message)
            elif is_merge:
                merge_mark = key_mark
                items.append(self._merge_sources(value_node))
            else:
                explicit[key] = key_mark
                items.append(_Entry(key, key_mark, value_node, None))
        # Pass 2: merged entries take their place at `<<`, earlier sources winning.
        result: list[_Entry] = []
        seen: set[str] = set()
        for item in items:
            if isinstance(item, _Entry):
                result.append(item)
                continue
            for source, alias in item:
                for entry in self.entries(source):
                    if entry.key in explicit or entry.key in seen:
                        continue
                    seen.add(entry.key)
                    via = alias or entry.via
                    if via is not None:
                        self._count_aliased(via)
                    result.append(entry._replace(via=via))
        return result

    def _key_text(self, key_node: Node) -> str | None:
        node = self._deref(key_node) if type(key_node) is AliasNode else key_node
        if type(node) is not ScalarNode:
            self.report(key_node.mark, "invalid-value", f"a key must be text, not {_describe(node)}")
            return None
        if node.tag not in KEY_TAGS and node.tag != MERGE_TAG:
            self.refuse_tag(node)
            return None
        # The text as written: `on`, `1`, `null` stay the strings "on", "1", "null".
        return node.value

    @staticmethod
    def _is_merge_key(key_node: Node) -> bool:
        return type(key_node) is ScalarNode and key_node.tag == MERGE_TAG

    def _merge_sources(self, value_node: Node) -> list[tuple[MappingNode, AliasNode | None]]:
        target, alias = self._merge_target(value_node)
        if type(target) is MappingNode:
            return [(target, alias)]
        if type(target) is SequenceNode and target.tag == SEQ_TAG:
            sources = []
            for item in target.items:
                source, item_alias = self._merge_target(item)
                if type(source) is MappingNode:
                    sources.append((source, item_alias or alias))
                else:
                    self._bad_merge(item)
            return sources
        self._bad_merge(value_node)
        return []

    def _merge_target(self, node: Node) -> tuple[Node, AliasNode | None]:
        if type(node) is AliasNode:
            return self._deref(node), node
        return node, None

    def _bad_merge(self, node: Node) -> None:
        message = "a merge key << takes a mapping or a list of mappings, like <<: *defaults"
        self.report(node.mark, "invalid-value", message)


# --- public API -----------------------------------------------------------------------


class SourceMap:
    """Where each node of the document is. Paths are tuples like ("states", "think", "transitions", 0, "to")."""

    __slots__ = ("_spots",)

    def __init__(self, spots: dict[NodePath, _Spot]) -> None:
        self._spots = spots

    def value(self, path: NodePath) -> Mark | None:
        """Start of the value node at `path` (for an alias: of the anchored node it stands for)."""
        spot = self._spots.get(tuple(path))
        return spot.value if spot else None

    def key(self, path: NodePath) -> Mark | None:
        """Start of the key of a mapping entry; for a list item, the item's start."""
        spot = self._spots.get(tuple(path))
        return spot.key if spot else None

    def nearest(self, path: NodePath) -> Mark:
        """The value mark of the longest prefix of `path` that exists; the document start at worst."""
        path = tuple(path)
        for end in range(len(path), -1, -1):
            spot = self._spots.get(path[:end])
            if spot is not None:
                return spot.value
        return DOCUMENT_START

    def mark(self, path: NodePath, *, key: bool = False) -> Mark:
        """Where to point a problem about `path`: its key or value, else the nearest place that exists."""
        found = self.key(path) if key else self.value(path)
        return found or self.nearest(path)

    def is_block_scalar(self, path: NodePath) -> bool:
        """True when the scalar at `path` was written with | or > (its text starts on the next line)."""
        spot = self._spots.get(tuple(path))
        return bool(spot and spot.style in ("|", ">"))

    def is_literal_block(self, path: NodePath) -> bool:
        """True when the scalar at `path` was written with |: its lines are the file's lines, one for one."""
        spot = self._spots.get(tuple(path))
        return bool(spot and spot.style == "|")


@dataclass(frozen=True, slots=True)
class YamlDocument:
    data: Any
    source_map: SourceMap


def read_text(path: pathlib.Path | str, display_name: str | None = None) -> tuple[str | None, list[Problem]]:
    """Read a machine file as UTF-8 text (a BOM is dropped); problems are placed at 1:1."""
    name = display_name or str(path)

    def fail(code: str, message: str) -> tuple[None, list[Problem]]:
        return None, [problem(name, 1, 1, code, message)]

    try:
        info = pathlib.Path(path).stat()
    except (FileNotFoundError, NotADirectoryError):
        return fail("file-not-found", f"{name} does not exist")
    except OSError as err:
        return fail("file-not-found", f"cannot read {name}: {err.strerror or err}")
    if not stat.S_ISREG(info.st_mode):
        what = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        return fail("not-a-file", f"{name} is {what}; a machine file is expected")
    if info.st_size > MAX_FILE_BYTES:
        return fail("file-too-large", _too_large(name, info.st_size))
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)  # bounded: the file may have grown since stat
    except OSError as err:
        return fail("file-not-found", f"cannot read {name}: {err.strerror or err}")
    if len(data) > MAX_FILE_BYTES:
        return fail("file-too-large", _too_large(name, len(data)))
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[bom:].decode("utf-8"), []
    except UnicodeDecodeError as err:
        return fail("file-encoding", _not_utf8(data, bom + err.start))


def _too_large(name: str, size: int) -> str:
    return f"{name} is {size:,} bytes; machine files are limited to 5 MB ({MAX_FILE_BYTES:,} bytes)"


def _not_utf8(data: bytes, offset: int) -> str:
    line = data.count(b"\n", 0, offset) + 1
    return (
        f"the file is not valid UTF-8: byte 0x{data[offset]:02x} at offset {offset} (line {line}) "
        "cannot be decoded; save the file as UTF-8"
    )


def parse_yaml(text: str, filename: str, *, mapping_root: bool = True) -> tuple[YamlDocument | None, list[Problem]]:
    """Parse machine-file text into plain data plus a SourceMap.

    `mapping_root=False` also accepts a list or a scalar as the whole document (for data
    files such as a scripted binding's `replies_file`, which may be a bare list).

    Problems about single nodes (duplicate keys, refused tags, bad keys) still return the
    document, so later checks can report more; problems about the whole stream (syntax,
    alias bombs, empty file, several documents, not a mapping) return None.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    builder = _Builder(filename)
    try:
        data = _parse(text, builder, mapping_root)
    except YamlFatal as fatal:
        builder.report(fatal.mark, fatal.code, fatal.message)
        return None, _sorted(builder.problems)
    except yaml.MarkedYAMLError as err:
        mark, message = _syntax_problem(err, text)
        builder.report(mark, "yaml-syntax", message)
        return None, _sorted(builder.problems)
    except yaml.YAMLError as err:  # unmarked (a reader error the character check missed)
        builder.report(DOCUMENT_START, "yaml-syntax", " ".join(str(err).split()))
        return None, _sorted(builder.problems)
    return YamlDocument(data, SourceMap(builder.spots)), _sorted(builder.problems)


def _parse(text: str, builder: _Builder, mapping_root: bool = True) -> Any:
    _check_characters(text)
    root, second = Composer(EventParser(text)).compose()
    if second is not None:
        raise YamlFatal(second, "yaml-multiple-documents", "the file holds more than one YAML document; keep one per file")
    if root is None or (type(root) is ScalarNode and root.tag == NULL_TAG and root.value == ""):
        raise YamlFatal(DOCUMENT_START, "yaml-empty", "the file holds no YAML document (it is empty or only comments)")
    if mapping_root and (type(root) is not MappingNode or root.tag != MAP_TAG):
        raise _root_problem(root)
    return builder.build(root, (), None, 0, None)


_ROOT_KINDS = {
    STR_TAG: "a string",
    INT_TAG: "a number",
    FLOAT_TAG: "a number",
    BOOL_TAG: "true/false",
    NULL_TAG: "null",
}


def _root_problem(root: ScalarNode | SequenceNode | MappingNode) -> YamlFatal:
    if type(root) is ScalarNode and root.tag in _ROOT_KINDS:
        kind = _ROOT_KINDS[root.tag]
    elif type(root) is SequenceNode and root.tag == SEQ_TAG:
        kind = "a list"
    else:  # a tagged root such as `!!python/object/apply:...`
        return YamlFatal(root.mark, "yaml-tag", _tag_message(root))
    return YamlFatal(
        root.mark, "not-a-mapping", f"the file must hold a mapping (keys like agentfsm:, name:, states:), not {kind}"
    )


def _check_characters(text: str) -> None:
    """Refuse characters YAML forbids, with an exact position (the parsers give only an offset)."""
    bad = Reader.NON_PRINTABLE.search(text)
    if bad is None:
        return
    start = bad.start()
    line = text.count("\n", 0, start) + 1
    column = start - (text.rfind("\n", 0, start) + 1) + 1
    raise YamlFatal(
        Mark(line, column),
        "yaml-syntax",
        f"the character U+{ord(bad.group()):04X} is not allowed in YAML "
        "(control characters and unpaired surrogates are refused)",
    )


def _syntax_problem(err: yaml.MarkedYAMLError, text: str) -> tuple[Mark, str]:
    where = err.problem_mark or err.context_mark
    mark = yaml_mark_of(where) if where is not None else DOCUMENT_START
    message = err.problem or err.context or "invalid YAML"
    if err.problem and err.context:
        context = err.context
        if err.context_mark is not None and yaml_mark_of(err.context_mark) != mark:
            start = yaml_mark_of(err.context_mark)
            context += f" started at line {start.line}, column {start.column}"
        message = f"{message} ({context})"
    if _char_at(text, mark) == "\t":
        message += "; indent with spaces, not tabs"
    return mark, " ".join(message.split())


def _char_at(text: str, mark: Mark) -> str:
    lines = text.split("\n", mark.line)
    if mark.line > len(lines):
        return ""
    line = lines[mark.line - 1]
    return line[mark.column - 1] if 0 < mark.column <= len(line) else ""


def _sorted(problems: list[Problem]) -> list[Problem]:
    # Nodes reached through several aliases would report the same problem again.
    return sorted(dict.fromkeys(problems), key=lambda p: (p.line, p.column))


def load_yaml_file(
    path: pathlib.Path | str, display_name: str | None = None, *, mapping_root: bool = True
) -> tuple[YamlDocument | None, list[Problem]]:
    """read_text + parse_yaml."""
    text, problems = read_text(path, display_name)
    if text is None:
        return None, problems
    return parse_yaml(text, display_name or str(path), mapping_root=mapping_root)
