"""What can still be read of a machine document the models refuse as a whole.

When pydantic refuses a document, its errors say what is wrong (`diagnostics.py`); this
module reads the rest, part by part, so that the reference, template and graph checks
(`checks.py`) still run on everything that is right:

- A part is read with the annotation that types it (a model field, a list item, a mapping
  value). A part that validates is kept as pydantic returns it. Otherwise a mapping typed
  by a model becomes a `PartialModel`, read key by key; a list or mapping becomes a
  `ReadList` / `ReadDict`, read item by item; anything else becomes `Unreadable`, the value
  as written, kept so the words in it can still be looked at.
- A mapping typed by a union of models (a state, a binding) is read as every member it may
  be: the one its discriminator (`type:`, `provider:`) names; else those that define every
  key it has; else all of them. A key is read only when all those members type it alike.
- Only the models' own validators run, the same ones `MachineSpec.model_validate` runs:
  nothing the document names is imported or called.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from agentfsm.spec import annotations as hints
from agentfsm.spec.models import TEMPLATE_KEY
from agentfsm.spec.yamlsource import NodePath


class _Missing:
    """The value of a key a mapping does not have."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A value the models refuse, as written."""

    raw: Any


@dataclass(frozen=True, slots=True)
class PartialModel:
    """A mapping the models refuse as a whole, read key by key as each model it may be."""

    models: tuple[type[BaseModel], ...]
    raw: dict[str, Any]
    fields: dict[str, Any]
    """Key as written -> what could be read of its value (`Unreadable` when nothing)."""
    infos: dict[str, FieldInfo]
    """Key as written -> the field that read it; keys the models do not agree on are absent."""
    unknown: frozenset[str]
    """Keys none of the models defines."""
    missing: frozenset[str]
    """Required keys (as written) that are absent, in any of the models."""


class ReadList(list[Any]):
    """A list read item by item because it does not validate as a whole."""


class ReadDict(dict[str, Any]):
    """A mapping read entry by entry because it does not validate as a whole."""

    __slots__ = ("refused_keys",)

    def __init__(self, items: dict[str, Any], refused_keys: frozenset[str]) -> None:
        super().__init__(items)
        self.refused_keys = refused_keys
        """Keys the models refuse as names; their values are still read."""


def read_refused(model: type[BaseModel], data: Any) -> PartialModel | Unreadable:
    """What can be read of `data`, a document `model` refused: a `PartialModel`, or `Unreadable` if not a mapping."""
    return _read_parts(model, data)


def read_as(annotation: Any, raw: Any) -> Any:
    """`raw` validated as `annotation`, or what can be read of it."""
    try:
        return _adapter(annotation).validate_python(raw)
    except ValidationError:
        return _read_parts(annotation, raw)


_ADAPTERS: dict[int, tuple[Any, TypeAdapter[Any]]] = {}


def _adapter(annotation: Any) -> TypeAdapter[Any]:
    # Keyed by identity: annotations come from the models and live as long as they do; the
    # annotation is kept beside its adapter so its id is never reused.
    entry = _ADAPTERS.get(id(annotation))
    if entry is None:
        entry = _ADAPTERS[id(annotation)] = (annotation, TypeAdapter(annotation))
    return entry[1]


def _read_parts(annotation: Any, raw: Any) -> Any:
    plain = hints.plain(annotation)
    models = _models(plain)
    if models:
        return _read_model(_candidates(models, raw), raw) if isinstance(raw, dict) else Unreadable(raw)
    origin = typing.get_origin(plain)
    if origin is list and isinstance(raw, list):
        (item,) = typing.get_args(plain)
        items = ReadList(read_as(item, value) for value in raw)
        # Every item valid, yet the list refused (too short, say): the list itself is the problem.
        return items if any(map(_is_refused, items)) else Unreadable(raw)
    if origin is dict and isinstance(raw, dict):
        key_type, value_type = typing.get_args(plain)
        refused_keys = frozenset(key for key in raw if not _valid(key_type, key))
        entries = ReadDict({key: read_as(value_type, value) for key, value in raw.items()}, refused_keys)
        return entries if refused_keys or any(map(_is_refused, entries.values())) else Unreadable(raw)
    return Unreadable(raw)


def _is_refused(node: Any) -> bool:
    return isinstance(node, Unreadable | PartialModel | ReadList | ReadDict)


def _valid(annotation: Any, value: Any) -> bool:
    try:
        _adapter(annotation).validate_python(value)
    except ValidationError:
        return False
    return True


def _models(plain: Any) -> tuple[type[BaseModel], ...]:
    """The models a mapping typed `plain` may be: the model itself, or a union's models."""
    if hints.is_model_type(plain):
        return (plain,)
    if hints.is_union(plain):
        return tuple(member for member in map(hints.plain, hints.non_none(plain)) if hints.is_model_type(member))
    return ()


def _candidates(models: tuple[type[BaseModel], ...], raw: dict[str, Any]) -> tuple[type[BaseModel], ...]:
    if len(models) == 1:
        return models
    tags = _discriminators(models)
    for tag in tags:
        named = tuple(m for m in models if raw.get(tag) in typing.get_args(m.model_fields[tag].annotation))
        if named:
            return named
    keys = {str(key) for key in raw} - set(tags)
    return tuple(m for m in models if keys <= hints.fields_by_key(m).keys()) or models


def _discriminators(models: tuple[type[BaseModel], ...]) -> list[str]:
    """Fields that are a `Literal` in every model, such as a state's `type`."""
    return [
        name for name in models[0].model_fields
        if all(name in m.model_fields and typing.get_origin(m.model_fields[name].annotation) is Literal
               for m in models)
    ]


def _shape(info: FieldInfo) -> tuple[Any, ...]:
    return info.annotation, tuple(info.metadata), template_kind(info)


def _read_model(models: tuple[type[BaseModel], ...], raw: dict[str, Any]) -> PartialModel:
    fields: dict[str, Any] = {}
    infos: dict[str, FieldInfo] = {}
    unknown: set[str] = set()
    for key, value in raw.items():
        defining = [entry[1] for m in models if (entry := hints.fields_by_key(m).get(str(key))) is not None]
        fields[key] = Unreadable(value)
        if not defining:
            unknown.add(key)
        elif all(_shape(info) == _shape(defining[0]) for info in defining):
            infos[key] = defining[0]
            fields[key] = read_as(_field_annotation(defining[0]), value)
    missing = frozenset(
        info.alias or name
        for m in models for name, info in m.model_fields.items()
        if info.is_required() and name not in raw and (info.alias or name) not in raw
    )
    return PartialModel(models, raw, fields, infos, frozenset(unknown), missing)


_FIELD_ANNOTATIONS: dict[int, tuple[FieldInfo, Any]] = {}


def _field_annotation(info: FieldInfo) -> Any:
    """The field's type with its constraints and validators, as the model applies them."""
    entry = _FIELD_ANNOTATIONS.get(id(info))
    if entry is None:
        annotation = typing.Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        entry = _FIELD_ANNOTATIONS[id(info)] = (info, annotation)
    return entry[1]


# -- walking what was read -----------------------------------------------------------------------


def template_kind(info: FieldInfo | None) -> str | None:
    """How a field holds templates (`value`, `text`, `guard`; see `models.TEMPLATE_KEY`), or None."""
    extra = info.json_schema_extra if info is not None and isinstance(info.json_schema_extra, dict) else {}
    kind = extra.get(TEMPLATE_KEY)
    return None if kind is None else str(kind)


def is_model(node: Any) -> bool:
    """Whether `node` is a model, whole or partly read."""
    return isinstance(node, BaseModel | PartialModel)


def value_of(node: Any, key: str) -> Any:
    """The value of `key` (as written) in a model, whole or partly read; MISSING when it has none."""
    if isinstance(node, PartialModel):
        return node.fields.get(key, MISSING)
    if isinstance(node, BaseModel):
        entry = hints.fields_by_key(type(node)).get(key)
        return MISSING if entry is None else getattr(node, entry[0])
    return MISSING


def fields_of(node: Any) -> Iterator[tuple[str, Any, FieldInfo | None]]:
    """(key as written, value, field) of a model, whole or partly read; a partial's unread keys have no field."""
    if isinstance(node, BaseModel):
        for name, info in type(node).model_fields.items():
            yield info.alias or name, getattr(node, name), info
    elif isinstance(node, PartialModel):
        for key, value in node.fields.items():
            yield key, value, node.infos.get(key)


def models_in(value: Any, path: NodePath) -> Iterator[tuple[Any, NodePath]]:
    """The models (whole or partly read) a field's value holds: itself, or the items of a list or mapping."""
    if is_model(value):
        yield value, path
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if is_model(item):
                yield item, (*path, index)
    elif isinstance(value, dict):
        for key, item in value.items():
            if is_model(item):
                yield item, (*path, key)


def words(raw: Any) -> set[str]:
    """Every string in a value as written, mapping keys included."""
    found: set[str] = set()
    stack = [raw]
    while stack:  # a loop, not recursion: the value may nest as deep as YAML allows
        item = stack.pop()
        if isinstance(item, str):
            found.add(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def raw_of(node: Any) -> Any:
    """A part as written, when it was not read whole."""
    return node.raw if isinstance(node, Unreadable | PartialModel) else node
