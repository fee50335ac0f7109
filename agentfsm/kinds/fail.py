"""`type: fail`: end the run as failed with a rendered error message."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from agentfsm.compiler.env import CompileEnv, state_options
from agentfsm.compiler.scope import compile_text, compile_value, make_scope, rendered
from agentfsm.runtime.errors import StateError
from agentfsm.runtime.model import State, StateContext, StateType
from agentfsm.spec.kinds import Kind, register
from agentfsm.spec.models import TEXT_TEMPLATE, VALUE_TEMPLATE, StateSpec


class FailStateSpec(StateSpec):
    """End the run as failed."""

    terminal: ClassVar[bool] = True

    type: Literal["fail"]
    error: str = Field("failed", description="Error message template.", json_schema_extra=TEXT_TEMPLATE)
    detail: Any = Field(None, description="Value template of the error's `detail` (such as Step Functions' "
                        "`{error: NAME, cause: TEXT}`).", json_schema_extra=VALUE_TEMPLATE)


class FailState(State):
    """End the run as failed with the rendered error message."""

    def __init__(self, name: str, error: str, detail: Any = None, **options: Any) -> None:
        super().__init__(name, StateType.ERROR, **options)
        self.error = compile_text(error)
        self.detail = compile_value(detail) if detail is not None else None

    async def execute(self, context: StateContext) -> None:
        scope = make_scope(context)
        detail = rendered(self.detail, scope, "detail") if self.detail is not None else None
        raise StateError("fail", rendered(self.error, scope, "error"), detail=detail)


def compile_fail(name: str, spec: FailStateSpec, env: CompileEnv) -> State:
    return FailState(name, spec.error, spec.detail, **state_options(spec))


KIND = register(Kind("fail", FailStateSpec, compile_fail))
