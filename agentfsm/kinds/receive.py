"""`type: receive`: a team agent takes the oldest message for it (optionally from one agent, on one topic)."""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal

from pydantic import Field

from agentfsm.compiler.env import CompileEnv
from agentfsm.kinds.send import writer_of
from agentfsm.runtime.events import MessageReceived
from agentfsm.runtime.model import Event, State, StateContext
from agentfsm.runtime.teams import seat
from agentfsm.spec.durations import duration_text
from agentfsm.spec.kinds import Kind, register
from agentfsm.spec.models import Identifier, PositiveDuration, RoutedStateSpec

RECEIVE_TIMEOUT_EVENT = "timeout"


class ReceiveStateSpec(RoutedStateSpec):
    """Take the oldest message addressed to this agent (waiting for one, without polling); `timeout` when none
    comes in time."""

    suspends: ClassVar[bool] = True  # it waits for another agent: validate warns when it has no timeout

    type: Literal["receive"]
    from_: str | None = Field(None, alias="from", description="Only messages from this agent.")
    topic: str | None = Field(None, description="Only messages with this topic.")
    timeout: PositiveDuration | None = Field(
        None, description="Wait at most this long; then the state produces the event `timeout` (none: for ever).")
    save: Identifier | None = Field(None, description="Context key the message is saved under: "
                                                      "`{from, to, topic, content, id}`.")

    @property
    def next_label(self) -> str:
        return "done | timeout" if self.timeout is not None else "done"

    def diagram_notes(self) -> list[str]:
        source = f"receives from: {self.from_}" if self.from_ else "receives a message"
        notes = [source + (f" (topic {self.topic})" if self.topic else "")]
        return [*notes, f"timer: {duration_text(self.timeout)}"] if self.timeout is not None else notes


class ReceiveState(State):
    def __init__(self, name: str, spec: ReceiveStateSpec) -> None:
        super().__init__(name, description=spec.description, max_visits=spec.max_visits, checkpoint=spec.checkpoint)
        self.sender, self.topic, self.wait_for, self.save = spec.from_, spec.topic, spec.timeout, spec.save

    async def execute(self, context: StateContext) -> Event:
        place = seat(self.name)
        message = await place.space.receive(place.agent, self.sender, self.topic, self.wait_for, writer_of(context))
        if message is None:
            context.mailbox.timer_ran_out(RECEIVE_TIMEOUT_EVENT)
            return Event(RECEIVE_TIMEOUT_EVENT)
        if context.observers.listens(MessageReceived):
            await context.observers.publish(MessageReceived(
                run_id=context.run_id, at=time.time(), step=context.step, team_run=place.space.team,
                agent=place.agent, message_id=message.id, sender=message.sender, topic=message.topic))
        view: dict[str, Any] = message.view()
        if self.save is not None:
            context.data[self.save] = view
        return Event("done", data=view, result=view)


def compile_receive(name: str, spec: ReceiveStateSpec, env: CompileEnv) -> State:
    return ReceiveState(name, spec)


KIND = register(Kind("receive", ReceiveStateSpec, compile_receive))
