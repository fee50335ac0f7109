"""Where a machine's templates are, and which names they may read.

Both are found through the models' fields, never per state kind: a template is a field
marked in `models.py` (`TEMPLATE_KEY`); a name is provided by a field keyed `save` or `as`
(the name) or `set` (the mapping's keys). The walks work alike on a valid machine and on
what `partial.py` could read of a refused one.
"""

from __future__ import annotations

import functools
import re
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from agentfsm.spec.annotations import is_model_type
from agentfsm.spec.expressions import RESERVED_NAMES, is_template
from agentfsm.spec.models import IDENTIFIER_PATTERN
from agentfsm.spec.partial import (
    PartialModel,
    ReadDict,
    ReadList,
    Unreadable,
    fields_of,
    models_in,
    template_kind,
    value_of,
    words,
)
from agentfsm.spec.yamlsource import NodePath

TOOL_BINDING_NAMES = frozenset({"args"})
"""The only name templates inside `tools:` see (besides Jinja's globals): the tool state's rendered `args`."""

NAMING_FIELDS = frozenset({"save", "as"})
"""Fields whose value is a context key the state assigns."""
ASSIGNING_FIELDS = frozenset({"set"})
"""Fields whose mapping's keys are context keys the state assigns."""
DECLARING_SECTIONS = frozenset({"inputs", "context"})
"""Sections of the machine whose keys are names templates see."""

_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
SEES_KEY = "x-agentfsm-sees"
"""A template field's extra names (in its `json_schema_extra`): what the kind gives it besides the context."""


@dataclass(frozen=True, slots=True)
class TemplateSite:
    """One template in the document: where it is, its text, and how it is used."""

    path: NodePath
    source: str
    kind: str  # "value" | "text" | "guard"
    sees: frozenset[str] = frozenset()
    """Names this template sees besides the machine's (a team agent's inputs see `previous`)."""


def template_sites(node: Any, path: NodePath = ()) -> Iterator[TemplateSite]:
    """Every template in a model (whole or partly read) that can be read, found through the marked fields."""
    for key, value, info in fields_of(node):
        kind = template_kind(info)
        if kind is not None and value is not None:
            sees = frozenset(info.json_schema_extra.get(SEES_KEY, ())) if info is not None and isinstance(
                info.json_schema_extra, dict) else frozenset()
            sees |= getattr(node, "names_seen_by", lambda field: frozenset())(key)
            if kind == "value":
                yield from _value_sites(value, (*path, key), sees)
            elif isinstance(value, str):
                yield TemplateSite((*path, key), value, kind, sees)
        else:
            for child, child_path in models_in(value, (*path, key)):
                yield from template_sites(child, child_path)


def _value_sites(value: Any, path: NodePath, sees: frozenset[str] = frozenset()) -> Iterator[TemplateSite]:
    if isinstance(value, str):
        if is_template(value):
            yield TemplateSite(path, value, "value", sees)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _value_sites(item, (*path, key), sees)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _value_sites(item, (*path, index), sees)


def assignment_sites(node: Any, path: NodePath = ()) -> Iterator[tuple[str, NodePath]]:
    """(name, where it is written) for every context key a state (whole or partly read) assigns."""
    for key, value, _ in fields_of(node):
        if key in NAMING_FIELDS and isinstance(value, str):
            yield value, (*path, key)
        elif key in ASSIGNING_FIELDS and isinstance(value, dict):
            for name in value:
                yield name, (*path, key, name)
        else:
            for child, child_path in models_in(value, (*path, key)):
                yield from assignment_sites(child, child_path)


def provided_names(machine: Any) -> set[str]:
    """Every name a template may read: inputs, context keys, saves, set keys, catch `as`, and the reserved ones."""
    names = set(RESERVED_NAMES)
    for section in DECLARING_SECTIONS:
        declared = value_of(machine, section)
        if isinstance(declared, dict):
            names.update(map(str, declared))
    states = value_of(machine, "states")
    if isinstance(states, dict):
        for state in states.values():
            names.update(name for name, _ in assignment_sites(state))
    return names


def names_maybe_provided(machine: Any) -> set[str] | None:
    """Names the parts that could not be read may provide, or None when those names cannot be known.

    A part standing where names are given (a `save`, `as` or `set` field, a required one that is
    missing, a field holding states or rules that give names, `inputs:`, `context:`) gives names
    no one can know once it cannot be read. A key no model defines may be a misspelled one of
    those (`sav: answer`, `input: {task: ...}`): every name-like word in it counts as provided.
    """
    found: set[str] = set()
    stack: list[tuple[Any, bool]] = [(machine, False)]
    while stack:
        node, gives_names = stack.pop()
        if isinstance(node, Unreadable):
            if gives_names:
                return None
            found.update(word for word in words(node.raw) if _IDENTIFIER.match(word))
        elif isinstance(node, PartialModel):
            if any(_gives_names(key, None) for key in node.missing):
                return None
            stack.extend((value, _gives_names(key, node.infos.get(key))) for key, value in node.fields.items())
        elif isinstance(node, ReadDict | ReadList):
            stack.extend((item, gives_names) for item in (node.values() if isinstance(node, dict) else node))
    return found


def _gives_names(key: str, info: FieldInfo | None) -> bool:
    """Whether a field gives names to templates: by itself, or through the models it holds."""
    if key in NAMING_FIELDS | ASSIGNING_FIELDS | DECLARING_SECTIONS:
        return True
    return info is not None and any(map(_model_gives_names, _models_within(info.annotation)))


@functools.cache
def _model_gives_names(model: type[BaseModel]) -> bool:
    return any(_gives_names(info.alias or name, info) for name, info in model.model_fields.items())


def _models_within(annotation: Any) -> Iterator[type[BaseModel]]:
    if is_model_type(annotation):
        yield annotation
    for argument in typing.get_args(annotation):
        yield from _models_within(argument)
