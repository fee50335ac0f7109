"""ASL's Parallel and Map states onto agentfsm's `parallel` and `map`: each branch, and the item processor, is an
inline machine run as a child run; its input arrives as the input `input` and a first state makes it the child's
whole context, so the branch's states read `$` as Step Functions does."""

from __future__ import annotations

import json
from typing import Any

from agentfsm.asl import context_object, reading
from agentfsm.asl.exprs import Arr, Code, Lit, Value, template
from agentfsm.asl.flow import effective_input, parameters, place, selected
from agentfsm.asl.paths import Scope, read_path
from agentfsm.asl.problems import AslInputError, Pointer, Refused
from agentfsm.asl.states import CONVERTERS, Converter

UNSUPPORTED_MAP = {"ResultWriter": "writing results to S3", "MaxConcurrencyPath": "a concurrency read from the input",
                   "ToleratedFailureCountPath": "a tolerance read from the input",
                   "ToleratedFailurePercentagePath": "a tolerance read from the input"}


def inline_machine(self: Converter, definition: Any, where: Pointer, given: Value) -> dict[str, Any]:
    """A branch or item processor (`StartAt` + `States`) as an inline machine taking `given` as its input."""
    if not isinstance(definition, dict) or not isinstance(definition.get("States"), dict) \
            or not definition["States"]:
        raise AslInputError(where, "needs StartAt and States (a non-empty object)")
    start = definition.get("StartAt")
    if not isinstance(start, str) or start not in definition["States"]:
        raise AslInputError((*where, "StartAt"), f"StartAt names no state: {json.dumps(start)}")
    inner = Converter(definition["States"], (*where, "States"), self.tools)
    inner.convert()
    entry = inner.fresh("(input)")
    inner.helpers[entry] = {"type": "set", "description": "Takes the input the parent gave as the whole context.",
                            "set": {}, "output": "{{ run.data.input }}", "next": start}
    inner.finish()
    self.refusals.extend(inner.refusals)
    self.notes.extend(inner.notes)
    states = {entry: inner.states.pop(entry), **inner.states}
    inputs = {"input": template(given)}
    if context_object.used(states):  # the same execution: the parent's context object, kept apart again
        inputs[context_object.PASSED] = "{{ " + context_object.READ.text + " }}"
        states[entry]["set"] = {context_object.KEY: "{{ run.data." + context_object.PASSED + " }}"}
    return {"inputs": inputs, "initial": entry, "states": states}


def _parallel(self: Converter, name: str, state: dict[str, Any], where: Pointer) -> dict[str, Any]:
    scope = Scope(effective_input(state, where))
    given = parameters(state, "Parameters", scope, where)
    branches = state.get("Branches")
    if not isinstance(branches, list) or not branches:
        raise AslInputError((*where, "Branches"), "a Parallel needs a non-empty list of Branches")
    names = [f"branch_{index + 1}" for index in range(len(branches))]
    fields: dict[str, Any] = {"branches": {
        branch: inline_machine(self, definition, (*where, "Branches", index), given)
        for index, (branch, definition) in enumerate(zip(names, branches, strict=True))}}
    result: Value = Arr(tuple(Code(f"result.{branch}") for branch in names))
    place(fields, state, selected(state, result, where), where, saves="output")
    return {"type": "parallel", **fields, **self.policies(name, state, where), **self.route(state, where)}


def _map(self: Converter, name: str, state: dict[str, Any], where: Pointer) -> dict[str, Any]:
    for key, what in UNSUPPORTED_MAP.items():
        if key in state:
            raise Refused((*where, key), f"{key} ({what}) has no local meaning")
    scope = Scope(effective_input(state, where), map_item=Code("item"), map_index=Code("index"))
    selector = "ItemSelector" if "ItemSelector" in state else "Parameters"
    given = parameters(state, selector, scope, where) if selector in state else Code("item")
    source: dict[str, Any] = {}
    if "ItemReader" in state:
        source = reading.reader(state["ItemReader"], Scope(scope.input), self.tools, (*where, "ItemReader"))
        if "ItemsPath" in state:
            self.notes.append(f"{'/'.join(map(str, where))}: ignored: ItemsPath beside ItemReader (the reader's "
                              "list is the items)")
    else:
        source = {"items": template(_items(state, scope, where))}
    if "ItemBatcher" in state:
        if selector in state:  # each item is selected, then the selections are batched
            source["select"] = template(given)
        batch, given = reading.batcher(state["ItemBatcher"], Scope(scope.input), (*where, "ItemBatcher"))
        source.update(batch)
    processor = state.get("ItemProcessor", state.get("Iterator"))
    key = "ItemProcessor" if "ItemProcessor" in state else "Iterator"
    config = processor.get("ProcessorConfig") if isinstance(processor, dict) else None
    if isinstance(config, dict) and config.get("Mode") == "DISTRIBUTED":
        self.notes.append(f"{'/'.join(map(str, where))}: a distributed map runs as an inline one (child runs here)")
    machine = inline_machine(self, {k: v for k, v in (processor or {}).items() if k != "ProcessorConfig"},
                             (*where, key), given)
    fields: dict[str, Any] = {**source, **machine,
                              "max_concurrency": _count(state, "MaxConcurrency", where, 0)}
    tolerated = _tolerated(state, where)
    if tolerated is not None:
        fields["tolerated_failures"] = tolerated
    place(fields, state, selected(state, Code("result"), where), where, saves="save")
    return {"type": "map", **fields, **self.policies(name, state, where), **self.route(state, where)}


def _items(state: dict[str, Any], scope: Scope, where: Pointer) -> Value:
    if "Items" in state:
        if not isinstance(state["Items"], list):
            raise Refused((*where, "Items"), "Items other than a literal list (JSONata) is not imported")
        return Lit(state["Items"])
    return read_path(state.get("ItemsPath", "$"), Scope(scope.input), (*where, "ItemsPath"))


def _count(state: dict[str, Any], key: str, where: Pointer, default: int) -> int:
    value = state.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise AslInputError((*where, key), f"{key} must be an integer of at least 0")
    return value


def _tolerated(state: dict[str, Any], where: Pointer) -> int | str | None:
    if "ToleratedFailurePercentage" in state:
        value = state["ToleratedFailurePercentage"]
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 100:
            raise AslInputError((*where, "ToleratedFailurePercentage"), "must be a number from 0 to 100")
        return f"{value:g}%"
    if "ToleratedFailureCount" in state:
        return _count(state, "ToleratedFailureCount", where, 0)
    return None


CONVERTERS.update({"Parallel": _parallel, "Map": _map})
