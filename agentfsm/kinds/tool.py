"""`type: tool`: call a tool binding with rendered arguments, save the result."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from agentfsm.bindings.known_secrets import redact_value
from agentfsm.compiler.env import CompileEnv, state_options
from agentfsm.compiler.scope import compile_assignments, compile_text, finish_step, make_scope, rendered
from agentfsm.runtime.calls import ToolCallRecord, call_ended, tool_call_started
from agentfsm.runtime.errors import StateError
from agentfsm.runtime.model import Event, State, StateContext
from agentfsm.spec.kinds import Kind, register
from agentfsm.spec.models import TEXT_TEMPLATE, VALUE_TEMPLATE, ActiveStateSpec, Identifier

if TYPE_CHECKING:
    from agentfsm.bindings.tools import ToolClient


class ToolStateSpec(ActiveStateSpec):
    """Call a tool binding with rendered arguments, save the result."""

    type: Literal["tool"]
    tool: str = Field(description="Name of a binding under `tools:`.")
    args: dict[str, Any] = Field(
        default_factory=dict, description="Argument name -> value template.", json_schema_extra=VALUE_TEMPLATE
    )
    save: Identifier | None = Field(None, description="Context key the result is saved under.")
    emit: str | None = Field(
        None, description="Template for the event name (sees `result`); default `done`.", json_schema_extra=TEXT_TEMPLATE
    )

    def diagram_notes(self) -> list[str]:
        return [f"tool: {self.tool}"]


class ToolState(State):
    """Render the args, call the binding, save, emit."""

    def __init__(self, name: str, client: ToolClient, *, args: dict[str, Any], save: str | None, emit: str | None,
                 **options: Any) -> None:
        super().__init__(name, **options)
        self.client = client
        self.args = compile_assignments(args)
        self.save = save
        self.emit = compile_text(emit) if emit is not None else None

    async def execute(self, context: StateContext) -> Event:
        args = rendered(self.args, make_scope(context), "args")
        result = await call_tool(context, self.name, self.client, args)
        return finish_step(context, result, self.save, self.emit)


async def call_tool(context: StateContext, state: str, client: ToolClient, args: dict[str, Any]) -> Any:
    """Call a tool binding for a state, the call observed and recorded like every tool call."""
    await tool_call_started(context, state, client.name, args)
    started = time.perf_counter()
    try:
        result = redact_value(await client.call(args))  # a tool may echo a key: out before anyone sees it
    except StateError as exc:
        await call_ended(context, state, ToolCallRecord(
            binding=client.name, args=args, error=exc.as_dict(), duration=time.perf_counter() - started))
        raise
    await call_ended(context, state, ToolCallRecord(
        binding=client.name, args=args, result=result, duration=time.perf_counter() - started))
    return result


def compile_tool(name: str, spec: ToolStateSpec, env: CompileEnv) -> State:
    return ToolState(name, env.tools[spec.tool], args=spec.args, save=spec.save, emit=spec.emit,
                     **state_options(spec))


KIND = register(Kind("tool", ToolStateSpec, compile_tool))
