"""Where a team agent sits: its team's bus and shared memory, its own name, the team's agents.

A team state runs each agent as a child run inside a task that carries the agent's `Seat`
(a context variable, so nested machines inside an agent sit in the same seat); `send`,
`receive` and `memory` states find their team through `seat()`.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any, Protocol

from agentfsm.runtime.errors import StateError


class TeamSpace(Protocol):
    """A team's message bus and shared memory (kept in a store: `agentfsm.history.teamspace`)."""

    team: str
    agents: tuple[str, ...]

    async def send(self, sender: str, recipients: list[str], topic: str | None, content: Any, writer: str) -> int: ...
    async def receive(self, agent: str, sender: str | None, topic: str | None, timeout: float | None,
                      taker: str) -> dict[str, Any] | None: ...
    async def memory(self, agent: str, op: str, key: str, value: Any, expect_version: int | None,
                     ttl: float | None, writer: str) -> dict[str, Any]: ...
    async def snapshot(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Seat:
    """One agent's place in a team."""

    space: TeamSpace
    agent: str


_SEAT: contextvars.ContextVar[Seat | None] = contextvars.ContextVar("agentfsm_team_seat", default=None)


def seat(state: str) -> Seat:
    """The seat of the agent running `state`; StateError `team.none` outside a team."""
    found = _SEAT.get()
    if found is None:
        raise StateError("team.none", "this state works only inside an agent of a team (type: team)", state=state)
    return found


def take_seat(found: Seat) -> None:
    """Sit the current task (an agent's) in its seat."""
    _SEAT.set(found)
