"""Checking a run's inputs against the machine's `inputs:` before any state runs."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from typing import Any

from agentfsm.spec.models import InputSpec
from agentfsm.spec.problems import InputError

__all__ = ["InputError", "check_inputs", "parse_cli_input"]

_TYPE_CHECKS = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "any": lambda v: True,
}


def check_inputs(declared: Mapping[str, InputSpec], given: Mapping[str, Any], extra: bool = False) -> dict[str, Any]:
    """The inputs with defaults filled in; raises InputError on a missing, unknown or ill-typed input.

    With `extra`, inputs the machine does not declare are kept as given (any JSON object is accepted).
    """
    unknown = sorted(set(given) - set(declared))
    if unknown and not extra:
        known = ", ".join(declared) if declared else "none"
        raise InputError(f"unknown input '{unknown[0]}' (this machine's inputs: {known})")
    values: dict[str, Any] = {name: copy.deepcopy(given[name]) for name in unknown} if extra else {}
    for name, spec in declared.items():
        if name in given:
            value = given[name]
            if not _TYPE_CHECKS[spec.type](value):
                raise InputError(f"input '{name}' must be {_article(spec.type)}, got {json.dumps(value)[:60]}")
            if spec.enum is not None and value not in spec.enum:
                raise InputError(f"input '{name}' must be one of {json.dumps(spec.enum)}, got {json.dumps(value)}")
            values[name] = value
        elif spec.required:
            raise InputError(f"missing required input '{name}' ({spec.type}); pass it with -i {name}=...")
        else:
            values[name] = copy.deepcopy(spec.default)
    return values


def _article(type_name: str) -> str:
    return {"integer": "an integer", "array": "an array", "object": "an object", "any": "any value"}.get(
        type_name, f"a {type_name}"
    )


def parse_cli_input(pair: str, declared: Mapping[str, InputSpec]) -> tuple[str, Any]:
    """`key=value` from `-i`: the value is JSON when it parses, else text; a declared string stays text."""
    key, sep, raw = pair.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InputError(f"-i expects key=value, got {pair!r}")
    spec = declared.get(key)
    if spec is not None and spec.type == "string":
        return key, raw
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except ValueError:
        return key, raw
    except RecursionError:  # deeper than the parser goes: refused by the inputs' check like any deep value
        raise InputError(f"input '{key}' is nested too deeply") from None
    if isinstance(value, float) and not math.isfinite(value):  # 1e999
        return key, raw
    return key, value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
