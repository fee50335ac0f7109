"""ASL's data flow for one state: InputPath -> Parameters -> (work) -> ResultSelector -> ResultPath -> OutputPath,
and Retry/Catch, written as the fields of an agentfsm state."""

from __future__ import annotations

import re
from typing import Any

from agentfsm.asl.exprs import DOCUMENT, Code, Lit, Value, expression, literal, template
from agentfsm.asl.paths import Scope, read_path, reference_steps
from agentfsm.asl.payloads import payload
from agentfsm.asl.problems import AslInputError, Pointer, Refused
from agentfsm.spec.expressions import RESERVED_NAMES
from agentfsm.spec.fields import IDENTIFIER_PATTERN

ERROR_NAMES = {"States.ALL": "*", "States.Timeout": "timeout", "States.HeartbeatTimeout": "timeout",
               "States.TaskFailed": "tool.error", "States.Runtime": "template.error",
               "States.ExceedToleratedFailureThreshold": "map.failed"}
"""ASL's error names onto our taxonomy; any other name is kept (a tool raising that type matches it)."""


def effective_input(state: dict[str, Any], where: Pointer) -> Value:
    """What the state reads: the whole context, or what `InputPath` selects (`null`: an empty object)."""
    if "InputPath" not in state:
        return DOCUMENT
    if state["InputPath"] is None:
        return Lit({})
    return read_path(state["InputPath"], Scope(DOCUMENT), (*where, "InputPath"))


def parameters(state: dict[str, Any], key: str, scope: Scope, where: Pointer) -> Value:
    """`Parameters` (or `ItemSelector`) applied to the effective input; the input itself when there are none."""
    if key not in state:
        return scope.input
    return payload(state[key], scope, (*where, key))


def selected(state: dict[str, Any], result: Value, where: Pointer) -> Value:
    """`ResultSelector` applied to the state's result."""
    if "ResultSelector" not in state:
        return result
    return payload(state["ResultSelector"], Scope(result), (*where, "ResultSelector"))


def result_steps(state: dict[str, Any], where: Pointer) -> list[str] | None:
    """`ResultPath`'s keys ([] for `$`, the default), None for `null` (the result is dropped)."""
    if "ResultPath" not in state:
        return []
    return reference_steps(state["ResultPath"], (*where, "ResultPath"))


def output_of(state: dict[str, Any], value: Value, where: Pointer) -> Value:
    """The state's output: the result placed by `ResultPath` into its input, then `OutputPath`'s selection."""
    steps = result_steps(state, where)
    if steps is None:
        merged: Value = DOCUMENT
    elif not steps:
        merged = value
    else:
        merged = Code(f"set_path(run.data, {literal(steps)}, {expression(value)})")
    if "OutputPath" not in state:
        return merged
    if state["OutputPath"] is None:
        return Lit({})
    return read_path(state["OutputPath"], Scope(merged), (*where, "OutputPath"))


def place(fields: dict[str, Any], state: dict[str, Any], value: Value, where: Pointer, *, saves: str) -> None:
    """Write the state's output into `fields`: a plain `save:`/`set:` of one key when ASL's paths amount to it,
    else `output:` (the whole context replaced, by any JSON value)."""
    steps = result_steps(state, where)
    simple = (steps is not None and len(steps) == 1 and "OutputPath" not in state
              and re.fullmatch(IDENTIFIER_PATTERN, steps[0]) is not None and steps[0] not in RESERVED_NAMES)
    if simple and saves == "save" and value == Code("result"):
        fields["save"] = steps[0]  # type: ignore[index]
        return
    if simple and saves == "set":
        fields["set"] = {steps[0]: template(value)}  # type: ignore[index]
        return
    out = output_of(state, value, where)
    if out == DOCUMENT:
        return
    fields["output"] = template(out)


# -- Retry and Catch ---------------------------------------------------------------------------------


def error_names(names: Any, where: Pointer) -> list[str]:
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise AslInputError(where, "ErrorEquals needs a non-empty list of error names")
    return [ERROR_NAMES.get(name, name) for name in names]


def retry_rules(rules: Any, where: Pointer) -> list[dict[str, Any]]:
    if not isinstance(rules, list):
        raise AslInputError(where, "Retry must be a list")
    converted = []
    for index, rule in enumerate(rules):
        here = (*where, index)
        if not isinstance(rule, dict):
            raise AslInputError(here, "a retrier must be an object")
        unknown = set(rule) - {"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds",
                               "JitterStrategy", "Comment"}
        if unknown:
            raise Refused((*here, sorted(unknown)[0]), f"retrier field {sorted(unknown)[0]} is not understood")
        out: dict[str, Any] = {"errors": error_names(rule.get("ErrorEquals"), (*here, "ErrorEquals"))}
        for source, target in (("IntervalSeconds", "interval"), ("MaxAttempts", "max_attempts"),
                               ("BackoffRate", "backoff_rate"), ("MaxDelaySeconds", "max_delay")):
            if source in rule:
                value = rule[source]
                if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                    raise AslInputError((*here, source), f"{source} must be a number of at least 0")
                out[target] = value
        if out.get("backoff_rate", 2.0) < 1:
            raise AslInputError((*here, "BackoffRate"), "BackoffRate must be at least 1.0")
        if rule.get("JitterStrategy") == "FULL":
            out["jitter"] = "full"
        converted.append(out)
    return converted


def catch_rules(rules: Any, where: Pointer, reshape: Any) -> list[dict[str, Any]]:
    """Catchers as catch rules; `reshape(index, steps, next)` makes the state that writes `{Error, Cause}` where the
    catcher's `ResultPath` says and returns its name."""
    if not isinstance(rules, list):
        raise AslInputError(where, "Catch must be a list")
    converted = []
    for index, rule in enumerate(rules):
        here = (*where, index)
        if not isinstance(rule, dict) or not isinstance(rule.get("Next"), str):
            raise AslInputError(here, "a catcher must be an object with ErrorEquals and Next")
        unknown = set(rule) - {"ErrorEquals", "Next", "ResultPath", "Comment"}
        if unknown:
            raise Refused((*here, sorted(unknown)[0]), f"catcher field {sorted(unknown)[0]} is not understood")
        out: dict[str, Any] = {"errors": error_names(rule.get("ErrorEquals"), (*here, "ErrorEquals"))}
        steps = reference_steps(rule.get("ResultPath", "$"), (*here, "ResultPath"))
        if steps is None:
            out["to"] = rule["Next"]
        else:
            out["as"] = "caught_error"
            out["to"] = reshape(index, steps, rule["Next"])
        converted.append(out)
    return converted
