"""`agentfsm export`: an agentfsm machine as Amazon States Language, for the subset that maps back: `set`,
`tool` (a `lambda:invoke` of the binding's name), `choice`, timer `wait`, `final`, `fail`, with retries and
catches. What does not map is refused, located by its place in the YAML (`/states/Plan/emit`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from jinja2 import nodes

from agentfsm.asl.problems import Pointer, Refusal, Refused
from agentfsm.asl.reverse import (
    Roots,
    dynamic_of,
    literal_of,
    parse,
    path_of,
    payload_of,
    rule_of,
    single_expression,
)
from agentfsm.spec.expressions import is_template

LAMBDA = "arn:aws:states:::lambda:invoke"
ERROR_NAMES = {"*": "States.ALL", "timeout": "States.Timeout", "tool.error": "States.TaskFailed",
               "template.error": "States.Runtime"}
DOC = Roots()
TASK = Roots(result="$.Payload")
RAW_RESPONSE = {"ExecutedVersion": "$LATEST", "Payload": "result", "StatusCode": 200}


@dataclass(slots=True)
class Exporter:
    """Converts one machine document (as validated) into an ASL definition."""

    machine: dict[str, Any]
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    refusals: list[Refusal] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)

    def export(self) -> dict[str, Any]:
        for name, state in self.machine["states"].items():
            if name in self.skipped:
                continue
            try:
                self.states.update(self.state(name, state, ("states", name)))
            except Refused as refused:
                self.refusals.append(refused.refusal)
        for name in self.skipped:
            self.states.pop(name, None)
        definition: dict[str, Any] = {}
        if self.machine.get("description"):
            definition["Comment"] = self.machine["description"]
        definition["StartAt"] = self.machine["initial"]
        definition["States"] = self.states
        return definition

    def state(self, name: str, state: dict[str, Any], where: Pointer) -> dict[str, dict[str, Any]]:
        kind = state["type"]
        converter = {"set": self.set_state, "tool": self.tool, "choice": self.choice, "wait": self.wait,
                     "final": self.final, "fail": self.fail, "parallel": self.parallel, "map": self.map}.get(kind)
        if converter is None:
            raise Refused((*where, "type"), f"a {kind} state has no Amazon States Language form here")
        for key in ("on_enter", "on_exit", "emit", "max_visits"):
            if state.get(key):
                raise Refused((*where, key), f"{key} has no Amazon States Language form")
        out = converter(name, state, where)
        if state.get("description"):
            out[name] = {"Type": out[name]["Type"], "Comment": state["description"],
                         **{k: v for k, v in out[name].items() if k != "Type"}}
        return out

    # -- ways out --------------------------------------------------------------------------------

    def route(self, name: str, state: dict[str, Any], where: Pointer) -> tuple[dict[str, Any], dict[str, Any]]:
        """`Next` (and a Choice state after it when the state routes by guards)."""
        if state.get("next") is not None:
            return {"Next": state["next"]}, {}
        rules = state.get("transitions") or []
        choice_name = f"{name} (route)"
        choices, default = self.rules(rules, (*where, "transitions"))
        extra = {"Type": "Choice", "Choices": choices}
        if default is not None:
            extra["Default"] = default
        if not choices:
            return {"Next": default}, {}
        return {"Next": choice_name}, {choice_name: extra}

    def rules(self, rules: list[dict[str, Any]], where: Pointer) -> tuple[list[dict[str, Any]], str | None]:
        choices, default = [], None
        for index, rule in enumerate(rules):
            here = (*where, index)
            if rule.get("event") or rule.get("set"):
                raise Refused(here, "a rule with event: or set: has no Choice rule form")
            if rule.get("when") is None:
                default = rule["to"]
                break
            choices.append({**rule_of(rule["when"], DOC, (*here, "when")), "Next": rule["to"]})
        return choices, default

    def policies(self, state: dict[str, Any], where: Pointer) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if state.get("timeout") is not None:
            out["TimeoutSeconds"] = max(1, _seconds(state["timeout"]))
        retries = state.get("retry") or []
        if isinstance(retries, dict):
            retries = [retries]
        if retries:
            out["Retry"] = [_retrier(rule) for rule in retries]
        if state.get("catch"):
            out["Catch"] = [self.catcher(rule, (*where, "catch", index)) for index, rule in enumerate(state["catch"])]
        return out

    def catcher(self, rule: dict[str, Any], where: Pointer) -> dict[str, Any]:
        out: dict[str, Any] = {"ErrorEquals": [ERROR_NAMES.get(e, e) for e in _names(rule.get("errors"))]}
        key = rule.get("as")
        if key is None:
            return {**out, "ResultPath": None, "Next": rule["to"]}
        helper = self.machine["states"].get(rule["to"], {})
        steps = _caught_error_steps(helper, key)
        if steps is not None:  # the state `agentfsm import` writes after a catcher: fold it back into the catcher
            self.skipped.add(rule["to"])
            return {**out, "ResultPath": _steps_path(steps), "Next": helper["next"]}
        return {**out, "ResultPath": f"$.{key}", "Next": rule["to"]}

    # -- kinds -----------------------------------------------------------------------------------

    def set_state(self, name: str, state: dict[str, Any], where: Pointer) -> dict[str, dict[str, Any]]:
        route, extra = self.route(name, state, where)
        values = state.get("set") or {}
        if state.get("output") is not None:
            if values:
                raise Refused((*where, "set"), "set: beside output: has no Amazon States Language form")
            return {name: {"Type": "Pass", **_placed(state["output"], DOC, (*where, "output"), task=False),
                           **route}, **extra}
        if not values:
            return {name: {"Type": "Pass", **route}, **extra}
        steps: list[tuple[str, dict[str, Any]]] = []
        for index, (key, value) in enumerate(values.items()):
            first = name if index == 0 else f"{name} ({key})"
            steps.extend(_assignment(first, key, value, (*where, "set", key)))
        out: dict[str, dict[str, Any]] = {}
        for index, (step_name, step) in enumerate(steps):
            step.update({"Next": steps[index + 1][0]} if index + 1 < len(steps) else route)
            out[step_name] = step
        return {**out, **extra}

    def tool(self, name: str, state: dict[str, Any], where: Pointer) -> dict[str, dict[str, Any]]:
        route, extra = self.route(name, state, where)
        args = state.get("args") or {}
        payload = args["input"] if set(args) == {"input"} else args
        parameters: dict[str, Any] = {"FunctionName": state["tool"]}
        if isinstance(payload, str) and is_template(payload):
            kind, value = dynamic_of(payload, DOC, (*where, "args"))
            parameters["Payload" if kind == "literal" else "Payload.$"] = value
        else:
            parameters["Payload"] = payload_of(payload, DOC, (*where, "args"))
        task: dict[str, Any] = {"Type": "Task", "Resource": LAMBDA, "Parameters": parameters}
        out: dict[str, dict[str, Any]] = {}
        raw = [state["save"]] if state.get("save") else _raw_result_steps(state.get("output"))
        if raw is not None:  # the function's answer itself at a path: its Payload, unwrapped by a Pass
            unwrap, at = f"{name} (payload)", _steps_path(raw)
            task["ResultPath"] = at
            out[unwrap] = {"Type": "Pass", "InputPath": _steps_path([*raw, "Payload"]), "ResultPath": at, **route}
            route = {"Next": unwrap}
        elif state.get("output") is not None:
            task.update(_placed(state["output"], TASK, (*where, "output"), task=True))
        else:
            task["ResultPath"] = None
        return {name: {**task, **self.policies(state, where), **route}, **out, **extra}

    def parallel(self, name: str, state: dict[str, Any], where: Pointer) -> dict[str, dict[str, Any]]:
        route, extra = self.route(name, state, where)
        if state.get("join", "all") != "all":
            raise Refused((*where, "join"), "only join: all has an Amazon States Language form")
        branches, given = [], None
        for branch, ref in state["branches"].items():
            definition, payload = self.inline((*where, "branches", branch), ref, DOC)
            if given is not None and payload != given:
                raise Refused((*where, "branches", branch, "inputs"), "ASL gives every branch the same input")
            branches.append(definition)
            given = payload
        out: dict[str, Any] = {"Type": "Parallel", "Branches": branches}
        if given not in (None, {"input.$": "$"}):
            out["Parameters"] = _unwrapped(given)
        names = [f"result.{branch}" for branch in state["branches"]]
        out.update(_placed_group(state, names, (*where, "output")))
        return {name: {**out, **self.policies(state, where), **route}, **extra}

    def map(self, name: str, state: dict[str, Any], where: Pointer) -> dict[str, dict[str, Any]]:
        route, extra = self.route(name, state, where)
        item = state.get("item_as", "item")
        roots = Roots(names=((item, "$$.Map.Item.Value"), ("index", "$$.Map.Item.Index")))
        definition, payload = self.inline(where, state, roots)
        items = state.get("items")
        kind, found = dynamic_of(items, DOC, (*where, "items")) if isinstance(items, str) else ("literal", items)
        if kind not in ("path", "literal") or (kind == "literal" and not isinstance(found, list)):
            raise Refused((*where, "items"), "the items must be a path or a literal list")
        out: dict[str, Any] = {"Type": "Map", **({"ItemsPath": found} if kind == "path" else {"Items": found}),
                               "ItemSelector": _unwrapped(payload) if "input" in (state.get("inputs") or {})
                               else {f"{item}.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index",
                                     **(payload or {})},
                               "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, **definition},
                               "MaxConcurrency": state.get("max_concurrency", 10)}
        tolerated = state.get("tolerated_failures", 0)
        if isinstance(tolerated, str):
            out["ToleratedFailurePercentage"] = float(tolerated.strip().rstrip("%"))
        elif tolerated:
            out["ToleratedFailureCount"] = tolerated
        if state.get("save"):
            out["ResultPath"] = f"$.{state['save']}"
        else:
            out.update(_placed_group(state, None, (*where, "output")))
        return {name: {**out, **self.policies(state, where), **route}, **extra}

    def inline(self, where: Pointer, ref: dict[str, Any], roots: Roots) -> tuple[dict[str, Any], Any]:
        """A branch or item machine written inline: its ASL definition and the payload its input is built from."""
        if ref.get("machine") or not ref.get("states"):
            raise Refused((*where, "machine"), "only an inline machine has an Amazon States Language form here")
        states, start = dict(ref["states"]), ref["initial"]
        entry = states.get(start, {})
        if entry.get("type") == "set" and entry.get("output") == "{{ run.data.input }}" and not entry.get("set"):
            states.pop(start)  # the state `agentfsm import` writes to take the input: ASL gives it directly
            start = entry["next"]
        inner = Exporter({"initial": start, "states": states})
        definition = inner.export()
        for refusal in inner.refusals:
            self.refusals.append(Refusal((*where, *refusal.pointer), refusal.message))
        payload = payload_of(ref.get("inputs") or {}, roots, (*where, "inputs"))
        return {"StartAt": definition["StartAt"], "States": definition["States"]}, payload

    def choice(self, name: str, state: dict[str, Any], where: Pointer) -> dict[str, dict[str, Any]]:
        choices, default = self.rules(state["transitions"], (*where, "transitions"))
        out: dict[str, Any] = {"Type": "Choice", "Choices": choices}
        if default is not None:
            out["Default"] = default
        if not choices:
            return {name: {"Type": "Pass", "Next": default}}
        return {name: out}

    def wait(self, name: str, state: dict[str, Any], where: Pointer) -> dict[str, dict[str, Any]]:
        if state.get("event"):
            raise Refused((*where, "event"), "a wait for an event has no Amazon States Language form")
        route, extra = self.route(name, state, where)
        timer: dict[str, Any] = {}
        if state.get("until") is not None:
            kind, value = dynamic_of(str(state["until"]), DOC, (*where, "until"))
            timer = {"TimestampPath": value} if kind == "path" else {"Timestamp": value}
        else:
            value = state.get("timeout")
            if isinstance(value, str) and is_template(value):
                kind, found = dynamic_of(value, DOC, (*where, "timeout"))
                timer = {"SecondsPath": found} if kind == "path" else {"Seconds": _seconds(found)}
            else:
                timer = {"Seconds": _seconds(value)}
        return {name: {"Type": "Wait", **timer, **route}, **extra}

    def final(self, name: str, state: dict[str, Any], where: Pointer) -> dict[str, dict[str, Any]]:
        output = state.get("output")
        if isinstance(output, str) and is_template(output):
            kind, value = dynamic_of(output, DOC, (*where, "output"))
            if kind == "path":
                return {name: {"Type": "Succeed", **({} if value == "$" else {"OutputPath": value})}}
        shaped = f"{name} (output)"
        value = _pass_value(output, DOC, (*where, "output"))
        return {name: {"Type": "Pass", **value, "Next": shaped}, shaped: {"Type": "Succeed"}}

    def fail(self, name: str, state: dict[str, Any], where: Pointer) -> dict[str, dict[str, Any]]:
        detail = state.get("detail") if isinstance(state.get("detail"), dict) else {}
        out: dict[str, Any] = {"Type": "Fail"}
        error = detail.get("error", "States.Fail") if detail else "States.Fail"
        cause = detail.get("cause", state.get("error", "failed")) if detail else state.get("error", "failed")
        for key, value in (("Error", error), ("Cause", cause)):
            if isinstance(value, str) and is_template(value):
                kind, found = dynamic_of(value, DOC, (*where, "detail"))
                out[f"{key}Path" if kind != "literal" else key] = found
            elif value is not None:
                out[key] = value
        return {name: out}


def _source(node: nodes.Node) -> str:
    """A list of `result.NAME` (or `result`) as the text `agentfsm import` writes for it."""
    if isinstance(node, nodes.List):
        return "[" + ", ".join(_source(item) for item in node.items) + "]"
    path = path_of(node, Roots(result="result"))
    return path if path is not None else ""


def _unwrapped(payload: Any) -> Any:
    """The payload given as `input` (how `agentfsm import` passes a branch's input): the input itself."""
    if isinstance(payload, dict) and set(payload) == {"input"}:
        return payload["input"]
    if isinstance(payload, dict) and set(payload) == {"input.$"}:
        return {"input.$": payload["input.$"]} if payload["input.$"] != "$" else None
    return payload


def _placed_group(state: dict[str, Any], names: list[str] | None, where: Pointer) -> dict[str, Any]:
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
    if (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "set_path"
            and len(node.args) == 3 and path_of(node.args[0], DOC) == "$"):
        ok, steps = literal_of(node.args[1])
        value = node.args[2]
        if ok and isinstance(steps, list):
            fields: dict[str, Any] = {"ResultPath": _steps_path(steps)}
            if isinstance(value, nodes.Dict):
                selector: dict[str, Any] = {}
                for pair in value.items:
                    selector.update(_pair(pair.key.value, pair.value, Roots(result="$"), where))  # type: ignore[attr-defined]
                fields["ResultSelector"] = selector
                return fields
            if _source(value) == raw:
                return fields
    raise Refused(where, "this output has no Amazon States Language form")


def _names(errors: Any) -> list[str]:
    return [errors] if isinstance(errors, str) else list(errors or ["*"])


def _retrier(rule: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"ErrorEquals": [ERROR_NAMES.get(e, e) for e in _names(rule.get("errors"))]}
    for source, target in (("interval", "IntervalSeconds"), ("max_attempts", "MaxAttempts"),
                           ("backoff_rate", "BackoffRate"), ("max_delay", "MaxDelaySeconds")):
        if rule.get(source) is not None:
            value = rule[source]
            out[target] = max(1, _seconds(value)) if target.endswith("Seconds") else value
    if rule.get("jitter") == "full":
        out["JitterStrategy"] = "FULL"
    return out


def _seconds(value: Any) -> int:
    from agentfsm.spec.durations import parse_duration

    return max(0, math.ceil(parse_duration(value)))


def _steps_path(steps: list[str]) -> str:
    from agentfsm.asl.reverse import _join

    path = "$"
    for step in steps:
        path = _join(path, step)
    return path


def _caught_error_steps(helper: dict[str, Any], key: str) -> list[str] | None:
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


def _assignment(name: str, key: str, value: Any, where: Pointer) -> list[tuple[str, dict[str, Any]]]:
    """Pass states setting one context key: one, or two when the value is computed (an intrinsic or text
    around values), since a Pass's Parameters make an object: `{value: X}` is placed, then unwrapped."""
    at = _steps_path([key])
    if isinstance(value, str) and is_template(value):
        kind, found = dynamic_of(value, DOC, where)
        if kind == "intrinsic":
            unwrap = f"{name} (value)"
            return [(name, {"Type": "Pass", "Parameters": {"value.$": found}, "ResultPath": at}),
                    (unwrap, {"Type": "Pass", "InputPath": _steps_path([key, "value"]), "ResultPath": at})]
    return [(name, {"Type": "Pass", **_pass_value(value, DOC, where), "ResultPath": at})]


def _raw_result_steps(output: Any) -> list[str] | None:
    """The keys of `{{ set_path(run.data, [KEYS], result) }}`: a task's answer placed as it is."""
    expression = single_expression(output) if isinstance(output, str) else None
    if expression is None or not expression.startswith("set_path(run.data, ") or not expression.endswith(", result)"):
        return None
    ok, steps = literal_of(parse(expression[len("set_path(run.data, "):-len(", result)")], ()))
    return steps if ok and isinstance(steps, list) and steps and all(isinstance(s, str) for s in steps) else None


def _pass_value(value: Any, roots: Roots, where: Pointer) -> dict[str, Any]:
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


def _placed(output: Any, roots: Roots, where: Pointer, *, task: bool) -> dict[str, Any]:
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
    out_path = _steps_path([str(s) for s in steps]) if steps else None
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "set_path":
        base, keys, value = node.args
        ok, names = literal_of(keys)
        if path_of(base, roots) != "$" or not ok:
            raise Refused(where, "this output has no Amazon States Language form")
        fields = _value_node(value, roots, where, task)
        fields["ResultPath"] = _steps_path(names)
    else:
        path = path_of(node, roots)
        if path is not None and path.startswith("$.Payload") and task:
            fields = {"OutputPath": path}
        elif path is not None and not task:
            fields = {"OutputPath": path} if path != "$" else {}
        else:
            fields = _value_node(node, roots, where, task)
    if out_path is not None:
        fields["OutputPath"] = out_path
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
    if task:  # a computed answer that is not an object: select it into an object, then take it out
        from agentfsm.asl.reverse import intrinsic_of

        return {"ResultSelector": {"value.$": intrinsic_of(node, roots, where)}, "OutputPath": "$.value"}
    raise Refused(where, "this value has no Amazon States Language form (a literal, an object or a path)")


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
    from agentfsm.asl.reverse import intrinsic_of

    return {f"{key}.$": intrinsic_of(node, roots, where)}


def _value_fields(output: dict[str, Any], roots: Roots, where: Pointer, task: bool, steps: list[str]) -> dict[str, Any]:
    payload = payload_of(output, roots, where)
    return {"ResultSelector" if task else "Parameters": payload}


def _is_raw_response(node: nodes.Dict) -> bool:
    """`{ExecutedVersion, Payload: result, StatusCode}`: a lambda:invoke's whole response, as imported."""
    keys = [pair.key.value for pair in node.items if isinstance(pair.key, nodes.Const)]
    return keys == list(RAW_RESPONSE) and any(
        isinstance(pair.value, nodes.Name) and pair.value.name == "result" for pair in node.items)


def export_machine(machine: dict[str, Any]) -> tuple[dict[str, Any] | None, list[Refusal]]:
    """The ASL definition of a (valid) machine document, or the refusals."""
    exporter = Exporter(machine)
    definition = exporter.export()
    if exporter.refusals:
        return None, exporter.refusals
    return definition, []
