"""`type: send`: a team agent posts a message on its team's bus (to one agent, or to all the others)."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field

from agentfsm.compiler.env import CompileEnv, state_options
from agentfsm.compiler.scope import compile_value, make_scope, rendered
from agentfsm.runtime.events import MessageSent
from agentfsm.runtime.model import Event, State, StateContext
from agentfsm.runtime.teams import seat
from agentfsm.spec.fields import TEXT_TEMPLATE, VALUE_TEMPLATE
from agentfsm.spec.kinds import Kind, register
from agentfsm.spec.models import ActiveStateSpec


class SendStateSpec(ActiveStateSpec):
    """Post a message on the team's bus; the agent goes on at once (messages are kept in order per recipient)."""

    type: Literal["send"]
    to: str = Field(description="An agent of the team, or `all` (every other agent); a template may choose it.",
                    json_schema_extra=TEXT_TEMPLATE)
    topic: str | None = Field(None, description="A label `receive` can filter on.")
    content: Any = Field(None, description="Value template of the message.", json_schema_extra=VALUE_TEMPLATE)

    def diagram_notes(self) -> list[str]:
        return [f"sends to: {self.to}" + (f" (topic {self.topic})" if self.topic else "")]


def writer_of(context: StateContext) -> str:
    """The step writing (`run:branch:step`): the same step taken again after a crash is known by it."""
    return f"{context.run_id}:{context.metadata.get('branch', 'main')}:{context.step}"


class SendState(State):
    def __init__(self, name: str, to: str, topic: str | None, content: Any, **options: Any) -> None:
        super().__init__(name, **options)
        self.to, self.topic, self.content = compile_value(to), topic, compile_value(content)

    async def execute(self, context: StateContext) -> Event:
        place = seat(self.name)
        scope = make_scope(context)
        to, content = str(rendered(self.to, scope, "to")), rendered(self.content, scope, "content")
        ids = await place.space.send(place.agent, to, self.topic, content, writer_of(context))
        if context.observers.listens(MessageSent):
            await context.observers.publish(MessageSent(
                run_id=context.run_id, at=time.time(), step=context.step, team_run=place.space.team,
                sender=place.agent, recipient=None if to == "all" else to, topic=self.topic, content=content,
                message_id=ids[0] if ids else 0))
        return Event("done", result={"to": to, "topic": self.topic, "content": content})


def compile_send(name: str, spec: SendStateSpec, env: CompileEnv) -> State:
    return SendState(name, spec.to, spec.topic, spec.content, **state_options(spec))


KIND = register(Kind("send", SendStateSpec, compile_send))
