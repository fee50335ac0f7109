"""`type: final`: end the run successfully; its rendered `output` is the run's result."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from agentfsm.compiler.env import CompileEnv, state_options
from agentfsm.compiler.scope import compile_value, make_scope, rendered
from agentfsm.runtime.model import Event, State, StateContext, StateType
from agentfsm.spec.kinds import Kind, register
from agentfsm.spec.models import VALUE_TEMPLATE, StateSpec


class FinalStateSpec(StateSpec):
    """End the run successfully; `output` is the run's result."""

    terminal: ClassVar[bool] = True
    succeeds: ClassVar[bool] = True

    type: Literal["final"]
    output: Any = Field(None, description="Value template of the run's result.", json_schema_extra=VALUE_TEMPLATE)


class FinalState(State):
    """Render the run's output; the run ends after it."""

    def __init__(self, name: str, output: Any, **options: Any) -> None:
        super().__init__(name, StateType.FINAL, **options)
        self.output = compile_value(output)

    async def execute(self, context: StateContext) -> Event:
        return Event("done", result=rendered(self.output, make_scope(context), "output"))


def compile_final(name: str, spec: FinalStateSpec, env: CompileEnv) -> State:
    return FinalState(name, spec.output, **state_options(spec))


KIND = register(Kind("final", FinalStateSpec, compile_final))
