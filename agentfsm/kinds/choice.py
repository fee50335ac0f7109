"""`type: choice`: route by guards; the state does no work."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from agentfsm.compiler.env import CompileEnv, state_options
from agentfsm.runtime.model import Event, State, StateContext
from agentfsm.spec.kinds import Kind, register
from agentfsm.spec.models import Reporter, StateSpec, TransitionRule


class ChoiceStateSpec(StateSpec):
    """Route by guards; does no work."""

    diagram_choice: ClassVar[bool] = True

    type: Literal["choice"]
    transitions: list[TransitionRule] = Field(
        min_length=1, description="Ordered rules; the last must be a default (no `when:`, no `event:`)."
    )

    def check(self, name: str, reporter: Reporter) -> None:
        super().check(name, reporter)
        last = self.transitions[-1]
        if last.when is not None or last.event is not None:
            reporter.report(("states", name, "transitions", len(self.transitions) - 1), "choice-without-default",
                            f"states.{name}: a choice must end with a default rule (only 'to:'), "
                            "taken when no guard holds")


class ChoiceState(State):
    """Does no work; its rules route the event that led into it."""

    async def execute(self, context: StateContext) -> Event | None:
        return context.event


def compile_choice(name: str, spec: ChoiceStateSpec, env: CompileEnv) -> State:
    return ChoiceState(name, **state_options(spec))


KIND = register(Kind("choice", ChoiceStateSpec, compile_choice))
