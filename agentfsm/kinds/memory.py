"""`type: memory`: read or write the team's shared memory (get, set, cas, lock, unlock), versioned, with locks."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field

from agentfsm.compiler.env import CompileEnv, state_options
from agentfsm.compiler.scope import compile_value, make_scope, rendered
from agentfsm.kinds.send import writer_of
from agentfsm.runtime.errors import StateError
from agentfsm.runtime.events import MemoryWritten
from agentfsm.runtime.model import Event, State, StateContext
from agentfsm.runtime.teams import seat
from agentfsm.spec.fields import TEXT_TEMPLATE, VALUE_TEMPLATE
from agentfsm.spec.kinds import Kind, register
from agentfsm.spec.models import ActiveStateSpec, Identifier, PositiveDuration, Reporter


class MemoryStateSpec(ActiveStateSpec):
    """One operation on the team's shared memory. A write to a key another agent holds locked fails with
    `memory.locked`; a `cas` whose version no longer matches fails with `memory.conflict` (both catchable)."""

    type: Literal["memory"]
    op: Literal["get", "set", "cas", "lock", "unlock"] = Field(description="The operation.")
    key: str = Field(description="The key (a template may build it).", json_schema_extra=TEXT_TEMPLATE)
    value: Any = Field(None, description="set/cas: value template of the new value.",
                       json_schema_extra=VALUE_TEMPLATE)
    expect_version: Any = Field(None, description="cas: the version the key must be at (0: never written; a "
                                                  "template such as `{{ counter.version }}`).",
                                json_schema_extra=VALUE_TEMPLATE)
    ttl: PositiveDuration | None = Field(None, description="lock: how long the lock lasts unless renewed "
                                                           "(default 30s), so a crashed holder never blocks others.")
    save: Identifier | None = Field(None, description="Context key for `{value, version}` (the key after the "
                                                      "operation; a key never written reads `{value: null, "
                                                      "version: 0}`).")

    def diagram_notes(self) -> list[str]:
        return [f"memory: {self.op} {self.key}"]

    def check(self, name: str, reporter: Reporter) -> None:
        super().check(name, reporter)
        if self.op == "cas" and self.expect_version is None:
            reporter.report(("states", name, "op"), "missing-field",
                            f"states.{name}: op: cas needs expect_version: (the version the key must be at)")


class MemoryState(State):
    def __init__(self, name: str, spec: MemoryStateSpec, **options: Any) -> None:
        super().__init__(name, **options)
        self.op, self.ttl, self.save = spec.op, spec.ttl, spec.save
        self.key, self.value = compile_value(spec.key), compile_value(spec.value)
        self.expect = compile_value(spec.expect_version)

    async def execute(self, context: StateContext) -> Event:
        place = seat(self.name)
        scope = make_scope(context)
        key = str(rendered(self.key, scope, "key"))
        value = rendered(self.value, scope, "value") if self.op in ("set", "cas") else None
        expect = _version(rendered(self.expect, scope, "expect_version")) if self.op == "cas" else None
        cell = await place.space.memory(place.agent, self.op, key, value, expect, self.ttl, writer_of(context))
        if self.op != "get" and context.observers.listens(MemoryWritten):
            await context.observers.publish(MemoryWritten(
                run_id=context.run_id, at=time.time(), step=context.step, team_run=place.space.team,
                agent=place.agent, op=self.op, key=key, value=cell.value, version=cell.version))
        view = cell.view()
        if self.save is not None:
            context.data[self.save] = view
        return Event("done", result=view)


def _version(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit():
        raise StateError("template.error", f"expect_version must be a whole number, got {value!r}")
    return int(value)


def compile_memory(name: str, spec: MemoryStateSpec, env: CompileEnv) -> State:
    return MemoryState(name, spec, **state_options(spec))


KIND = register(Kind("memory", MemoryStateSpec, compile_memory))
