"""`agentfsm export`: an agentfsm machine as Amazon States Language, for the subset that maps back: `set`,
`tool` (a `lambda:invoke` of the binding's name), `choice`, timer `wait`, `final`, `fail`, with retries and
catches. What does not map is refused, located by its place in the YAML (`/states/Plan/emit`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentfsm.asl.context_object import KEY, PASSED
from agentfsm.asl.map_source import item_batcher, item_source
from agentfsm.asl.placement import (
    DOC,
    TASK,
    assignment,
    caught_error_steps,
    pass_value,
    placed,
    placed_group,
    raw_result_steps,
    seconds,
    steps_path,
    unwrapped,
)
from agentfsm.asl.problems import Pointer, Refusal, Refused
from agentfsm.asl.reverse import Roots, dynamic_of, payload_of, rule_of
from agentfsm.spec.expressions import is_template

LAMBDA = "arn:aws:states:::lambda:invoke"
ERROR_NAMES = {"*": "States.ALL", "timeout": "States.Timeout", "tool.error": "States.TaskFailed",
               "template.error": "States.Runtime"}


@dataclass(slots=True)
class Exporter:
    """Converts one machine document (as validated) into an ASL definition."""

    machine: dict[str, Any]
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    refusals: list[Refusal] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)

    def export(self) -> dict[str, Any]:
        start = self.start()
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
        definition["StartAt"] = start
        definition["States"] = self.states
        return definition

    def start(self) -> str:
        """The first state; the state that keeps the context object (`agentfsm import` writes it) is ASL's own."""
        initial = self.machine["initial"]
        entry = self.machine["states"].get(initial, {})
        if entry.get("type") == "set" and set(entry.get("set") or {}) == {KEY} and entry.get("output") is None:
            self.skipped.add(initial)
            return str(entry["next"])
        return str(initial)

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
        timeout = state.get("timeout")
        if isinstance(timeout, str) and is_template(timeout):
            kind, found = dynamic_of(timeout, DOC, (*where, "timeout"))
            if kind != "path":
                raise Refused((*where, "timeout"), "a timeout template has an ASL form only as a path")
            out["TimeoutSecondsPath"] = found
        elif timeout is not None:
            out["TimeoutSeconds"] = max(1, seconds(timeout))
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
        steps = caught_error_steps(helper, key)
        if steps is not None:  # the state `agentfsm import` writes after a catcher: fold it back into the catcher
            self.skipped.add(rule["to"])
            return {**out, "ResultPath": steps_path(steps), "Next": helper["next"]}
        return {**out, "ResultPath": f"$.{key}", "Next": rule["to"]}

    # -- kinds -----------------------------------------------------------------------------------

    def set_state(self, name: str, state: dict[str, Any], where: Pointer) -> dict[str, dict[str, Any]]:
        route, extra = self.route(name, state, where)
        values = state.get("set") or {}
        if KEY in values:  # ASL's context object is the service's: only the state import writes to keep it maps
            raise Refused((*where, "set", KEY), "setting the context object $$ has no Amazon States Language form")
        if state.get("output") is not None:
            if values:
                raise Refused((*where, "set"), "set: beside output: has no Amazon States Language form")
            return {name: {"Type": "Pass", **placed(state["output"], DOC, (*where, "output"), task=False),
                           **route}, **extra}
        if not values:
            return {name: {"Type": "Pass", **route}, **extra}
        steps: list[tuple[str, dict[str, Any]]] = []
        for index, (key, value) in enumerate(values.items()):
            first = name if index == 0 else f"{name} ({key})"
            steps.extend(assignment(first, key, value, (*where, "set", key)))
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
        raw = ([state["save"]], None) if state.get("save") else raw_result_steps(state.get("output"))
        if raw is not None:  # the function's answer itself at a path: its Payload, unwrapped by a Pass
            unwrap, at = f"{name} (payload)", steps_path(raw[0])
            task["ResultPath"] = at
            out[unwrap] = {"Type": "Pass", "InputPath": steps_path([*raw[0], "Payload"]), "ResultPath": at,
                           **({"OutputPath": raw[1]} if raw[1] else {}), **route}
            route = {"Next": unwrap}
        elif state.get("output") is not None:
            task.update(placed(state["output"], TASK, (*where, "output"), task=True))
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
            out.update(_branch_input(given, (*where, "branches")))
        names = [f"result.{branch}" for branch in state["branches"]]
        out.update(placed_group(state, names, (*where, "output")))
        return {name: {**out, **self.policies(state, where), **route}, **extra}

    def map(self, name: str, state: dict[str, Any], where: Pointer) -> dict[str, dict[str, Any]]:
        route, extra = self.route(name, state, where)
        item = state.get("item_as", "item")
        roots = Roots(names=((item, "$$.Map.Item.Value"), ("index", "$$.Map.Item.Index")))
        definition, payload = self.inline(where, state, roots)
        selector = (unwrapped(payload) if "input" in (state.get("inputs") or {})
                    else {f"{item}.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index", **(payload or {})})
        out: dict[str, Any] = {"Type": "Map", **item_source(self.machine, state, where)}
        if state.get("batch_size") or state.get("batch_bytes"):
            if state.get("select") is not None:  # each item selected before batching
                out["ItemSelector"] = payload_of(state["select"], roots, (*where, "select"))
            out["ItemBatcher"] = item_batcher(state, selector, (*where, "inputs"))
        elif isinstance(selector, dict) and set(selector) == {"input.$"}:  # each run's input is a value itself
            if selector["input.$"] != "$$.Map.Item.Value":
                raise Refused((*where, "inputs", "input"), "an item's input that is not an object or the item "
                              "itself has no Amazon States Language form")
        else:
            out["ItemSelector"] = selector
        out.update({"ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, **definition},
                    "MaxConcurrency": state.get("max_concurrency", 10)})
        tolerated = state.get("tolerated_failures", 0)
        if isinstance(tolerated, str):
            out["ToleratedFailurePercentage"] = float(tolerated.strip().rstrip("%"))
        elif tolerated:
            out["ToleratedFailureCount"] = tolerated
        if state.get("save"):
            out["ResultPath"] = f"$.{state['save']}"
        else:
            out.update(placed_group(state, None, (*where, "output")))
        return {name: {**out, **self.policies(state, where), **route}, **extra}

    def inline(self, where: Pointer, ref: dict[str, Any], roots: Roots) -> tuple[dict[str, Any], Any]:
        """A branch or item machine written inline: its ASL definition and the payload its input is built from."""
        if ref.get("machine") or not ref.get("states"):
            raise Refused((*where, "machine"), "only an inline machine has an Amazon States Language form here")
        states, start = dict(ref["states"]), ref["initial"]
        entry = states.get(start, {})
        inputs = dict(ref.get("inputs") or {})
        if entry.get("type") == "set" and entry.get("output") == "{{ run.data.input }}" and entry.get("set") in (
                None, {}, {KEY: "{{ run.data." + PASSED + " }}"}):
            states.pop(start)  # the state `agentfsm import` writes to take the input: ASL gives it directly
            start = entry["next"]
            if entry.get("set"):  # and the context object, which ASL gives every state
                inputs.pop(PASSED, None)
        inner = Exporter({"initial": start, "states": states})
        definition = inner.export()
        for refusal in inner.refusals:
            self.refusals.append(Refusal((*where, *refusal.pointer), refusal.message))
        payload = payload_of(inputs, roots, (*where, "inputs"))
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
                timer = {"SecondsPath": found} if kind == "path" else {"Seconds": seconds(found)}
            else:
                timer = {"Seconds": seconds(value)}
        return {name: {"Type": "Wait", **timer, **route}, **extra}

    def final(self, name: str, state: dict[str, Any], where: Pointer) -> dict[str, dict[str, Any]]:
        output = state.get("output")
        if isinstance(output, str) and is_template(output):
            kind, value = dynamic_of(output, DOC, (*where, "output"))
            if kind == "path":
                return {name: {"Type": "Succeed", **({} if value == "$" else {"OutputPath": value})}}
        shaped = f"{name} (output)"
        value = pass_value(output, DOC, (*where, "output"))
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


def _branch_input(given: Any, where: Pointer) -> dict[str, Any]:
    """What a Parallel gives its branches: an object (`Parameters`), or a value at a path (`InputPath`)."""
    payload = unwrapped(given)
    if not (isinstance(payload, dict) and set(payload) == {"input.$"}):
        return {"Parameters": payload}
    path = payload["input.$"]
    if not path.startswith("$") or path.startswith("$$"):
        raise Refused(where, "a branch input that is not an object or a path of the state's input has no Amazon "
                      "States Language form")
    return {"InputPath": path}


def _names(errors: Any) -> list[str]:
    return [errors] if isinstance(errors, str) else list(errors or ["*"])


def _retrier(rule: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"ErrorEquals": [ERROR_NAMES.get(e, e) for e in _names(rule.get("errors"))]}
    for source, target in (("interval", "IntervalSeconds"), ("max_attempts", "MaxAttempts"),
                           ("backoff_rate", "BackoffRate"), ("max_delay", "MaxDelaySeconds")):
        if rule.get(source) is not None:
            value = rule[source]
            out[target] = max(1, seconds(value)) if target.endswith("Seconds") else value
    if rule.get("jitter") == "full":
        out["JitterStrategy"] = "FULL"
    return out


def export_machine(machine: dict[str, Any]) -> tuple[dict[str, Any] | None, list[Refusal]]:
    """The ASL definition of a (valid) machine document, or the refusals."""
    exporter = Exporter(machine)
    definition = exporter.export()
    if exporter.refusals:
        return None, exporter.refusals
    return definition, []
