"""Team bus and shared-memory rows in SQL, for SQLite and PostgreSQL alike (`?` placeholders, adapted)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from agentfsm.store.base import MemoryRow, MessageRow, WriteRow
from agentfsm.store.sqlite_rows import dump, load

Fetch = Callable[[str, tuple[Any, ...]], Awaitable[list[Any]]]
"""Run one statement with `?` placeholders and return its rows (none for a write)."""

SQLITE_TABLES: tuple[str, ...] = (
    """CREATE TABLE team_messages(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        team TEXT NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        topic TEXT,
        content TEXT,
        writer TEXT NOT NULL,
        created_at REAL NOT NULL,
        taken_by TEXT
    )""",
    "CREATE INDEX team_messages_by_recipient ON team_messages(team, recipient, taken_by)",
    "CREATE INDEX team_messages_by_run ON team_messages(run_id)",
    """CREATE TABLE team_memory(
        run_id TEXT NOT NULL,
        team TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT,
        version INTEGER NOT NULL,
        lock_owner TEXT,
        lock_expires REAL,
        updated_at REAL NOT NULL,
        PRIMARY KEY(team, key)
    )""",
    "CREATE INDEX team_memory_by_run ON team_memory(run_id)",
    """CREATE TABLE team_writes(
        run_id TEXT NOT NULL,
        team TEXT NOT NULL,
        writer TEXT NOT NULL,
        key TEXT NOT NULL,
        op TEXT NOT NULL,
        value TEXT,
        version INTEGER NOT NULL,
        at REAL NOT NULL,
        agent TEXT NOT NULL,
        PRIMARY KEY(team, writer, key)
    )""",
    "CREATE INDEX team_writes_by_run ON team_writes(run_id)",
)
"""The tables (SQLite's spelling; `postgres_tables()` gives PostgreSQL's)."""

TABLE_NAMES: frozenset[str] = frozenset({"team_messages", "team_memory", "team_writes"})


def postgres_tables() -> tuple[str, ...]:
    return tuple(statement.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
                 .replace(" REAL", " DOUBLE PRECISION") for statement in SQLITE_TABLES)


_MESSAGE = "SELECT id, team, sender, recipient, topic, content, writer, created_at, taken_by FROM team_messages"
_MEMORY_COLUMNS = "key, value, version, lock_owner, lock_expires, updated_at"
_MEMORY = f"SELECT {_MEMORY_COLUMNS} FROM team_memory"
_WRITE_COLUMNS = "writer, key, op, value, version, at, agent"
_WRITE = f"SELECT {_WRITE_COLUMNS} FROM team_writes"


class SQLTeamRows:
    """`agentfsm.store.base.TeamRows` over SQL statements run by `fetch`."""

    __slots__ = ("fetch",)

    def __init__(self, fetch: Fetch) -> None:
        self.fetch = fetch

    async def messages(self, team: str, *, recipient: str | None = None, untaken: bool = False,
                       writer: str | None = None, taker: str | None = None) -> list[MessageRow]:
        where, params = ["team = ?"], [team]
        for column, value in (("recipient", recipient), ("writer", writer), ("taken_by", taker)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if untaken:
            where.append("taken_by IS NULL")
        rows = await self.fetch(f"{_MESSAGE} WHERE {' AND '.join(where)} ORDER BY id", tuple(params))
        return [MessageRow(int(r[0]), r[1], r[2], r[3], r[4], load(r[5]), r[6], r[7], r[8]) for r in rows]

    async def insert_message(self, run_id: str, message: MessageRow) -> int:
        rows = await self.fetch(
            "INSERT INTO team_messages (run_id, team, sender, recipient, topic, content, writer, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (run_id, message.team, message.sender, message.recipient, message.topic, dump(message.content),
             message.writer, message.created_at))
        return int(rows[0][0])

    async def take_message(self, team: str, message_id: int, taker: str) -> bool:
        rows = await self.fetch("UPDATE team_messages SET taken_by = ? WHERE team = ? AND id = ? AND taken_by IS NULL "
                                "RETURNING id", (taker, team, message_id))
        return bool(rows)

    async def memory(self, team: str, key: str | None = None) -> list[MemoryRow]:
        if key is None:
            rows = await self.fetch(f"{_MEMORY} WHERE team = ? ORDER BY key", (team,))
        else:
            rows = await self.fetch(f"{_MEMORY} WHERE team = ? AND key = ?", (team, key))
        return [MemoryRow(r[0], load(r[1]), int(r[2]), r[3], r[4], r[5]) for r in rows]

    async def put_memory(self, run_id: str, team: str, row: MemoryRow) -> None:
        await self.fetch(
            "INSERT INTO team_memory (run_id, team, key, value, version, lock_owner, lock_expires, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (team, key) DO UPDATE SET value = excluded.value, "
            "version = excluded.version, lock_owner = excluded.lock_owner, lock_expires = excluded.lock_expires, "
            "updated_at = excluded.updated_at",
            (run_id, team, row.key, dump(row.value), row.version, row.lock_owner, row.lock_expires, row.updated_at))

    async def writes(self, team: str, *, writer: str | None = None, key: str | None = None) -> list[WriteRow]:
        where, params = ["team = ?"], [team]
        for column, value in (("writer", writer), ("key", key)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        rows = await self.fetch(f"{_WRITE} WHERE {' AND '.join(where)} ORDER BY at, key", tuple(params))
        return [WriteRow(r[0], r[1], r[2], load(r[3]), int(r[4]), r[5], r[6]) for r in rows]

    async def insert_write(self, run_id: str, team: str, row: WriteRow) -> None:
        await self.fetch("INSERT INTO team_writes (run_id, team, writer, key, op, value, version, at, agent) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (run_id, team, row.writer, row.key, row.op, dump(row.value), row.version, row.at, row.agent))

    async def run_messages(self, run_id: str) -> list[MessageRow]:
        rows = await self.fetch(f"{_MESSAGE} WHERE run_id = ? ORDER BY id", (run_id,))
        return [MessageRow(int(r[0]), r[1], r[2], r[3], r[4], load(r[5]), r[6], r[7], r[8]) for r in rows]

    async def run_memory(self, run_id: str) -> list[tuple[str, MemoryRow]]:
        query = f"SELECT team, {_MEMORY_COLUMNS} FROM team_memory WHERE run_id = ? ORDER BY team, key"
        rows = await self.fetch(query, (run_id,))
        return [(r[0], MemoryRow(r[1], load(r[2]), int(r[3]), r[4], r[5], r[6])) for r in rows]

    async def run_writes(self, run_id: str) -> list[tuple[str, WriteRow]]:
        query = f"SELECT team, {_WRITE_COLUMNS} FROM team_writes WHERE run_id = ? ORDER BY team, at, key"
        rows = await self.fetch(query, (run_id,))
        return [(r[0], WriteRow(r[1], r[2], r[3], load(r[4]), int(r[5]), r[6], r[7])) for r in rows]


DELETE_BY_RUN: tuple[str, ...] = tuple(f"DELETE FROM {table} WHERE run_id = ?" for table in sorted(TABLE_NAMES))
