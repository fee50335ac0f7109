"""How an agentfsm state's values and `output:` become ASL's `Result`, `Parameters`, `InputPath`,
`ResultSelector`, `ResultPath` and `OutputPath` (the reverse of `flow.py`), including the forms
`agentfsm import` writes (a caught error's state, a task's answer unwrapped, a branch's input)."""

from __future__ import annotations

import math
import re
from typing import Any

from jinja2 import nodes

from agentfsm.asl.problems import Pointer, Refused
from agentfsm.asl.reverse import (
    Roots,
    _join,
    dynamic_of,
    intrinsic_of,
    literal_of,
    parse,
    path_of,
    payload_of,
    single_expression,
)
from agentfsm.spec.durations import parse_duration
from agentfsm.spec.expressions import is_template

DOC = Roots()
TASK = Roots(result="$.Payload")
RAW_RESPONSE = {"ExecutedVersion": "$LATEST", "Payload": "result", "StatusCode": 200}


def seconds(value: Any) -> int:
    """A duration as whole seconds (ASL's timers count seconds)."""
    return max(0, math.ceil(parse_duration(value)))


def _source(node: nodes.Node) -> str:
    """A list of `result.NAME` (or `result`) as the text `agentfsm import` writes for it."""
    if isinstance(node, nodes.List):
        return "[" + ", ".join(_source(item) for item in node.items) + "]"
    path = path_of(node, Roots(result="result"))
    return path if path is not None else ""


def unwrapped(payload: Any) -> Any:
    """The payload given as `input` (how `agentfsm import` passes a branch's input): the input itself."""
    if isinstance(payload, dict) and set(payload) == {"input"}:
        return payload["input"]
    if isinstance(payload, dict) and set(payload) == {"input.$"}:
        return {"input.$": payload["input.$"]} if payload["input.$"] != "$" else None
    return payload


def placed_group(state: dict[str, Any], names: list[str] | None, where: Pointer) -> dict[str, Any]:
    """ResultPath/OutputPath of a parallel (its results `result.NAME`, in order) or a map (`result`)."""
    output = state.get("output")
    if output is None:
        return {"ResultPath": None} if names is not None and not state.get("save") else {}
    if names is not None and output == ["{{ " + name + " }}" for name in names]:
        return {}  # the results in branch order, as they are
    if isinstance(output, dict):
        return {"ResultSelector": payload_of(output, Roots(result="$"), where)}
    expression = single_expression(output) if isinstance(output, str) else None
    raw = "[" + ", ".join(names) + "]" if names is not None else "result"
    if expression == raw:
        return {}
    node = parse(expression, where) if expression is not None else None
    if (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "jsonpath"
            and len(node.args) == 2 and _source(node.args[0]) == raw and isinstance(node.args[1], nodes.Const)):
        return {"ResultSelector": {"value.$": node.args[1].value}, "OutputPath": "$.value"}
    if (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "set_path"
            and len(node.args) == 3 and path_of(node.args[0], DOC) == "$"):
        ok, steps = literal_of(node.args[1])
        value = node.args[2]
        if ok and isinstance(steps, list):
            fields: dict[str, Any] = {"ResultPath": steps_path(steps)}
            if isinstance(value, nodes.Dict):
                selector: dict[str, Any] = {}
                for pair in value.items:
                    selector.update(_pair(pair.key.value, pair.value, Roots(result="$"), where))  # type: ignore[attr-defined]
                fields["ResultSelector"] = selector
                return fields
            if _source(value) == raw:
                return fields
    raise Refused(where, "this output has no Amazon States Language form")


def steps_path(steps: list[str]) -> str:
    """Keys as a JSONPath: `['a', 'b c']` -> `$.a['b c']`."""
    path = "$"
    for step in steps:
        path = _join(path, step)
    return path


def caught_error_steps(helper: dict[str, Any], key: str) -> list[str] | None:
    """The ResultPath keys of a state made by `agentfsm import` to write a caught error, or None."""
    output = helper.get("output")
    if helper.get("type") != "set" or helper.get("set") or not isinstance(output, str) or not helper.get("next"):
        return None
    expression = single_expression(output)
    if expression is None:
        return None
    if expression == f"error_object(run.data.{key})":
        return []
    prefix = f"set_path(omit(run.data, '{key}'), "
    suffix = f", error_object(run.data.{key}))"
    if expression.startswith(prefix) and expression.endswith(suffix):
        ok, steps = literal_of(parse(expression[len(prefix):-len(suffix)], ()))
        if ok and isinstance(steps, list) and all(isinstance(s, str) for s in steps):
            return steps
    return None


def assignment(name: str, key: str, value: Any, where: Pointer) -> list[tuple[str, dict[str, Any]]]:
    """Pass states setting one context key: one, or two when the value is computed (an intrinsic or text
    around values), since a Pass's Parameters make an object: `{value: X}` is placed, then unwrapped."""
    at = steps_path([key])
    if isinstance(value, str) and is_template(value):
        kind, found = dynamic_of(value, DOC, where)
        if kind == "intrinsic":
            unwrap = f"{name} (value)"
            return [(name, {"Type": "Pass", "Parameters": {"value.$": found}, "ResultPath": at}),
                    (unwrap, {"Type": "Pass", "InputPath": steps_path([key, "value"]), "ResultPath": at})]
    return [(name, {"Type": "Pass", **pass_value(value, DOC, where), "ResultPath": at})]


def raw_result_steps(output: Any) -> tuple[list[str], str | None] | None:
    """The keys of `{{ set_path(run.data, [KEYS], result) }}` (a task's answer placed as it is), and the
    OutputPath of `{{ (set_path(...)).a.b }}` when one follows."""
    expression = single_expression(output) if isinstance(output, str) else None
    if expression is None:
        return None
    out_path = None
    selected = re.fullmatch(r"\((set_path\(run\.data, .*, result\))\)((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", expression)
    if selected is not None:
        expression, out_path = selected.group(1), "$" + selected.group(2)
    if not expression.startswith("set_path(run.data, ") or not expression.endswith(", result)"):
        return None
    ok, steps = literal_of(parse(expression[len("set_path(run.data, "):-len(", result)")], ()))
    if ok and isinstance(steps, list) and steps and all(isinstance(s, str) for s in steps):
        return steps, out_path
    return None


def pass_value(value: Any, roots: Roots, where: Pointer) -> dict[str, Any]:
    """A Pass state's result for a value: `Result` (a literal), `Parameters` (an object) or `InputPath` (a path)."""
    if isinstance(value, str) and is_template(value):
        kind, found = dynamic_of(value, roots, where)
        if kind == "literal":
            return {"Result": found}
        if kind == "path":
            return {"InputPath": found}
        raise Refused(where, "a computed value that is not an object or a path has no Pass form")
    if isinstance(value, dict):
        payload = payload_of(value, roots, where)
        return {"Parameters": payload} if _dynamic(payload) else {"Result": payload}
    return {"Result": value}


def _dynamic(payload: Any) -> bool:
    if isinstance(payload, dict):
        return any(key.endswith(".$") or _dynamic(item) for key, item in payload.items())
    return False


def placed(output: Any, roots: Roots, where: Pointer, *, task: bool) -> dict[str, Any]:
    """A state's `output:` as ASL's ResultPath/OutputPath with the result (a Pass's value, a Task's selector)."""
    if isinstance(output, dict):
        return _value_fields(output, roots, where, task, [])
    if not task and not (isinstance(output, str) and is_template(output)):
        return {"Result": output}
    expression = single_expression(output) if isinstance(output, str) else None
    if expression is None:
        raise Refused(where, "this output has no Amazon States Language form")
    node = parse(expression, where)
    steps: list[str | int] = []
    while isinstance(node, nodes.Getattr | nodes.Getitem) and path_of(node, roots) is None:
        steps.insert(0, node.attr if isinstance(node, nodes.Getattr) else node.arg.value)  # type: ignore[union-attr]
        node = node.node
    out_path = steps_path([str(s) for s in steps]) if steps else None
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "set_path":
        base, keys, value = node.args
        ok, names = literal_of(keys)
        if path_of(base, roots) != "$" or not ok:
            raise Refused(where, "this output has no Amazon States Language form")
        fields = _value_node(value, roots, where, task)
        fields["ResultPath"] = steps_path(names)
    else:
        path = path_of(node, roots)
        if path is not None and path.startswith("$.Payload") and task:
            fields = {"OutputPath": path}
        elif path is not None and not task:
            fields = {"OutputPath": path} if path != "$" else {}
        else:
            fields = _value_node(node, roots, where, task)
    if out_path is not None:  # after the value's own OutputPath, if it has one
        fields["OutputPath"] = fields.get("OutputPath", "$") + out_path[1:]
    return fields


def _value_node(node: nodes.Node, roots: Roots, where: Pointer, task: bool) -> dict[str, Any]:
    ok, value = literal_of(node)
    if task and ok is False and isinstance(node, nodes.Dict) and _is_raw_response(node):
        return {}
    if ok:
        if task:
            raise Refused(where, "a task's output that ignores its result has no Amazon States Language form")
        return {"Result": value}
    if isinstance(node, nodes.Dict):
        payload = {}
        for pair in node.items:
            if not isinstance(pair.key, nodes.Const):
                raise Refused(where, "an object with computed keys has no Amazon States Language form")
            payload.update(_pair(pair.key.value, pair.value, roots, where))
        return {"ResultSelector" if task else "Parameters": payload}
    path = path_of(node, roots)
    if path is not None and not task:
        return {"InputPath": path}
    # a computed value that is not an object: select it into an object, then take it out
    return {"ResultSelector" if task else "Parameters": {"value.$": intrinsic_of(node, roots, where)},
            "OutputPath": "$.value"}


def _pair(key: str, node: nodes.Node, roots: Roots, where: Pointer) -> dict[str, Any]:
    ok, value = literal_of(node)
    if ok:
        return {key: value}
    path = path_of(node, roots)
    if path is not None:
        return {f"{key}.$": path}
    if isinstance(node, nodes.Dict):
        inner: dict[str, Any] = {}
        for pair in node.items:
            inner.update(_pair(pair.key.value, pair.value, roots, where))  # type: ignore[attr-defined]
        return {key: inner}
    return {f"{key}.$": intrinsic_of(node, roots, where)}


def _value_fields(output: dict[str, Any], roots: Roots, where: Pointer, task: bool, steps: list[str]) -> dict[str, Any]:
    payload = payload_of(output, roots, where)
    return {"ResultSelector" if task else "Parameters": payload}


def _is_raw_response(node: nodes.Dict) -> bool:
    """`{ExecutedVersion, Payload: result, StatusCode}`: a lambda:invoke's whole response, as imported."""
    keys = [pair.key.value for pair in node.items if isinstance(pair.key, nodes.Const)]
    return keys == list(RAW_RESPONSE) and any(
        isinstance(pair.value, nodes.Name) and pair.value.name == "result" for pair in node.items)
