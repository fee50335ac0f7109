"""ASL's context object (`$$`) in an imported machine: the execution's input, name and start time and the
machine's name are kept in the context key `$$` (apart from the data: `run.data` never shows it, an `output:`
keeps it), written by a first state `(execution)`; branches and item processors get it from their parent."""

from __future__ import annotations

from typing import Any

from agentfsm.asl.exprs import Code, Lit, Obj, Value, member, template
from agentfsm.asl.problems import Pointer, Refused

KEY = "$$"
READ = Code('run["$$"]')
"""How templates read the kept context object."""
KEPT = {"Execution": ("Id", "Input", "Name", "StartTime"), "StateMachine": ("Id", "Name")}
"""The parts of the context object the first state keeps, by field."""
ENTRY = "(execution)"
PASSED = "context_object"
"""The input a branch or item processor gets the context object under."""


def kept_part(steps: list[str | int], text: str, where: Pointer) -> Value:
    """`$$.Execution.Input.a`, `$$.StateMachine.Id`...: a read of the kept object."""
    head = steps[0]
    if head not in KEPT or (len(steps) > 1 and steps[1] not in KEPT[head]):
        known = ", ".join(f"$$.{part}.{field}" for part, fields in KEPT.items() for field in fields)
        raise Refused(where, f"the context object's {text} has no meaning in a local run (kept: {known}, "
                      "$$.State.Name, $$.State.EnteredTime, $$.Task.Token, $$.Map.Item.Value, $$.Map.Item.Index)")
    return member(READ, steps)


def whole(state: Value, entered: Value, token: Value, item: Value | None, index: Value | None) -> Value:
    """`$$` itself: the kept parts with the state's name, entry time, task token (and the map item)."""
    parts: list[tuple[str, Value]] = [(part, member(READ, [part])) for part in KEPT]
    parts += [("State", Obj((("EnteredTime", entered), ("Name", state)))), ("Task", Obj((("Token", token),)))]
    if item is not None and index is not None:
        parts.append(("Map", Obj((("Item", Obj((("Index", index), ("Value", item)))),))))
    return Obj(tuple(parts))


def used(value: Any) -> bool:
    """Whether any template in an imported (part of a) machine reads the context object."""
    if isinstance(value, str):
        return READ.text in value
    if isinstance(value, dict):
        return any(used(item) for item in value.values())
    if isinstance(value, list):
        return any(used(item) for item in value)
    return False


def entry_state(machine_name: str, start: str) -> dict[str, Any]:
    """The first state of an imported machine that reads `$$`: it keeps the execution's facts."""
    named = template(Lit(machine_name))
    execution = {"Id": "{{ run.id }}", "Input": "{{ run.data }}", "Name": "{{ run.id }}",
                 "StartTime": "{{ now_timestamp() }}"}
    return {"type": "set", "description": "Keeps the execution's input, name and start time apart from the data "
            "(the Step Functions context object, read as run[\"$$\"]).",
            "set": {KEY: {"Execution": execution, "StateMachine": {"Id": named, "Name": named}}},
            "next": start}
