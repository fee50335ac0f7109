"""Values being built for the imported machine: JSON literals, template expressions, and objects and arrays of
them; each written either as one Jinja expression or as a YAML value whose strings are templates."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Union

from agentfsm.spec.expressions import is_template


@dataclass(frozen=True, slots=True)
class Lit:
    """A JSON value written as it is."""

    value: Any


@dataclass(frozen=True, slots=True)
class Code:
    """A Jinja expression (no braces)."""

    text: str


@dataclass(frozen=True, slots=True)
class Obj:
    """An object some of whose values are computed."""

    items: tuple[tuple[str, Value], ...]


@dataclass(frozen=True, slots=True)
class Arr:
    items: tuple[Value, ...]


Value = Union[Lit, Code, Obj, Arr]  # noqa: UP007 - a recursive alias

DOCUMENT = Code("run.data")
"""The state's input: the whole context."""
RESULT = Code("result")
"""What the state's work gave."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NOT_ATTRIBUTES = frozenset(dir(dict)) | {"and", "or", "not", "in", "is", "if", "else", "true", "false", "none",
                                          "True", "False", "None"}


def literal(value: Any) -> str:
    """A JSON value as a Jinja literal."""
    if value is None:
        return "none"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return json.dumps(value)  # Jinja reads Python's escapes, which JSON's are
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(literal(item) for item in value) + "]"
    return "{" + ", ".join(f"{json.dumps(str(key))}: {literal(item)}" for key, item in value.items()) + "}"


def expression(value: Value) -> str:
    """The value as one Jinja expression."""
    if isinstance(value, Lit):
        return literal(value.value)
    if isinstance(value, Code):
        return value.text
    if isinstance(value, Obj):
        return "{" + ", ".join(f"{json.dumps(key)}: {expression(item)}" for key, item in value.items) + "}"
    return "[" + ", ".join(expression(item) for item in value.items) + "]"


def template(value: Value) -> Any:
    """The value as YAML whose strings are templates: objects and arrays stay YAML, computed leaves `{{ }}`."""
    if isinstance(value, Lit):
        return _literal_yaml(value.value)
    if isinstance(value, Code):
        return "{{ " + value.text + " }}"
    if isinstance(value, Obj):
        return {key: template(item) for key, item in value.items}
    return [template(item) for item in value.items]


def _literal_yaml(value: Any) -> Any:
    """A literal, with any text that would read as a template written as a template giving that text."""
    if isinstance(value, str):
        return "{{ " + json.dumps(value) + " }}" if is_template(value) else value
    if isinstance(value, list):
        return [_literal_yaml(item) for item in value]
    if isinstance(value, dict):
        return {key: _literal_yaml(item) for key, item in value.items()}
    return value


def member(base: Value, steps: list[str | int]) -> Value:
    """`base` followed by keys and indexes: `run.data.order['items'][0]`."""
    if not steps:
        return base
    first = steps[0]
    if isinstance(base, Obj) and isinstance(first, str) and first in dict(base.items):
        return member(dict(base.items)[first], steps[1:])  # a key of an object being built: read it directly
    if isinstance(base, Lit) and isinstance(base.value, dict) and isinstance(first, str) and first in base.value:
        return member(Lit(base.value[first]), steps[1:])
    if isinstance(base, Lit):
        return Code(f"({literal(base.value)})" + _accessors(steps))
    text = expression(base)
    if not isinstance(base, Code) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.$\[\]\"']*", text):
        text = f"({text})"
    return Code(text + _accessors(steps))


def _accessors(steps: list[str | int]) -> str:
    parts = []
    for step in steps:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif _NAME.match(step) and step not in _NOT_ATTRIBUTES:
            parts.append("." + step)
        else:
            parts.append("[" + json.dumps(step) + "]")
    return "".join(parts)


def is_document(value: Value) -> bool:
    return value == DOCUMENT
