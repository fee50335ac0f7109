"""Templates back into ASL: a path into the context (`run.data.a['b'][0]`, or a context key `a.b`) becomes a
JSONPath (`$.a.b[0]`), a call of an intrinsic (`States.Format(...)`) its ASL text, a template mixing text and
values `States.Format`, and a guard a Choice rule. What has no ASL form raises Refused."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.parser import Parser

from agentfsm.asl.problems import Pointer, Refused
from agentfsm.spec.expressions import ENVIRONMENT, is_template

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RELATIONS = {"eq": "Equals", "lt": "LessThan", "gt": "GreaterThan", "lteq": "LessThanEquals",
              "gteq": "GreaterThanEquals"}
_MIRRORED = {"lt": "gt", "gt": "lt", "lteq": "gteq", "gteq": "lteq", "eq": "eq"}
_TYPE_TESTS = {"numeric": "IsNumeric", "number": "IsNumeric", "string": "IsString", "boolean": "IsBoolean",
               "timestamp": "IsTimestamp"}


@dataclass(frozen=True, slots=True)
class Roots:
    """What names mean: `run.data` and the context's keys are the document `$`; `result` is `result_path`."""

    result: str | None = None
    """The JSONPath `result` stands for (`$.Payload` in a lambda:invoke's ResultSelector), None: not visible."""
    names: tuple[tuple[str, str], ...] = ()
    """Names that stand for a path of their own (a map's item: `$$.Map.Item.Value`)."""


def parse(source: str, where: Pointer) -> nodes.Expr:
    try:
        parser = Parser(ENVIRONMENT, source, state="variable")
        expression = parser.parse_expression()
    except Exception as exc:  # noqa: BLE001 - any parse failure means: not a form we write back
        raise Refused(where, f"cannot read the expression {source!r}: {exc}") from None
    if not parser.stream.eos:
        raise Refused(where, f"cannot read the expression {source!r}")
    return expression


def single_expression(text: str) -> str | None:
    """The expression of a template that is exactly `{{ expr }}`, else None."""
    match = re.fullmatch(r"\s*\{\{(.*)\}\}\s*", text, re.DOTALL)
    if match is None or "{{" in match.group(1) or "}}" in match.group(1):
        return None
    return match.group(1).strip()


def _join(base: str, step: str | int) -> str:
    if isinstance(step, int):
        return f"{base}[{step}]"
    if _NAME.match(step):
        return f"{base}.{step}"
    return f"{base}['{step}']"


TASK_TOKEN = 'run.id ~ "/" ~ run.state'
"""How `agentfsm import` writes `$$.Task.Token`."""


def path_of(node: nodes.Node, roots: Roots) -> str | None:
    """The JSONPath a node reads, or None when it is not a plain path."""
    if isinstance(node, nodes.Concat) and _is_task_token(node):
        return "$$.Task.Token"
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "now_timestamp":
        return "$$.State.EnteredTime"
    if (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "jsonpath"
            and len(node.args) == 2 and isinstance(node.args[1], nodes.Const)):
        base = path_of(node.args[0], roots)
        text = str(node.args[1].value)
        return None if base is None or not text.startswith("$") else base + text[1:]
    steps: list[str | int] = []
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        if isinstance(node, nodes.Getattr):
            steps.append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str | int):
            steps.append(node.arg.value)
        else:
            return None
        node = node.node
    steps.reverse()
    if not isinstance(node, nodes.Name):
        return None
    if node.name == "run" and steps[:1] == ["data"]:
        base, steps = "$", steps[1:]
    elif node.name == "run" and steps[:1] == ["$$"] and steps[1:2] != []:
        base, steps = "$$", steps[1:]
    elif node.name == "run" and steps in (["id"],):
        return "$$.Execution.Id"
    elif node.name == "run" and steps == ["state"]:
        return "$$.State.Name"
    elif node.name == "result":
        if roots.result is None:
            return None
        base = roots.result
    elif node.name in ("run", "event"):
        return None
    elif node.name in dict(roots.names):
        base = dict(roots.names)[node.name]
    else:
        base = _join("$", node.name)
    for step in steps:
        base = _join(base, step)
    return base


def _is_task_token(node: nodes.Concat) -> bool:
    parts = node.nodes
    return (len(parts) == 3 and path_of(parts[0], Roots()) == "$$.Execution.Id"
            and isinstance(parts[1], nodes.Const) and parts[1].value == "/"
            and path_of(parts[2], Roots()) == "$$.State.Name")


def literal_of(node: nodes.Node) -> tuple[bool, Any]:
    """(True, value) for a constant, a list or a dict of constants."""
    if isinstance(node, nodes.Const):
        return True, node.value
    if isinstance(node, nodes.Neg) and isinstance(node.node, nodes.Const):
        return True, -node.node.value
    if isinstance(node, nodes.List):
        values = [literal_of(item) for item in node.items]
        return all(ok for ok, _ in values), [value for _, value in values]
    if isinstance(node, nodes.Dict):
        pairs = [(literal_of(pair.key), literal_of(pair.value)) for pair in node.items]
        ok = all(k[0] and v[0] for k, v in pairs)
        return ok, {k[1]: v[1] for k, v in pairs} if ok else None
    return False, None


def argument(node: nodes.Node, roots: Roots, where: Pointer) -> str:
    """An intrinsic's argument: a path, a quoted string, a number, null, or another intrinsic."""
    path = path_of(node, roots)
    if path is not None:
        return path
    ok, value = literal_of(node)
    if ok and isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if ok and (value is None or isinstance(value, bool | int | float)):
        return json.dumps(value)
    return intrinsic_of(node, roots, where)


def intrinsic_of(node: nodes.Node, roots: Roots, where: Pointer) -> str:
    if (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr)
            and isinstance(node.node.node, nodes.Name) and node.node.node.name == "States" and not node.kwargs):
        name = node.node.attr
        args = node.args
        if name == "Format" and args and isinstance(args[0], nodes.Const):  # keep its escapes as ASL writes them
            text = str(args[0].value).replace("'", "\\'")
            rest = [argument(arg, roots, where) for arg in args[1:]]
            return f"States.Format('{text}'" + "".join(", " + item for item in rest) + ")"
        return f"States.{name}(" + ", ".join(argument(arg, roots, where) for arg in args) + ")"
    raise Refused(where, "has no Amazon States Language form (only paths, literals and States.* functions do)")


def dynamic_of(source: str, roots: Roots, where: Pointer) -> tuple[str, Any]:
    """A template's value: ("literal", value), ("path", "$.x") or ("intrinsic", "States.F(...)")."""
    expression = single_expression(source)
    if expression is None:
        return "intrinsic", _format_of(source, roots, where)
    node = parse(expression, where)
    path = path_of(node, roots)
    if path is not None:
        return "path", path
    ok, value = literal_of(node)
    if ok:
        return "literal", value
    return "intrinsic", intrinsic_of(node, roots, where)


def _format_of(source: str, roots: Roots, where: Pointer) -> str:
    """Text around values (`Hi {{ name }}!`) as `States.Format('Hi {}!', $.name)`."""
    try:
        body = ENVIRONMENT.parse(source).body
    except Exception:  # noqa: BLE001
        raise Refused(where, f"cannot read the template {source!r}") from None
    if len(body) != 1 or not isinstance(body[0], nodes.Output):
        raise Refused(where, "a template with blocks ({% %}) has no Amazon States Language form")
    text, args = [], []
    for part in body[0].nodes:
        if isinstance(part, nodes.TemplateData):
            text.append(part.data.replace("\\", "\\\\").replace("{", "\\{").replace("}", "\\}"))
        else:
            text.append("{}")
            args.append(argument(part, roots, where))
    quoted = "".join(text).replace("'", "\\'")
    return f"States.Format('{quoted}'" + "".join(", " + arg for arg in args) + ")"


def payload_of(value: Any, roots: Roots, where: Pointer) -> Any:
    """A value template (YAML with templates inside) as an ASL payload template (keys ending in `.$`)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(item, str) and is_template(item):
                kind, found = dynamic_of(item, roots, (*where, key))
                if kind == "literal":
                    out[key] = found
                else:
                    out[f"{key}.$"] = found
            else:
                out[key] = payload_of(item, roots, (*where, key))
        return out
    if isinstance(value, list):
        if any(isinstance(item, str) and is_template(item) for item in value):
            raise Refused(where, "a list holding templates has no ASL payload form (write an object)")
        return value
    return value


# -- guards as Choice rules --------------------------------------------------------------------------

_KIND_OF_TEST = {"numeric": "Numeric", "number": "Numeric", "string": "String", "boolean": "Boolean",
                 "timestamp": "Timestamp"}


def rule_of(source: str, roots: Roots, where: Pointer) -> dict[str, Any]:
    """A guard as a Choice rule (without `Next`)."""
    return _rule(parse(source, where), roots, where, {})


def _rule(node: nodes.Node, roots: Roots, where: Pointer, kinds: dict[str, str]) -> dict[str, Any]:
    if isinstance(node, nodes.And | nodes.Or):
        parts = _flatten(node, type(node))
        if isinstance(node, nodes.And):
            kinds = {**kinds, **_type_hints(parts, roots)}
            compared = {path for part in parts for path in _compared_paths(part, roots)}
            parts = [part for part in parts if not _implied_test(part, roots, compared)]
        rules = [_rule(part, roots, where, kinds) for part in parts]
        if len(rules) == 1:
            return rules[0]
        return {"And" if isinstance(node, nodes.And) else "Or": rules}
    if isinstance(node, nodes.Not):
        return {"Not": _rule(node.node, roots, where, kinds)}
    if isinstance(node, nodes.Test):
        return _test(node, roots, where)
    if (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "has_path"
            and len(node.args) == 2 and isinstance(node.args[1], nodes.Const)):
        base = path_of(node.args[0], roots)
        if base == "$":
            return {"Variable": node.args[1].value, "IsPresent": True}
    if isinstance(node, nodes.Compare) and len(node.ops) == 1:
        return _compare(node.expr, node.ops[0].op, node.ops[0].expr, roots, where, kinds)
    raise Refused(where, "this guard has no Choice rule form (comparisons of a path with a value or a path, "
                  "is-tests, and/or/not)")


def _flatten(node: nodes.Node, kind: type) -> list[nodes.Node]:
    if isinstance(node, kind):
        return _flatten(node.left, kind) + _flatten(node.right, kind)  # type: ignore[attr-defined]
    return [node]


def _type_hints(parts: list[nodes.Node], roots: Roots) -> dict[str, str]:
    hints = {}
    for part in parts:
        if isinstance(part, nodes.Test) and part.name in _KIND_OF_TEST:
            path = path_of(part.node, roots)
            if path is not None:
                hints[path] = _KIND_OF_TEST[part.name]
    return hints


def _compared_paths(node: nodes.Node, roots: Roots) -> list[str]:
    if not isinstance(node, nodes.Compare):
        return []
    found = [path_of(_unwrap(node.expr), roots), path_of(_unwrap(node.ops[0].expr), roots)]
    return [path for path in found if path is not None]


def _implied_test(node: nodes.Node, roots: Roots, compared: set[str]) -> bool:
    """A type test a comparison of the same path already makes (ASL's comparisons are false across types)."""
    return (isinstance(node, nodes.Test) and node.name in _KIND_OF_TEST
            and path_of(node.node, roots) in compared)


def _unwrap(node: nodes.Node) -> nodes.Node:
    return node.node if isinstance(node, nodes.Filter) and node.name == "to_epoch" else node


def _test(node: nodes.Test, roots: Roots, where: Pointer) -> dict[str, Any]:
    path = path_of(node.node, roots)
    if path is None:
        raise Refused(where, "an is-test in a guard must test a path")
    if node.name in _TYPE_TESTS:
        return {"Variable": path, _TYPE_TESTS[node.name]: True}
    if node.name == "none":
        return {"Variable": path, "IsNull": True}
    if node.name == "defined":
        return {"Variable": path, "IsPresent": True}
    if node.name == "undefined":
        return {"Variable": path, "IsPresent": False}
    if node.name == "wildcard" and len(node.args) == 1 and isinstance(node.args[0], nodes.Const):
        return {"Variable": path, "StringMatches": node.args[0].value}
    raise Refused(where, f"the test 'is {node.name}' has no Choice rule form")


def _compare(left: nodes.Node, op: str, right: nodes.Node, roots: Roots, where: Pointer,
             kinds: dict[str, str]) -> dict[str, Any]:
    timestamp = isinstance(left, nodes.Filter) and left.name == "to_epoch"
    left, right = _unwrap(left), _unwrap(right)
    if op == "ne":
        return {"Not": _compare(left, "eq", right, roots, where, kinds)}
    if op not in _RELATIONS:
        raise Refused(where, f"the comparison '{op}' has no Choice rule form")
    variable = path_of(left, roots)
    if variable is None:
        variable, left, right, op = path_of(right, roots), right, left, _MIRRORED[op]
    if variable is None:
        raise Refused(where, "a comparison in a guard must have a path on one side")
    other = path_of(right, roots)
    if other is not None:
        kind = "Timestamp" if timestamp else kinds.get(variable) or kinds.get(other)
        if kind is None:
            raise Refused(where, f"comparing {variable} with {other}: say their type first (`is numeric`, "
                          "`is string`...) so the Choice rule can be written")
        return {"Variable": variable, f"{kind}{_RELATIONS[op]}Path": other}
    ok, value = literal_of(right)
    if not ok:
        raise Refused(where, "a comparison in a guard must compare a path with a value or a path")
    if value is None and op == "eq":
        return {"Variable": variable, "IsNull": True}
    if isinstance(value, bool):
        kind = "Boolean"
    elif isinstance(value, int | float):
        kind = "Numeric"
    elif isinstance(value, str):
        kind = "Timestamp" if timestamp else "String"
    else:
        raise Refused(where, f"comparing with {json.dumps(value)} has no Choice rule form")
    if kind == "Boolean" and op != "eq":
        raise Refused(where, "booleans compare only for equality")
    return {"Variable": variable, f"{kind}{_RELATIONS[op]}": value}
