"""Each ASL state type as agentfsm states: Pass -> set, Task -> tool, Choice -> choice, Wait -> a timer wait,
Succeed -> final, Fail -> fail. A state may bring helpers: the state writing a caught error where `ResultPath`
says, a fail state for a Choice with no `Default`, one final state for every `End`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentfsm.asl.exprs import DOCUMENT, Code, Lit, Value, expression, literal, template
from agentfsm.asl.flow import catch_rules, effective_input, output_of, parameters, place, retry_rules, selected
from agentfsm.asl.paths import Scope, intrinsic, is_intrinsic, read_path
from agentfsm.asl.payloads import guard
from agentfsm.asl.problems import AslInputError, Pointer, Refusal, Refused
from agentfsm.asl.tasks import Tools, task

COMMON = {"Type", "Comment", "InputPath", "OutputPath", "Next", "End", "QueryLanguage"}
FIELDS: dict[str, set[str]] = {
    "Pass": COMMON | {"Result", "ResultPath", "Parameters"},
    "Task": COMMON | {"Resource", "Parameters", "ResultSelector", "ResultPath", "Retry", "Catch", "TimeoutSeconds",
                      "HeartbeatSeconds", "TimeoutSecondsPath", "HeartbeatSecondsPath", "Credentials"},
    "Choice": {"Type", "Comment", "InputPath", "OutputPath", "Choices", "Default", "QueryLanguage"},
    "Wait": COMMON | {"Seconds", "SecondsPath", "Timestamp", "TimestampPath"},
    "Succeed": {"Type", "Comment", "InputPath", "OutputPath", "QueryLanguage"},
    "Fail": {"Type", "Comment", "Error", "Cause", "ErrorPath", "CausePath", "QueryLanguage"},
    "Parallel": COMMON | {"Branches", "Parameters", "ResultSelector", "ResultPath", "Retry", "Catch"},
    "Map": COMMON | {"ItemsPath", "Items", "ItemProcessor", "Iterator", "ItemSelector", "Parameters",
                     "MaxConcurrency", "MaxConcurrencyPath", "ToleratedFailureCount", "ToleratedFailurePercentage",
                     "ToleratedFailureCountPath", "ToleratedFailurePercentagePath", "ResultSelector", "ResultPath",
                     "Retry", "Catch", "ItemReader", "ItemBatcher", "ResultWriter", "Label"},
}
JSONATA_ONLY = {"Arguments", "Output", "Assign"}
NOTED = {"HeartbeatSeconds": "ignored: HeartbeatSeconds (a local tool reports no heartbeats)",
         "HeartbeatSecondsPath": "ignored: HeartbeatSecondsPath (a local tool reports no heartbeats)",
         "Credentials": "ignored: Credentials (the bound tool runs with the local process's rights)"}


@dataclass(slots=True)
class Converter:
    """Converts one `States` map; collects the agentfsm states, the refusals and notes."""

    states_doc: dict[str, Any]
    where: Pointer
    tools: Tools
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    helpers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """States the conversion adds (written after the machine's own)."""
    refusals: list[Refusal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    end_name: str | None = None

    def convert(self) -> None:
        for name, state in self.states_doc.items():
            here = (*self.where, name)
            try:
                self.states[name] = self.state(name, state, here)
            except Refused as refused:
                self.refusals.append(refused.refusal)
                self.states[name] = {"type": "fail", "error": "refused"}  # keeps the graph whole while collecting

    def state(self, name: str, state: Any, where: Pointer) -> dict[str, Any]:
        if not isinstance(state, dict):
            raise AslInputError(where, "a state must be an object")
        kind = state.get("Type")
        if kind not in FIELDS:
            raise AslInputError((*where, "Type"), f"unknown state type {json.dumps(kind)} (known: "
                                f"{', '.join(FIELDS)})")
        self.check_fields(kind, state, where)
        converted = CONVERTERS[kind](self, name, state, where)
        described = {"description": state["Comment"]} if isinstance(state.get("Comment"), str) else {}
        return {"type": converted.pop("type"), **described, **converted}

    def check_fields(self, kind: str, state: dict[str, Any], where: Pointer) -> None:
        if state.get("QueryLanguage", "JSONPath") != "JSONPath":
            raise Refused((*where, "QueryLanguage"), "JSONata states are not imported (only JSONPath)")
        for key in state:
            if key in JSONATA_ONLY:
                raise Refused((*where, key), f"{key} ({'variables' if key == 'Assign' else 'JSONata'}) is not "
                              "imported")
            if key not in FIELDS[kind]:
                raise AslInputError((*where, key), f"a {kind} state has no field {key!r}")
            if key in NOTED:
                self.notes.append(f"{'/'.join(map(str, where))}: {NOTED[key]}")

    def route(self, state: dict[str, Any], where: Pointer) -> dict[str, Any]:
        """`next:` for `Next`, or the one final state every `End` leads to."""
        if state.get("End") is True:
            if "Next" in state:
                raise AslInputError((*where, "End"), "has both Next and End")
            return {"next": self.end_state()}
        target = state.get("Next")
        self.check_target(target, (*where, "Next"))
        return {"next": target}

    def check_target(self, target: Any, where: Pointer) -> None:
        if not isinstance(target, str):
            raise AslInputError(where, "needs Next (a state's name) or End: true")
        if target not in self.states_doc:
            raise AslInputError(where, f"Next names no state: {json.dumps(target)}")

    def end_state(self) -> str:
        if self.end_name is None:
            self.end_name = self.fresh("end")
        return self.end_name

    def fresh(self, base: str) -> str:
        candidate, number = base, 2
        while candidate in self.states_doc or candidate in self.helpers:
            candidate, number = f"{base} {number}", number + 1
        self.helpers[candidate] = {}  # reserved; filled by the caller
        return candidate

    def finish(self) -> None:
        """Add the helper states after the machine's own."""
        if self.end_name is not None:
            self.helpers[self.end_name] = {"type": "final", "description": "Where every End of the Step Functions "
                                           "machine leads.", "output": "{{ run.data }}"}
        self.states.update(self.helpers)

    def output_step(self, name: str, state: dict[str, Any], where: Pointer, route: dict[str, Any],
                    base: str) -> str:
        """A state after one that passes its input on (a Wait, a Choice) applying its `OutputPath`."""
        helper = self.fresh(base)
        out = output_of({"OutputPath": state["OutputPath"]}, DOCUMENT, where)
        self.helpers[helper] = {"type": "set", "description": f"The OutputPath of {name}.", "set": {},
                                "output": template(out), **route}
        return helper

    def policies(self, name: str, state: dict[str, Any], where: Pointer) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if "TimeoutSecondsPath" in state:
            if "TimeoutSeconds" in state:
                raise AslInputError((*where, "TimeoutSecondsPath"), "has both TimeoutSeconds and TimeoutSecondsPath")
            read = read_path(state["TimeoutSecondsPath"], Scope(effective_input(state, where)),
                             (*where, "TimeoutSecondsPath"))
            fields["timeout"] = template(read)
        if "TimeoutSeconds" in state:
            seconds = state["TimeoutSeconds"]
            if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
                raise AslInputError((*where, "TimeoutSeconds"), "TimeoutSeconds must be a positive integer")
            fields["timeout"] = seconds
        if "Retry" in state:
            fields["retry"] = retry_rules(state["Retry"], (*where, "Retry"))
        if "Catch" in state:
            fields["catch"] = catch_rules(state["Catch"], (*where, "Catch"),
                                          lambda index, steps, target: self.reshape(name, index, steps, target,
                                                                                    (*where, "Catch", index)))
        return fields

    def reshape(self, name: str, index: int, steps: list[str], target: str, where: Pointer) -> str:
        """The state after a catcher with a `ResultPath`: `{Error, Cause}` written there, then on to `Next`."""
        self.check_target(target, (*where, "Next"))
        helper = self.fresh(f"{name} (caught {index + 1})")
        error = "error_object(run.data.caught_error)"
        if steps:
            value = f"set_path(omit(run.data, 'caught_error'), {literal(steps)}, {error})"
        else:
            value = error
        self.helpers[helper] = {"type": "set", "description": f"Writes the error caught by {name} where its "
                                "catcher says.", "set": {}, "output": "{{ " + value + " }}", "next": target}
        return helper


def _pass(self: Converter, name: str, state: dict[str, Any], where: Pointer) -> dict[str, Any]:
    scope = Scope(effective_input(state, where))
    value: Value = Lit(state["Result"]) if "Result" in state else parameters(state, "Parameters", scope, where)
    fields: dict[str, Any] = {}
    place(fields, state, value, where, saves="set")
    return {"type": "set", "set": fields.pop("set", {}), **fields, **self.route(state, where)}


def _task(self: Converter, name: str, state: dict[str, Any], where: Pointer) -> dict[str, Any]:
    scope = Scope(effective_input(state, where))
    args = parameters(state, "Parameters", scope, where)
    call = task(state.get("Resource"), args, state.get("Parameters"), self.tools, where)
    fields: dict[str, Any] = {"type": "tool", "tool": call.tool, "args": {"input": template(call.payload)}}
    place(fields, state, selected(state, call.result, where), where, saves="save")
    return {**fields, **self.policies(name, state, where), **self.route(state, where)}


def _choice(self: Converter, name: str, state: dict[str, Any], where: Pointer) -> dict[str, Any]:
    scope = Scope(effective_input(state, where))
    choices = state.get("Choices")
    if not isinstance(choices, list) or not choices:
        raise AslInputError((*where, "Choices"), "a Choice needs a non-empty list of Choices")
    rules = []
    for index, rule in enumerate(choices):
        here = (*where, "Choices", index)
        self.check_target(rule.get("Next") if isinstance(rule, dict) else None, (*here, "Next"))
        rules.append({"when": guard(rule, scope, here), "to": rule["Next"]})
    if "Default" in state:
        self.check_target(state["Default"], (*where, "Default"))
        rules.append({"to": state["Default"]})
    else:
        helper = self.fresh(f"{name} (no choice matched)")
        self.helpers[helper] = {"type": "fail", "error": f"no choice of {name} matched",
                               "detail": {"error": "States.NoChoiceMatched",
                                          "cause": f"no choice of {name} matched"}}
        rules.append({"to": helper})
    if "OutputPath" in state:  # a choice passes its input on: the selection is a state of its own on each way out
        shaped: dict[str, str] = {}
        for rule in rules:
            if rule["to"] in self.states_doc and rule["to"] not in shaped:
                shaped[rule["to"]] = self.output_step(name, state, where, {"next": rule["to"]},
                                                      f"{name} (output to {rule['to']})")
            rule["to"] = shaped.get(rule["to"], rule["to"])
    return {"type": "choice", "transitions": rules}


def _wait(self: Converter, name: str, state: dict[str, Any], where: Pointer) -> dict[str, Any]:
    scope = Scope(effective_input(state, where))
    given = [key for key in ("Seconds", "SecondsPath", "Timestamp", "TimestampPath") if key in state]
    if len(given) != 1:
        raise AslInputError(where, "a Wait needs exactly one of Seconds, SecondsPath, Timestamp, TimestampPath")
    key, value = given[0], state[given[0]]
    timer: dict[str, Any]
    if key == "Seconds":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise AslInputError((*where, key), "Seconds must be an integer of at least 0")
        timer = {"timeout": value if value > 0 else "1ms"}
    elif key == "Timestamp":
        timer = {"until": template(Lit(value))}
    else:
        read = template(read_path(value, scope, (*where, key)))
        timer = {"timeout": read} if key == "SecondsPath" else {"until": read}
    route = self.route(state, where)
    if "OutputPath" in state:  # a wait passes its input on: the selection is a state of its own after it
        route = {"next": self.output_step(name, state, where, route, f"{name} (output)")}
    return {"type": "wait", **timer, **route}


def _succeed(self: Converter, name: str, state: dict[str, Any], where: Pointer) -> dict[str, Any]:
    value = output_of({k: v for k, v in state.items() if k == "OutputPath"}, effective_input(state, where), where)
    return {"type": "final", "output": template(value)}


def _fail(self: Converter, name: str, state: dict[str, Any], where: Pointer) -> dict[str, Any]:
    parts: dict[str, Value] = {}
    for key in ("Error", "Cause"):
        if key in state and f"{key}Path" in state:
            raise AslInputError((*where, f"{key}Path"), f"has both {key} and {key}Path")
        if key in state:
            parts[key] = Lit(state[key])
        elif f"{key}Path" in state:
            path = state[f"{key}Path"]
            here = (*where, f"{key}Path")
            parts[key] = intrinsic(path, Scope(DOCUMENT), here) if is_intrinsic(path) else read_path(
                path, Scope(DOCUMENT), here)
    error, cause = parts.get("Error", Lit(None)), parts.get("Cause", Lit(None))
    message: Value
    if isinstance(error, Lit) and isinstance(cause, Lit):
        message = Lit(": ".join(str(part.value) for part in (error, cause) if part.value is not None) or "failed")
    else:
        message = Code(f"{expression(cause)} or {expression(error)} or 'failed'")
    detail = {"error": template(error), "cause": template(cause)}
    return {"type": "fail", "error": template(message), "detail": detail}


CONVERTERS: dict[str, Callable[[Converter, str, dict[str, Any], Pointer], dict[str, Any]]] = {
    "Pass": _pass, "Task": _task, "Choice": _choice, "Wait": _wait, "Succeed": _succeed, "Fail": _fail,
}
"""Parallel and Map register themselves from `agentfsm.asl.composite`."""
