"""A team's message bus and shared memory kept in the store, so they survive a crash and resume with the team."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agentfsm.runtime.errors import StateError
from agentfsm.runtime.teams import Arrivals, Cell, Message, decide, fits, recipients
from agentfsm.store import teams
from agentfsm.store.base import MemoryRow, MessageRow, Refused
from agentfsm.store.core import Store

_ARRIVALS: dict[tuple[str, str], Arrivals] = {}
"""One wake-up per team and store in this process (one process runs a team: its parent's lease says so)."""


class StoredSpace:
    """`agentfsm.runtime.teams.TeamSpace` over `agentfsm.store.teams`."""

    def __init__(self, store: Store, run_id: str, team: str, agents: Iterable[str],
                 clock: Callable[[], float]) -> None:
        self.store, self.run_id, self.team, self.agents, self.clock = store, run_id, team, tuple(agents), clock
        self.arrivals = _ARRIVALS.setdefault((store.url, team), Arrivals())

    async def seed(self, memory: Mapping[str, Any]) -> StoredSpace:
        await teams.seed_memory(self.store, self.run_id, self.team, dict(memory), self.clock())
        return self

    async def send(self, sender: str, to: str, topic: str | None, content: Any, writer: str) -> list[int]:
        ids = await teams.send(self.store, self.run_id, self.team, sender, recipients(to, sender, self.agents), topic,
                               content, writer, self.clock())
        self.arrivals.posted()
        return ids

    async def receive(self, agent: str, sender: str | None, topic: str | None, timeout: float | None,
                      taker: str) -> Message | None:
        def wanted(row: MessageRow) -> bool:
            return fits(row.sender, row.topic, sender, topic)

        async def take() -> Message | None:
            row = await teams.take(self.store, self.team, agent, wanted, taker)
            return None if row is None else Message(row.id, row.sender, row.recipient, row.topic, row.content)

        found: Message | None = await self.arrivals.wait(take, timeout)
        return found

    async def memory(self, agent: str, op: str, key: str, value: Any, expect_version: int | None,
                     ttl: float | None, writer: str) -> Cell:
        if op == "get":
            rows = [row for row in await teams.memory(self.store, self.team) if row.key == key]
            return Cell(rows[0].value, rows[0].version) if rows else Cell()
        now = self.clock()

        def decided(current: MemoryRow | None) -> MemoryRow:
            cell = None if current is None else Cell(current.value, current.version, current.lock_owner,
                                                      current.lock_expires)
            try:
                after = decide(op, agent, key, cell, value, expect_version, ttl, now)
            except StateError as exc:
                raise Refused(exc) from None
            return MemoryRow(key, after.value, after.version, after.lock_owner, after.lock_expires)

        try:
            row = await teams.write_memory(self.store, self.run_id, self.team, key, writer=writer, agent=agent, op=op,
                                           decide=decided, now=now)
        except Refused as exc:
            raise exc.reason from None
        return Cell(row.value, row.version, row.lock_owner, row.lock_expires)

    async def snapshot(self) -> dict[str, Any]:
        return {row.key: row.value for row in await teams.memory(self.store, self.team) if row.version > 0}
