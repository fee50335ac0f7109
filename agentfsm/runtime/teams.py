"""Where a team agent sits: its team's bus and shared memory, its own name, the team's agents.

A team state runs each agent as a child run inside a task that carries the agent's `Seat`
(a context variable, so nested machines inside an agent sit in the same seat); `send`,
`receive` and `memory` states find their team through `seat()`. The rules of the bus and of
the memory (who may write a locked key, when a `cas` conflicts, who receives a broadcast)
are the functions below, shared by the in-memory space here and the store's
(`agentfsm.history.teamspace`).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from agentfsm.runtime.errors import StateError

MEMORY_OPS = ("get", "set", "cas", "lock", "unlock")
LOCK_TTL = 30.0
"""Seconds a lock lasts when `ttl:` is not given."""


@dataclass(slots=True)
class Cell:
    """One key of a shared memory: value, version (0: never written), lock owner and expiry."""

    value: Any = None
    version: int = 0
    lock_owner: str | None = None
    lock_expires: float | None = None

    def view(self) -> dict[str, Any]:
        return {"value": self.value, "version": self.version}


@dataclass(slots=True)
class Message:
    """A message as an agent receives it."""

    id: int
    sender: str
    recipient: str
    topic: str | None
    content: Any

    def view(self) -> dict[str, Any]:
        return {"from": self.sender, "to": self.recipient, "topic": self.topic, "content": self.content, "id": self.id}


def decide(op: str, agent: str, key: str, current: Cell | None, value: Any, expect_version: int | None,
           ttl: float | None, now: float) -> Cell:
    """The key after `agent`'s write; StateError `memory.locked` or `memory.conflict` when it is refused."""
    cell = current or Cell()
    holder = cell.lock_owner if cell.lock_expires is None or cell.lock_expires > now else None
    if holder is not None and holder != agent:
        raise StateError("memory.locked", f"'{key}' is locked by agent '{holder}'",
                         detail={"key": key, "owner": holder, "expires": cell.lock_expires})
    if op == "cas" and cell.version != (expect_version or 0):
        raise StateError("memory.conflict", f"'{key}' is at version {cell.version}, not {expect_version or 0}",
                         detail={"key": key, "version": cell.version, "expected": expect_version or 0})
    kept_lock = (holder, cell.lock_expires) if holder == agent else (None, None)
    if op in ("set", "cas"):
        return Cell(value, cell.version + 1, *kept_lock)
    if op == "lock":
        return Cell(cell.value, cell.version, agent, now + (ttl or LOCK_TTL))
    if op == "unlock":
        return Cell(cell.value, cell.version, None, None)
    raise StateError("state.error", f"unknown memory op '{op}' (one of {', '.join(MEMORY_OPS)})")


def recipients(to: str, sender: str, agents: Iterable[str]) -> list[str]:
    """Who a message to `to` reaches: that agent, or every agent but the sender (`all`)."""
    agents = list(agents)
    if to == "all":
        return [agent for agent in agents if agent != sender]
    if to not in agents:
        raise StateError("bus.unknown_agent", f"no agent '{to}' in this team (agents: {', '.join(agents)})",
                         detail={"to": to})
    return [to]


def fits(message_sender: str, message_topic: str | None, sender: str | None, topic: str | None) -> bool:
    return (sender is None or message_sender == sender) and (topic is None or message_topic == topic)


class TeamSpace(Protocol):
    """A team's message bus and shared memory. `writer` names the step writing (`run:branch:step`): the same
    step doing it again (after a crash) changes nothing more."""

    team: str
    agents: tuple[str, ...]

    async def send(self, sender: str, to: str, topic: str | None, content: Any, writer: str) -> list[int]: ...
    async def receive(self, agent: str, sender: str | None, topic: str | None, timeout: float | None,
                      taker: str) -> Message | None: ...
    async def memory(self, agent: str, op: str, key: str, value: Any, expect_version: int | None,
                     ttl: float | None, writer: str) -> Cell: ...
    async def snapshot(self) -> dict[str, Any]: ...


class Arrivals:
    """Wakes agents waiting in `receive` when a message is posted: no polling, no thread."""

    def __init__(self) -> None:
        self._signal = asyncio.Event()

    def posted(self) -> None:
        self._signal.set()
        self._signal = asyncio.Event()

    async def wait(self, take: Any, timeout: float | None) -> Any:
        """`await take()` until it finds something, sleeping between posts; None once `timeout` passed."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            signal = self._signal  # before looking: a post while we look wakes us
            found = await take()
            if found is not None:
                return found
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            try:
                await asyncio.wait_for(signal.wait(), remaining)
            except TimeoutError:
                return None


@dataclass
class LocalSpace:
    """A team space in memory (a run nobody records)."""

    team: str
    agents: tuple[str, ...]
    cells: dict[str, Cell] = field(default_factory=dict)
    messages: list[tuple[Message, str | None]] = field(default_factory=list)
    arrivals: Arrivals = field(default_factory=Arrivals)

    @classmethod
    def seeded(cls, team: str, agents: Iterable[str], memory: Mapping[str, Any]) -> LocalSpace:
        return cls(team, tuple(agents), {key: Cell(value, 1) for key, value in memory.items()})

    async def send(self, sender: str, to: str, topic: str | None, content: Any, writer: str) -> list[int]:
        ids = []
        for recipient in recipients(to, sender, self.agents):
            ids.append(len(self.messages) + 1)
            self.messages.append((Message(ids[-1], sender, recipient, topic, content), None))
        self.arrivals.posted()
        return ids

    async def receive(self, agent: str, sender: str | None, topic: str | None, timeout: float | None,
                      taker: str) -> Message | None:
        async def take() -> Message | None:
            for index, (message, taken) in enumerate(self.messages):
                if taken is None and message.recipient == agent and fits(message.sender, message.topic, sender,
                                                                          topic):
                    self.messages[index] = (message, taker)
                    return message
            return None

        found: Message | None = await self.arrivals.wait(take, timeout)
        return found

    async def memory(self, agent: str, op: str, key: str, value: Any, expect_version: int | None,
                     ttl: float | None, writer: str) -> Cell:
        if op == "get":
            return replace(self.cells.get(key) or Cell())
        cell = self.cells[key] = decide(op, agent, key, self.cells.get(key), value, expect_version, ttl, time.time())
        return replace(cell)

    async def snapshot(self) -> dict[str, Any]:
        return {key: cell.value for key, cell in self.cells.items() if cell.version > 0}


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
