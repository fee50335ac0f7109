"""Turn pydantic's validation errors into located, human problems.

pydantic reports a `loc` through the model (with union tags such as a state's kind
mixed in); we walk that `loc` through the model's annotations to find the path in the
user's document, then the line and column through the source map.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from agentfsm.spec import models
from agentfsm.spec.annotations import fields_by_key, is_model_type, is_union, unwrap
from agentfsm.spec.kinds import state_models
from agentfsm.spec.models import PROVIDERS
from agentfsm.spec.problems import Problem, problem
from agentfsm.spec.yamlsource import NodePath, SourceMap


def dotted_path(path: NodePath) -> str:
    """`states.think.transitions[0].to`: a document path as a person reads it."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` when a choice is close to `word`, else ``."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a pydantic `loc` lands: the document path, the model owning the last field, and whether it is a key."""

    path: NodePath
    owner: type[BaseModel] | None
    is_key: bool


def _union_member(annotation: Any, tag: object) -> Any | None:
    """The member of a union that pydantic names `tag` in a loc (a kind, a Tag, or a type name)."""
    for member in typing.get_args(annotation):
        tags = [m.tag for m in getattr(member, "__metadata__", ()) if hasattr(m, "tag")]
        plain = unwrap(member)
        if is_model_type(plain):
            for discriminator in ("type", "provider"):
                kind = plain.model_fields.get(discriminator)
                if kind is not None and typing.get_args(kind.annotation) == (tag,):
                    return plain
            tags.append(plain.__name__)
        tags.append(getattr(plain, "__name__", None) or str(plain))
        tags.append(str(plain).replace("typing.", ""))
        if tag in tags:
            return plain
    return None


_VALIDATOR_TAGS = ("function-after[", "function-before[", "function-wrap[", "function-plain[")


def locate(loc: Sequence[int | str]) -> _Place:
    annotation: Any = models.MachineSpec  # read here: the machine model is made once every kind is loaded
    owner: type[BaseModel] | None = None
    path: list[str | int] = []
    is_key = False
    for part in loc:
        if part == "[key]":
            is_key = True
            continue
        if isinstance(part, str) and part.startswith(_VALIDATOR_TAGS):
            continue  # a model or field validator wraps the value; the path goes on inside it
        annotation = unwrap(annotation)
        tagged = False
        while is_union(annotation):  # `X | None` where X is itself a tagged union: look inside it too
            member = _union_member(annotation, part)
            if member is not None:
                annotation, tagged = member, True
                break
            non_none = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = unwrap(non_none[0]) if len(non_none) == 1 else None
        if tagged:
            continue
        if is_model_type(annotation):
            owner = annotation
            field = _field_by_key(annotation, str(part))
            path.append(field[0] if field else part)
            annotation = field[1] if field else None
        elif typing.get_origin(annotation) is dict:
            path.append(part)
            annotation = typing.get_args(annotation)[1]
        elif typing.get_origin(annotation) is list:
            path.append(part)
            annotation = typing.get_args(annotation)[0]
        else:
            path.append(part)
            annotation = None
    return _Place(tuple(path), owner, is_key)


def _field_by_key(model: type[BaseModel], key: str) -> tuple[str, Any] | None:
    """(the key as written in YAML, the field's annotation) for a field name or alias."""
    found = fields_by_key(model).get(key)
    if found is None:
        return None
    name, info = found
    return (info.alias or name), info.annotation


def field_keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def describe_value(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string '{shown}'"
    return f"the {type(value).__name__} {value}"


def _owner_label(place: _Place) -> str:
    """`state 'think' (llm)`-style words naming what the bad field belongs to."""
    path = place.path
    if len(path) > 3:  # inside a rule or binding of a state: name that place
        return dotted_path(path[:-1])
    if len(path) >= 2 and path[0] == "states":
        kind = next((k for k, m in state_models().items() if m is place.owner), None)
        return f"state '{path[1]}'" + (f" ({kind})" if kind else "")
    if len(path) >= 2 and path[0] in ("llms", "tools", "inputs"):
        return f"{path[0][:-1]} '{path[1]}'"
    return "the machine" if len(path) <= 1 else "this mapping"


def _as_written(source_map: SourceMap, path: NodePath) -> NodePath:
    """The path as the file has it: `retry: {...}` is item 0 of a list to the models, but no list in the file."""
    if source_map.value(path) is not None:
        return path
    for index, part in enumerate(path):
        if part == 0 and source_map.value((*path[:index], 0)) is None:
            candidate = (*path[:index], *path[index + 1 :])
            if source_map.value(candidate) is not None:
                return candidate
    return path


class _Mapper:
    """Builds located problems for one file."""

    def __init__(self, source_map: SourceMap, filename: str) -> None:
        self.source_map = source_map
        self.filename = filename

    def at(self, path: NodePath, code: str, message: str, *, key: bool = False) -> Problem:
        mark = self.source_map.mark(_as_written(self.source_map, path), key=key)
        return problem(self.filename, mark.line, mark.column, code, message)

    def convert(self, error: ErrorDetails, place: _Place) -> Problem:
        """The problem pydantic's `error` at `place` is, in the language's words."""
        found = _Found(error["type"], error.get("ctx") or {}, error.get("input"), place, error["msg"])
        explain = _EXPLAINERS.get(found.kind)
        if explain is not None:
            return explain(self, found)
        if found.kind in _BOUNDS:
            limit = next(iter(found.ctx.values()), "?")
            return self.at(place.path, "invalid-value",
                           f"{found.dotted}: must be {_BOUNDS[found.kind]} {limit}, got {found.value!r}")
        if found.kind in _TYPE_WORDS:
            return self.at(place.path, "invalid-value",
                           f"{found.dotted}: expected {_TYPE_WORDS[found.kind]}, got {describe_value(found.value)}")
        return self.at(place.path, "invalid-value", f"{found.dotted}: {error['msg']}")

    def _missing(self, found: _Found) -> Problem:
        path = found.place.path
        if path == ("agentfsm",):
            return self.at((), "version", "missing 'agentfsm: 1' (the language version) at the top of the file")
        return self.at(path[:-1], "missing-field",
                       f"{_owner_label(found.place)} is missing the required field '{found.last}'", key=True)

    def _extra(self, found: _Found) -> Problem:
        path, last, dotted = found.place.path, found.last, found.dotted
        if last == "on":
            return self.at(path, "on-key", f"{dotted}: YAML 1.1 reads a bare 'on:' as the boolean true; write "
                                           "transition rules under 'transitions:' as a list of {event, when, to, set}",
                           key=True)
        choices = field_keys(found.place.owner) if found.place.owner else []
        return self.at(path, "unknown-field", f"{dotted}: unknown field '{last}' for {_owner_label(found.place)}"
                                              f"{did_you_mean(last, choices)}", key=True)

    def _unknown_tag(self, found: _Found) -> Problem:
        path, dotted, tag = found.place.path, found.dotted, found.ctx.get("tag")
        if len(path) == 2 and path[0] == "states":
            return self.at((*path, "type"), "unknown-state-type",
                           f"{dotted}.type: unknown state type '{tag}'{did_you_mean(str(tag), state_models())} "
                           f"(one of: {', '.join(state_models())})")
        if len(path) == 2 and path[0] == "llms":
            return self.at((*path, "provider"), "unknown-provider",
                           f"{dotted}.provider: unknown provider '{tag}'{did_you_mean(str(tag), PROVIDERS)} "
                           f"(one of: {', '.join(PROVIDERS)})")
        return self.at(path, "invalid-value", f"{dotted}: unknown kind '{tag}'")

    def _no_tag(self, found: _Found) -> Problem:
        return self.at(found.place.path, "missing-field",
                       f"{found.dotted}: a state needs 'type:' (one of: {', '.join(state_models())})", key=True)

    def _no_tool_kind(self, found: _Found) -> Problem:
        return self.at(found.place.path, "invalid-value", f"{found.dotted}: {found.message}", key=True)

    def _not_literal(self, found: _Found) -> Problem:
        path, dotted, value = found.place.path, found.dotted, found.value
        expected = str(found.ctx.get("expected", ""))
        if path == ("agentfsm",):
            return self.at(path, "version",
                           f"agentfsm: unsupported language version {value!r} (this release reads agentfsm: 1)")
        if found.last == "provider":
            return self.at(path, "unknown-provider",
                           f"{dotted}: unknown provider {value!r} (available: {expected.replace(chr(39), '')})")
        options = [o.strip().strip("'") for o in expected.replace(" or ", ",").split(",") if o.strip()]
        return self.at(path, "invalid-value",
                       f"{dotted}: {value!r} is not one of {', '.join(options)}{did_you_mean(str(value), options)}")

    def _bad_pattern(self, found: _Found) -> Problem:
        path, dotted, value = found.place.path, found.dotted, found.value
        if found.last == "api_key_env":  # never echo the value: it may be a pasted key
            return self.at(path, "invalid-value", f"{dotted}: must name an environment variable (such as "
                                                  "OPENAI_API_KEY) that holds the key, not the key itself")
        if found.place.is_key:
            return self.at(path, "invalid-name", f"{dotted}: '{found.last}' is not a valid name: use letters, "
                                                 "digits and _, not starting with a digit", key=True)
        if ":" in str(found.ctx.get("pattern", "")):
            return self.at(path, "invalid-value", f"{dotted}: {value!r} is not a Python reference; "
                                                  "write module:attribute, e.g. mypkg.tools:search")
        return self.at(path, "invalid-name", f"{dotted}: {value!r} is not a valid name: use letters, digits "
                                             "and _, not starting with a digit")

    def _empty(self, found: _Found) -> Problem:
        path = found.place.path
        if found.place.is_key:
            return self.at(path, "invalid-name", f"{dotted_path(path[:-1])}: a name must not be empty", key=True)
        return self.at(path, "invalid-value", f"{found.dotted}: must not be empty")

    def _too_few(self, found: _Found) -> Problem:
        return self.at(found.place.path, "invalid-value",
                       f"{found.dotted}: needs at least {found.ctx.get('min_length', 1)} item(s)")

    def _invalid(self, found: _Found) -> Problem:
        return self.at(found.place.path, "invalid-value", f"{found.dotted}: {found.ctx.get('error')}")


@dataclass(frozen=True, slots=True)
class _Found:
    """One pydantic error, with what every explanation of it reads."""

    kind: str
    ctx: dict[str, Any]
    value: Any
    place: _Place
    message: str
    """pydantic's own words (the model's, for a custom error)"""

    @property
    def last(self) -> str:
        return str(self.place.path[-1]) if self.place.path else ""

    @property
    def dotted(self) -> str:
        return dotted_path(self.place.path)


_EXPLAINERS: dict[str, Callable[[_Mapper, _Found], Problem]] = {
    "missing": _Mapper._missing,
    "extra_forbidden": _Mapper._extra,
    "union_tag_invalid": _Mapper._unknown_tag,
    "union_tag_not_found": _Mapper._no_tag,
    "tool_kind": _Mapper._no_tool_kind,
    "literal_error": _Mapper._not_literal,
    "string_pattern_mismatch": _Mapper._bad_pattern,
    "string_too_short": _Mapper._empty,
    "too_short": _Mapper._too_few,
    "value_error": _Mapper._invalid,
}
"""How each kind of pydantic error is told; the bounds and the type errors share one wording each."""
_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


def validation_problems(exc: ValidationError, data: Any, source_map: SourceMap, filename: str) -> list[Problem]:
    """One problem per offending place; alternatives of one union are merged into one message."""
    mapper = _Mapper(source_map, filename)
    by_path: dict[NodePath, list[tuple[ErrorDetails, _Place]]] = {}
    for error in exc.errors(include_url=False):
        place = locate(error["loc"])
        key = (*place.path, "[key]") if place.is_key else place.path
        by_path.setdefault(key, []).append((error, place))
    problems = []
    for path, entries in by_path.items():
        type_words = [_TYPE_WORDS[e["type"]] for e, _ in entries if e["type"] in _TYPE_WORDS]
        if len(type_words) == len(entries) and any(len(o) > len(path) and o[: len(path)] == path for o in by_path):
            continue  # a union member that got further reports the real problem deeper in this value
        if len(entries) > 1 and len(type_words) == len(entries):
            error, place = entries[0]
            dotted = dotted_path(place.path)
            words = " or ".join(dict.fromkeys(type_words))
            problems.append(mapper.at(place.path, "invalid-value",
                                      f"{dotted}: expected {words}, got {describe_value(error.get('input'))}"))
            continue
        if 0 < len(type_words) < len(entries):
            # one member of a union matched the type and then failed for a real reason: report that only
            entries = [(e, p) for e, p in entries if e["type"] not in _TYPE_WORDS]
        seen: set[str] = set()
        for error, place in entries:
            converted = mapper.convert(error, place)
            if converted.message not in seen:
                seen.add(converted.message)
                problems.append(converted)
    return problems
