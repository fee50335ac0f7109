"""The collaborative strategy: agents work at once over the team's bus and shared memory until done.

The team ends when every agent has finished, or as soon as `until:` (a guard over the shared
memory, as `memory`) holds after some agent's step; the agents still working are then
cancelled (and recorded so). `max_steps` bounds the agents' steps all together.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from agentfsm.compiler.scope import make_scope, rendered
from agentfsm.runtime.children import children_of, gather
from agentfsm.runtime.errors import StateError
from agentfsm.runtime.events import StepEnded
from agentfsm.runtime.model import StateContext
from agentfsm.runtime.teams import Seat, TeamSpace

if TYPE_CHECKING:
    from agentfsm.kinds.team import TeamState


class _Watch:
    """An observer every agent carries: counts the team's steps and checks `until:` after each."""

    def __init__(self, team: TeamState, context: StateContext, space: TeamSpace) -> None:
        self.team, self.context, self.space = team, context, space
        self.steps = 0
        self.stop = asyncio.Event()
        self.failure: StateError | None = None
        self.reached = False

    async def on_step_ended(self, *, event: StepEnded) -> None:
        if self.stop.is_set():
            return
        self.steps += 1
        limit = self.team.spec.max_steps
        if limit is not None and self.steps > limit:
            self.failure = StateError("team.max_steps", f"the agents took more than max_steps ({limit}) steps",
                                      state=self.team.name)
            self.stop.set()
            return
        until = self.team.until
        if until is not None:
            memory = await self.space.snapshot()
            try:
                reached = rendered(until.render, {**make_scope(self.context), "memory": memory}, "until")
            except StateError as exc:  # the team's own guard: its failure is the team's
                exc.state = self.team.name
                self.failure = exc
                self.stop.set()
                return
            if reached:
                self.reached = True
                self.stop.set()


async def run_collaborative(team: TeamState, context: StateContext) -> dict[str, Any]:
    space = await children_of(context).space(context, team.name, list(team.agents), team.spec.memory)
    watch = _Watch(team, context, space)
    requests = [agent.request(context, seat=Seat(space, agent.name), observers=(watch,))
                for agent in team.agents.values()]
    results = await gather(context, requests, max_concurrency=team.spec.max_concurrency, stop=watch.stop)
    if watch.failure is not None:
        raise watch.failure
    outputs = {name: result.output for name, result in results.items() if result.status == "succeeded"}
    return {"results": outputs, "memory": await space.snapshot()}
