"""What every model of the language shares: the base model, field types, and the marks on template fields."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from agentfsm.limits import MAX_DURATION_SECONDS
from agentfsm.spec.durations import parse_duration, parse_positive_duration
from agentfsm.spec.expressions import is_template

LANGUAGE_VERSION = 1

TEMPLATE_KEY = "x-agentfsm-template"
"""Marks a field holding templates: `value` (strings anywhere inside are value templates), `text`
(one template rendered to text) or `guard` (one Jinja2 expression). Checks and the compiler read it."""
VALUE_TEMPLATE = {TEMPLATE_KEY: "value"}
TEXT_TEMPLATE = {TEMPLATE_KEY: "text"}
GUARD = {TEMPLATE_KEY: "guard"}

IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN)]
"""A name templates can use: context keys, inputs, `save`, `set` keys, `as`."""
SetKey = Annotated[str, StringConstraints(pattern=r"^([A-Za-z_][A-Za-z0-9_]*|\$\$)$")]
"""A `set:` key: a name, or `$$`, the context object kept apart from the data (`run["$$"]`)."""

PYTHON_REF_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$"
PythonRef = Annotated[str, StringConstraints(pattern=PYTHON_REF_PATTERN)]

StateName = Annotated[str, StringConstraints(min_length=1)]

_DURATION_TEXT = {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)\s*$"}


def _duration_type(parse: Any, number: dict[str, Any], description: str) -> Any:
    """A duration field: seconds as a number, or text such as `30s`, parsed by `parse`, at most a year."""
    return Annotated[
        float,
        BeforeValidator(_at_most_a_year(parse)),
        WithJsonSchema({"anyOf": [{"type": "number", **number, "maximum": MAX_DURATION_SECONDS}, _DURATION_TEXT],
                        "description": description + " At most 366d."}),
    ]


def _at_most_a_year(parse: Any) -> Any:
    """`parse`, refusing durations over MAX_DURATION_SECONDS: `99999999999d` passed validate, then every run of
    the machine failed computing a date past the year 9999 (or a retry slept for ever)."""

    def parse_bounded(value: Any) -> float:
        seconds = float(parse(value))
        if seconds > MAX_DURATION_SECONDS:
            raise ValueError(f"a duration can be at most {MAX_DURATION_SECONDS // 86400}d (one year)")
        return seconds

    return parse_bounded


Duration = _duration_type(
    parse_duration, {"minimum": 0}, "Seconds as a number, or a string such as 500ms, 30s, 5m, 24h, 7d."
)
PositiveDuration = _duration_type(
    parse_positive_duration,
    {"exclusiveMinimum": 0},
    "Seconds (more than 0) as a number, or a string such as 500ms, 30s, 5m, 24h.",
)


def as_list(value: Any) -> Any:
    return [value] if isinstance(value, str | dict) else value


EventNames = Annotated[
    list[Annotated[str, StringConstraints(min_length=1)]],
    BeforeValidator(as_list),
    Field(min_length=1),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "minLength": 1}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}
    ),
]


class LanguageModel(BaseModel):
    """Base of every model of the language: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


def _timer(value: Any) -> Any:
    """A timer is a duration, or a template (rendered when the state is entered) giving one."""
    if isinstance(value, str) and is_template(value):
        return value
    seconds = parse_positive_duration(value)
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"a duration can be at most {MAX_DURATION_SECONDS // 86400}d (one year)")
    return seconds


Timer = Annotated[
    float | str,
    BeforeValidator(_timer),
    WithJsonSchema({
        "anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DURATION_SECONDS},
                  {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)\s*$"},
                  {"type": "string", "pattern": r"\{\{"}],
        "description": "Seconds (more than 0) as a number, text such as 30s, 5m, 24h, or a template giving one. "
                       "At most 366d.",
    }),
]
