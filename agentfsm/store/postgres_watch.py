"""Which runs changed, told by PostgreSQL's LISTEN/NOTIFY to readers that show runs live (the web UI).

A commit that sends a NOTIFY holds a database-wide lock while it ends (PostgreSQL keeps
notifications in commit order), so writers send these only while somebody watches: a watcher's
connection carries the application name `watcher_name(schema)`, and a writer looks for one in
pg_stat_activity at most every `WATCH_REFRESH` seconds (one small query, not one per step).
A watcher's readers keep polling, less often, for the moments a writer has not noticed it yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg

from agentfsm.store.base import StoreError

if TYPE_CHECKING:
    from agentfsm.store.postgres import PostgresBackend

WATCH_REFRESH = 0.5
"""Seconds a writer trusts what it last read of whether a watcher listens."""
_NAME_BYTES = 63
"""PostgreSQL's longest identifier (a channel's name) and application name."""

logger = logging.getLogger("agentfsm")


def channel_name(prefix: str, schema: str) -> str:
    """A LISTEN/NOTIFY channel (or connection name) for a schema: `prefix` + the schema, hashed when too long."""
    name = prefix + schema
    return name if len(name) <= _NAME_BYTES else prefix + hashlib.sha256(schema.encode()).hexdigest()[:16]


class Watched:
    """What one backend's writers know of the watchers of its schema; `changed` is called in a write transaction."""

    __slots__ = ("channel", "name", "_until", "_watched")

    def __init__(self, schema: str) -> None:
        self.channel = channel_name("agentfsm_runs_", schema)
        self.name = channel_name("agentfsm-watch-", schema)
        self._until = 0.0
        self._watched = False

    async def watching(self, db: psycopg.AsyncConnection[Any]) -> bool:
        """Whether a watcher listens (as last looked up, at most `WATCH_REFRESH` seconds ago)."""
        now = time.monotonic()
        if now >= self._until:
            cursor = await db.execute("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = %s "
                                      "AND datname = current_database())", (self.name,))
            row = await cursor.fetchone()
            self._watched, self._until = bool(row and row[0]), now + WATCH_REFRESH
        return self._watched

    async def changed(self, db: psycopg.AsyncConnection[Any], run_id: str) -> None:
        """Tell the watchers, if any, that the run's row changed (delivered when the transaction commits)."""
        if await self.watching(db):
            await db.execute("SELECT pg_notify(%s, %s)", (self.channel, run_id))


class PostgresWatcher:
    """`agentfsm.store.base.Watcher`: LISTEN for changed runs on a connection of its own, named so writers see it."""

    def __init__(self, backend: PostgresBackend) -> None:
        self.backend = backend

    async def run(self, changed: Callable[[str | None], None], lost: Callable[[], None]) -> None:
        watched = self.backend.watched
        await listen(self.backend, watched.channel, lambda payload: changed(payload or None), lambda: changed(None),
                     lost, application_name=watched.name)


async def listen(backend: PostgresBackend, channel: str, notified: Callable[[str], None],
                 started: Callable[[], None], lost: Callable[[], None], *, application_name: str | None = None) -> None:
    """LISTEN on `channel` until cancelled, on a connection of its own made again when lost: `started()` once
    listening (notifications sent while nobody listened are lost), `notified(payload)` at each one, `lost()`."""
    pause = 0.1
    while True:
        try:
            db = await backend.connect(application_name=application_name)
        except StoreError as exc:
            logger.debug("listening on %s: %s", channel, exc)  # the store's other users say it is down
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)
            continue
        pause = 0.1
        try:
            await db.execute(f"LISTEN {channel}")
            started()
            async for notice in db.notifies():
                notified(notice.payload)
        except psycopg.Error as exc:
            logger.debug("listening on %s: connection lost (%s); listening again", channel, exc)
        finally:
            lost()
            with contextlib.suppress(psycopg.Error, asyncio.CancelledError):
                await asyncio.shield(db.close())
