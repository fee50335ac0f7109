"""`type: set`: assign rendered values into the context."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from agentfsm.compiler.env import CompileEnv, state_options
from agentfsm.compiler.scope import compile_assignments, make_scope, rendered
from agentfsm.runtime.model import State, StateContext
from agentfsm.spec.kinds import Kind, register
from agentfsm.spec.fields import SetKey
from agentfsm.spec.models import VALUE_TEMPLATE, ActiveStateSpec


class SetStateSpec(ActiveStateSpec):
    """Assign values into the context."""

    type: Literal["set"]
    set: dict[SetKey, Any] = Field(description="Context key -> value template (the key `$$` sets the context object "
                                   "kept apart from the data: `run.data` never shows it, templates read it as "
                                   "`run[\"$$\"]`).", json_schema_extra=VALUE_TEMPLATE)


class SetState(State):
    """Assign rendered values into the context (every value sees the same scope)."""

    def __init__(self, name: str, values: dict[str, Any], **options: Any) -> None:
        super().__init__(name, **options)
        self.assign = compile_assignments(values)

    async def execute(self, context: StateContext) -> None:
        scope = make_scope(context)
        if scope["run"]["data"] is context.data:  # a value holding `run.data` saves a snapshot, not a cycle
            scope["run"]["data"] = dict(context.data)
        context.data.update(rendered(self.assign, scope, "set"))


def compile_set(name: str, spec: SetStateSpec, env: CompileEnv) -> State:
    return SetState(name, spec.set, **state_options(spec))


KIND = register(Kind("set", SetStateSpec, compile_set))
