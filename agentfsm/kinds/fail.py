"""`type: fail`: end the run as failed with a rendered error message."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from agentfsm.compiler.env import CompileEnv, state_options
from agentfsm.compiler.scope import compile_text, make_scope, rendered
from agentfsm.runtime.errors import StateError
from agentfsm.runtime.model import State, StateContext, StateType
from agentfsm.spec.kinds import Kind, register
from agentfsm.spec.models import TEXT_TEMPLATE, StateSpec


class FailStateSpec(StateSpec):
    """End the run as failed."""

    terminal: ClassVar[bool] = True

    type: Literal["fail"]
    error: str = Field("failed", description="Error message template.", json_schema_extra=TEXT_TEMPLATE)


class FailState(State):
    """End the run as failed with the rendered error message."""

    def __init__(self, name: str, error: str, **options: Any) -> None:
        super().__init__(name, StateType.ERROR, **options)
        self.error = compile_text(error)

    async def execute(self, context: StateContext) -> None:
        raise StateError("fail", rendered(self.error, make_scope(context), "error"))


def compile_fail(name: str, spec: FailStateSpec, env: CompileEnv) -> State:
    return FailState(name, spec.error, **state_options(spec))


KIND = register(Kind("fail", FailStateSpec, compile_fail))
