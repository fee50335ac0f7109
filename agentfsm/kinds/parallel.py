"""`type: parallel`: run branches (machines, inline or files) concurrently as child runs; join all, any or N."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field

from agentfsm.compiler.env import CompileEnv, state_options
from agentfsm.compiler.nested import compile_nested
from agentfsm.kinds.machine import inputs_renderer
from agentfsm.runtime.children import ChildRequest, Join, gather
from agentfsm.runtime.machine import StateMachine
from agentfsm.runtime.model import Event, State, StateContext
from agentfsm.spec.kinds import Kind, register
from agentfsm.spec.models import ActiveStateSpec, Identifier, Reporter
from agentfsm.spec.nesting import NestedMachine, NestedRef


class ParallelStateSpec(ActiveStateSpec):
    """Run branches concurrently, each a child run; the state ends when the join is met."""

    type: Literal["parallel"]
    branches: Annotated[dict[Identifier, NestedMachine], Field(min_length=1)] = Field(
        description="Branch name -> machine (`machine: FILE`, or `initial:` and `states:` inline) with `inputs:`.")
    join: Literal["all", "any"] | Annotated[int, Field(ge=1)] = Field(
        "all", description="`all`: every branch must succeed (the first failure cancels the others and raises "
        "here); `any`: the first success wins and cancels the others; N: the first N successes.")
    max_concurrency: int | None = Field(None, ge=1, description="At most this many branches run at once.")
    save: Identifier | None = Field(None, description="Context key the outputs are saved under: branch name -> "
                                                      "output (the branches that succeeded).")

    def diagram_label(self, name: str) -> str:
        """How a diagram names the state: with its join (its branches are drawn inside it)."""
        return f"{name} (parallel, join {self.join})"

    def nested(self) -> Iterator[NestedRef]:
        for name, ref in self.branches.items():
            yield ("branches", name), ref, frozenset()

    def check(self, name: str, reporter: Reporter) -> None:
        super().check(name, reporter)
        if isinstance(self.join, int) and self.join > len(self.branches):
            reporter.report(("states", name, "join"), "join-too-many",
                            f"states.{name}.join: waits for {self.join} branches, but there are only "
                            f"{len(self.branches)}")


class ParallelState(State):
    """Start (or find) every branch, wait for the join, save the outputs by branch name."""

    def __init__(self, name: str, branches: dict[str, tuple[StateMachine, dict[str, Any]]], join: Join,
                 max_concurrency: int | None, save: str | None, **options: Any) -> None:
        super().__init__(name, **options)
        self.branches = {branch: (machine, inputs_renderer(inputs, f"branches.{branch}.inputs"))
                         for branch, (machine, inputs) in branches.items()}
        self.join, self.max_concurrency, self.save = join, max_concurrency, save

    async def execute(self, context: StateContext) -> Event:
        requests = [ChildRequest(branch, machine, render(context, {}))
                    for branch, (machine, render) in self.branches.items()]
        results = await gather(context, requests, join=self.join, max_concurrency=self.max_concurrency)
        outputs = {branch: result.output for branch, result in results.items() if result.status == "succeeded"}
        if self.save is not None:
            context.data[self.save] = outputs
        return Event("done", result=outputs)


def compile_parallel(name: str, spec: ParallelStateSpec, env: CompileEnv) -> State:
    branches = {branch: (compile_nested(ref, f"{name}.{branch}", env), ref.inputs)
                for branch, ref in spec.branches.items()}
    return ParallelState(name, branches, spec.join, spec.max_concurrency, spec.save, **state_options(spec))


KIND = register(Kind("parallel", ParallelStateSpec, compile_parallel))
