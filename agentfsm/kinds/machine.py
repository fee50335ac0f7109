"""`type: machine`: run another machine (a file, or states written inline) as a child run and wait for it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Literal

from pydantic import Field

from agentfsm.compiler.env import CompileEnv, state_options
from agentfsm.compiler.nested import compile_nested
from agentfsm.compiler.scope import compile_assignments, make_scope, rendered
from agentfsm.runtime.children import ChildRequest, child_error, run_child
from agentfsm.runtime.loop import RunResult
from agentfsm.runtime.machine import StateMachine
from agentfsm.runtime.model import Event, State, StateContext
from agentfsm.runtime.waiting import WaitForEvent
from agentfsm.spec.kinds import Kind, register
from agentfsm.spec.models import VALUE_TEMPLATE, ActiveStateSpec, Identifier, StateName
from agentfsm.spec.nesting import NestedMachine, NestedRef


class MachineStateSpec(ActiveStateSpec):
    """Run a machine as a child run (a run of its own, with this run as its parent) and wait for its end."""

    type: Literal["machine"]
    machine: str | None = Field(None, description="The machine file, relative to this file's folder.")
    initial: StateName | None = Field(None, description="Inline machine: its first state.")
    states: dict[str, Any] | None = Field(
        None, description="Inline machine: its states, written as a machine file's are (it shares this file's "
        "`llms:` and `tools:`; its templates see the inputs given here).")
    context: dict[Identifier, Any] = Field(default_factory=dict, description="Inline machine: initial data.")
    inputs: dict[Identifier, Any] = Field(
        default_factory=dict, description="The child's inputs: name -> value template over this run's context.",
        json_schema_extra=VALUE_TEMPLATE)
    save: Identifier | None = Field(None, description="Context key the child's output is saved under.")

    def ref(self) -> NestedMachine:
        return NestedMachine(machine=self.machine, initial=self.initial, states=self.states, context=self.context,
                             inputs=self.inputs)

    def nested(self) -> Iterator[NestedRef]:
        yield (), self.ref(), frozenset()


def inputs_renderer(inputs: dict[str, Any], where: str) -> Callable[[StateContext, dict[str, Any]], dict[str, Any]]:
    """Render a child's `inputs:` over the parent's context (plus `extra` names a strategy gives)."""
    assign = compile_assignments(inputs)

    def render(context: StateContext, extra: dict[str, Any]) -> dict[str, Any]:
        return rendered(assign, {**make_scope(context), **extra}, where)

    return render


def outcome_of(name: str, result: RunResult) -> Any:
    """A child's output, or its failure raised in the parent (a waiting child makes the parent wait with it)."""
    if result.status == "waiting" and result.waiting is not None:
        raise WaitForEvent(tuple(result.waiting.get("events") or ()), result.waiting.get("deadline"))
    if result.status != "succeeded":
        raise child_error(name, result)
    return result.output


class MachineState(State):
    """Render the inputs, run the child (or find it, when the parent resumes), save its output."""

    def __init__(self, name: str, machine: StateMachine, inputs: dict[str, Any], save: str | None,
                 **options: Any) -> None:
        super().__init__(name, **options)
        self.machine, self.save = machine, save
        self.inputs = inputs_renderer(inputs, "inputs")

    async def execute(self, context: StateContext) -> Event:
        request = ChildRequest(self.name, self.machine, self.inputs(context, {}))
        output = outcome_of(self.name, await run_child(context, request))
        if self.save is not None:
            context.data[self.save] = output
        return Event("done", result=output)


def compile_machine_state(name: str, spec: MachineStateSpec, env: CompileEnv) -> State:
    child = compile_nested(spec.ref(), name, env)
    return MachineState(name, child, spec.inputs, spec.save, **state_options(spec))


KIND = register(Kind("machine", MachineStateSpec, compile_machine_state))
