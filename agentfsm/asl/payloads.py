"""Payload templates (`Parameters`, `ResultSelector`, `ItemSelector`) and Choice rules as template values/guards."""

from __future__ import annotations

import json
from typing import Any

from agentfsm.asl.exprs import Arr, Lit, Obj, Value, expression, literal
from agentfsm.asl.paths import Scope, check_path, intrinsic, is_intrinsic, read_path
from agentfsm.asl.problems import AslInputError, Pointer, Refused
from agentfsm.spec.timestamps import is_rfc3339


def payload(template: Any, scope: Scope, where: Pointer) -> Value:
    """A payload template: keys ending in `.$` take a path's value or an intrinsic's result, others are kept."""
    if isinstance(template, dict):
        items: list[tuple[str, Value]] = []
        for key, value in template.items():
            here = (*where, key)
            if isinstance(key, str) and key.endswith(".$"):
                items.append((key[:-2], dynamic(value, scope, here)))
            else:
                items.append((str(key), payload(value, scope, here)))
        if all(isinstance(value, Lit) for _, value in items):
            return Lit({key: value.value for key, value in items})  # type: ignore[union-attr]
        return Obj(tuple(items))
    if isinstance(template, list):
        values = [payload(item, scope, (*where, index)) for index, item in enumerate(template)]
        if all(isinstance(value, Lit) for value in values):
            return Lit([value.value for value in values])  # type: ignore[union-attr]
        return Arr(tuple(values))
    return Lit(template)


def dynamic(value: Any, scope: Scope, where: Pointer) -> Value:
    """The value of a `.$` key: a path, or an intrinsic function."""
    if is_intrinsic(value):
        return intrinsic(value, scope, where)
    if isinstance(value, str) and value.startswith("$"):
        return read_path(value, scope, where)
    raise AslInputError(where, f"a key ending in '.$' needs a path or an intrinsic function, got {json.dumps(value)}")


# -- Choice rules ------------------------------------------------------------------------------------

_COMPARE = {"Equals": "==", "LessThan": "<", "GreaterThan": ">", "LessThanEquals": "<=", "GreaterThanEquals": ">="}
_KINDS = {"String": "string", "Numeric": "numeric", "Boolean": "boolean", "Timestamp": "timestamp"}
_TYPE_TESTS = {"IsNumeric": "numeric", "IsString": "string", "IsBoolean": "boolean", "IsTimestamp": "timestamp",
               "IsNull": "none"}
_RULE_KEYS = {"Variable", "Next", "Comment"}


def guard(rule: Any, scope: Scope, where: Pointer, top: bool = True) -> str:
    """A Choice rule (a comparison, or And/Or/Not of them) as a guard expression."""
    if not isinstance(rule, dict):
        raise AslInputError(where, "a choice rule must be an object")
    for key, combine in (("And", " and "), ("Or", " or ")):
        if key in rule:
            rules = rule[key]
            if not isinstance(rules, list) or not rules:
                raise AslInputError((*where, key), f"{key} needs a non-empty list of rules")
            parts = [guard(item, scope, (*where, key, index), False) for index, item in enumerate(rules)]
            return "(" + combine.join(parts) + ")"
    if "Not" in rule:
        return "not " + guard(rule["Not"], scope, (*where, "Not"), False)
    operators = [key for key in rule if key not in _RULE_KEYS]
    if len(operators) != 1:
        raise AslInputError(where, f"a choice rule needs exactly one comparison, found {operators or 'none'}")
    if "Variable" not in rule:
        raise AslInputError(where, "a choice rule needs 'Variable' (or And/Or/Not)")
    operator = operators[0]
    if operator == "IsPresent":
        path = check_path(rule["Variable"], (*where, "Variable"))
        if path.startswith("$$"):
            raise Refused((*where, "Variable"), "IsPresent on the context object has no meaning in a local run")
        return _flag(f"has_path({expression(scope.input)}, {json.dumps(path)})", rule[operator], (*where, operator))
    variable = expression(read_path(rule["Variable"], scope, (*where, "Variable")))
    return comparison(operator, variable, rule[operator], scope, (*where, operator))


def comparison(operator: str, variable: str, operand: Any, scope: Scope, where: Pointer) -> str:
    if operator in _TYPE_TESTS:
        return _flag(f"{variable} is {_TYPE_TESTS[operator]}", operand, where)
    if operator == "StringMatches":
        if not isinstance(operand, str):
            raise AslInputError(where, "StringMatches needs a string pattern")
        return f"{variable} is wildcard({json.dumps(operand)})"
    is_path = operator.endswith("Path")
    base = operator.removesuffix("Path")
    kind = next((k for k in _KINDS if base.startswith(k)), None)
    relation = _COMPARE.get(base[len(kind):]) if kind else None
    if kind is None or relation is None or (kind == "Boolean" and relation != "=="):
        raise AslInputError(where, f"unknown comparison operator {operator!r}")
    test = _KINDS[kind]
    if is_path:
        other = expression(read_path(operand, scope, where))
        checks = f"{variable} is {test} and {other} is {test}"
    else:
        _check_operand(kind, operand, where)
        other, checks = literal(operand), f"{variable} is {test}"
    if kind == "Timestamp":
        return f"({checks} and {variable}|to_epoch {relation} {other}|to_epoch)"
    return f"({checks} and {variable} {relation} {other})"


def _flag(test: str, operand: Any, where: Pointer) -> str:
    if not isinstance(operand, bool):
        raise AslInputError(where, "needs true or false")
    return f"({test})" if operand else f"not ({test})"


def _check_operand(kind: str, operand: Any, where: Pointer) -> None:
    fits = {
        "String": isinstance(operand, str),
        "Numeric": isinstance(operand, int | float) and not isinstance(operand, bool),
        "Boolean": isinstance(operand, bool),
        "Timestamp": is_rfc3339(operand),
    }[kind]
    if not fits:
        raise AslInputError(where, f"{where[-1]} needs {'a timestamp' if kind == 'Timestamp' else kind.lower()} "
                            f"value, got {json.dumps(operand)}")
