"""A function's arguments as a pydantic model: checked before every call, and described as JSON Schema.

Built once per binding, when the run starts, from `inspect.signature` and the type hints.
A parameter without a hint accepts anything; `**kwargs` accepts unknown names; `*args` and
positional-only parameters cannot be given by name, so they take no part (a required
positional-only parameter makes the function unusable as a tool: a BindingError).
Validation is pydantic's lax mode: `"3"` becomes 3 for an `int`, a mapping becomes a
model for a BaseModel-typed parameter.
"""

from __future__ import annotations

import inspect
import typing
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from agentfsm.bindings.imports import BindingError
from agentfsm.runtime.errors import StateError


def _first_line(text: str | None) -> str | None:
    lines = [line.strip() for line in (text or "").strip().splitlines()]
    return lines[0] if lines and lines[0] else None


class Arguments:
    """The argument model of one function; `check(args)` returns the keywords to call it with."""

    def __init__(self, tool: str, function: Callable[..., Any], where: str) -> None:
        self.tool = tool
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):  # a builtin without a signature: anything goes, unchecked
            signature = None
        try:
            hints = typing.get_type_hints(function, include_extras=True)
        except Exception:  # noqa: BLE001 - a hint naming something undefined: the parameter takes anything
            hints = {}
        fields: dict[str, Any] = {}
        self._names: dict[str, str] = {}  # field name -> parameter name
        accepts_more = signature is None
        for index, parameter in enumerate((signature.parameters.values() if signature else ())):
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                accepts_more = True
                continue
            if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
                if parameter.kind is inspect.Parameter.POSITIONAL_ONLY and parameter.default is parameter.empty:
                    raise BindingError(f"{where}: parameter '{parameter.name}' is positional-only; a tool is "
                                       "called with keyword arguments")
                continue
            field_name = f"p{index}"  # the parameter's own name is the alias: any name is valid, even `json`
            annotation = hints.get(parameter.name, Any)
            default = ... if parameter.default is parameter.empty else parameter.default
            fields[field_name] = (annotation, Field(default, alias=parameter.name))
            self._names[field_name] = parameter.name
        config = ConfigDict(extra="allow" if accepts_more else "forbid", arbitrary_types_allowed=True,
                            populate_by_name=False)
        try:
            self.model: type[BaseModel] = create_model(f"{tool}_arguments", __config__=config, **fields)
        except Exception as exc:  # noqa: BLE001 - a hint pydantic cannot use
            raise BindingError(f"{where}: cannot check its arguments: {exc}") from None
        self.description = _first_line(inspect.getdoc(function))

    def check(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """The validated keywords; StateError `tool.bad_arguments` naming the tool and the argument."""
        try:
            validated = self.model.model_validate(dict(args))
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False)
            raise StateError("tool.bad_arguments", self._message(errors),
                             detail={"tool": self.tool, "errors": [_plain(e) for e in errors]}) from None
        keywords = {self._names[name]: getattr(validated, name) for name in validated.model_fields_set
                    if name in self._names}
        keywords.update(validated.model_extra or {})
        return keywords

    def _message(self, errors: list[Any]) -> str:
        first = errors[0]
        loc = [str(part) for part in first["loc"]]
        name = loc[0] if loc else "?"
        inner = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
        if first["type"] == "missing" and len(loc) == 1:
            text = f"missing required argument '{name}'"
        elif first["type"] == "extra_forbidden" and len(loc) == 1:
            text = f"unexpected argument '{name}' (it takes {self._takes()})"
        else:
            text = f"argument '{name}{inner}': {first['msg']}"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"tool '{self.tool}': {text}{more}"

    def _takes(self) -> str:
        names = list(self._names.values())
        return ", ".join(names) if names else "no arguments"

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON Schema (an object) of the arguments."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # defaults that are not JSON are left out, which pydantic warns about
            try:
                schema = self.model.model_json_schema(by_alias=True)
            except Exception:  # noqa: BLE001 - a type with no JSON Schema: describe the names alone
                required = [self._names[n] for n, f in self.model.model_fields.items() if f.is_required()]
                schema = {"type": "object", "properties": {name: {} for name in self._names.values()},
                          "required": required}
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            if isinstance(prop, dict):
                prop.pop("title", None)
        if self.model.model_config.get("extra") == "forbid":
            schema["additionalProperties"] = False
        return schema


def _plain(error: Any) -> dict[str, Any]:
    """A validation error as JSON data: where, what, message."""
    return {"loc": [str(p) for p in error["loc"]], "type": error["type"], "msg": error["msg"]}


def scalar_text(value: Any) -> str | None:
    """A JSON scalar as one piece of text (booleans spelled as JSON does); None for null, lists and mappings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value if isinstance(value, str) else None
