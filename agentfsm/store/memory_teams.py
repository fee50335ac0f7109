"""Team bus and shared-memory rows of the memory backend (see `agentfsm.store.base.TeamRows`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from agentfsm.store.base import MemoryRow, MessageRow, WriteRow


def _kept(value: Any) -> Any:
    """A copy, as a database would give it back (JSON in, JSON out)."""
    return json.loads(json.dumps(value, ensure_ascii=False))


@dataclass(slots=True)
class TeamRowsKept:
    """One team's rows, and the run they belong to."""

    run_id: str
    messages: list[MessageRow] = field(default_factory=list)
    memory: dict[str, MemoryRow] = field(default_factory=dict)
    writes: dict[tuple[str, str], WriteRow] = field(default_factory=dict)


class MemoryTeamRows:
    """Rows in the backend's `teams` dict; every change journalled so a failed transaction is undone."""

    __slots__ = ("teams", "counter", "journal")

    def __init__(self, teams: dict[str, TeamRowsKept], counter: list[int], journal: list[Callable[[], object]]) -> None:
        self.teams, self.counter, self.journal = teams, counter, journal

    def _team(self, run_id: str, team: str) -> TeamRowsKept:
        kept = self.teams.get(team)
        if kept is None:
            kept = self.teams[team] = TeamRowsKept(run_id)
            self.journal.append(lambda: self.teams.pop(team, None))
        return kept

    async def messages(self, team: str, *, recipient: str | None = None, untaken: bool = False,
                       writer: str | None = None, taker: str | None = None) -> list[MessageRow]:
        kept = self.teams.get(team)
        return [replace(m, content=_kept(m.content)) for m in (kept.messages if kept else ())
                if (recipient is None or m.recipient == recipient) and (writer is None or m.writer == writer)
                and (taker is None or m.taken_by == taker) and not (untaken and m.taken_by is not None)]

    async def insert_message(self, run_id: str, message: MessageRow) -> int:
        kept = self._team(run_id, message.team)
        self.counter[0] += 1
        message_id = self.counter[0]
        kept.messages.append(replace(message, id=message_id, content=_kept(message.content), taken_by=None))
        self.journal.append(kept.messages.pop)
        return message_id

    async def take_message(self, team: str, message_id: int, taker: str) -> bool:
        kept = self.teams.get(team)
        for message in kept.messages if kept else ():
            if message.id == message_id and message.taken_by is None:
                message.taken_by = taker
                self.journal.append(lambda found=message: setattr(found, "taken_by", None))
                return True
        return False

    async def memory(self, team: str, key: str | None = None) -> list[MemoryRow]:
        kept = self.teams.get(team)
        rows = sorted(kept.memory.values(), key=lambda row: row.key) if kept else []
        return [replace(row, value=_kept(row.value)) for row in rows if key is None or row.key == key]

    async def put_memory(self, run_id: str, team: str, row: MemoryRow) -> None:
        memory = self._team(run_id, team).memory
        previous = memory.get(row.key)
        memory[row.key] = replace(row, value=_kept(row.value))
        self.journal.append(lambda: memory.pop(row.key) if previous is None else memory.__setitem__(row.key, previous))

    async def writes(self, team: str, *, writer: str | None = None, key: str | None = None) -> list[WriteRow]:
        kept = self.teams.get(team)
        rows = sorted(kept.writes.values(), key=lambda row: (row.at, row.key)) if kept else []
        return [replace(row, value=_kept(row.value)) for row in rows
                if (writer is None or row.writer == writer) and (key is None or row.key == key)]

    async def insert_write(self, run_id: str, team: str, row: WriteRow) -> None:
        writes = self._team(run_id, team).writes
        writes[(row.writer, row.key)] = replace(row, value=_kept(row.value))
        self.journal.append(lambda: writes.pop((row.writer, row.key), None))

    def _of_run(self, run_id: str) -> list[tuple[str, TeamRowsKept]]:
        return sorted(((team, kept) for team, kept in self.teams.items() if kept.run_id == run_id), key=lambda pair: pair[0])

    async def run_messages(self, run_id: str) -> list[MessageRow]:
        found = [m for _, kept in self._of_run(run_id) for m in kept.messages]
        return [replace(m, content=_kept(m.content)) for m in sorted(found, key=lambda m: m.id)]

    async def run_memory(self, run_id: str) -> list[tuple[str, MemoryRow]]:
        return [(team, row) for team, _ in self._of_run(run_id) for row in await self.memory(team)]

    async def run_writes(self, run_id: str) -> list[tuple[str, WriteRow]]:
        return [(team, row) for team, _ in self._of_run(run_id) for row in await self.writes(team)]

    def delete_runs(self, run_ids: set[str]) -> None:
        for team in [team for team, kept in self.teams.items() if kept.run_id in run_ids]:
            kept = self.teams.pop(team)
            self.journal.append(lambda team=team, kept=kept: self.teams.__setitem__(team, kept))
