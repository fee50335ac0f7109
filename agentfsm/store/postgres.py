"""The PostgreSQL backend (`postgresql://USER@HOST:PORT/DB?schema=NAME`): one store shared by many machines.

Each process holds one connection (its writes are grouped into few transactions by
`agentfsm.store.batch`, so one is enough) used by one transaction at a time. Writes run in
READ COMMITTED and lock the rows they decide on (`FOR UPDATE`); reads see one snapshot
(REPEATABLE READ, read only). A transaction PostgreSQL aborts to break a deadlock or a
serialization conflict, or one whose connection broke before it committed, changed nothing and
is `Transient`: the batch runs it again. A connection that broke is made again on next use;
a process that was connected before keeps trying for a while (a server restart), saying so once.

psycopg 3 is an optional dependency (`pip install 'agentfsm[postgres]'`), imported here only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from agentfsm.store.base import Conflict, NoStore, StepRow, StoreError, Transient
from agentfsm.store.postgres_rows import PostgresTransaction
from agentfsm.store.postgres_schema import MIGRATIONS, OUR_TABLES, SCHEMA_VERSION
from agentfsm.store.postgres_watch import PostgresWatcher, Watched, channel_name, listen
from agentfsm.store.urls import parse_postgres

try:
    import psycopg
    from psycopg import errors as pg_errors
except ImportError:  # pragma: no cover - exercised by a subprocess without the extra
    raise StoreError("a postgresql:// store needs psycopg: pip install 'agentfsm[postgres]'") from None

PAGE = 500
"""Rows read at a time when a history is streamed."""
OLDEST_SERVER = 130000
"""PostgreSQL 13: the oldest server this backend supports."""
RECONNECT_SECONDS = 60.0
"""How long a process that was connected keeps trying to connect again (a server restarting)."""
_MIGRATION_LOCK = 0x6167656E74  # pg_advisory_xact_lock key: one migrating process at a time

logger = logging.getLogger("agentfsm")


class PostgresBackend:
    """Rows in one schema of a PostgreSQL database."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        target = parse_postgres(url)
        self.conninfo, self.schema, self.url = target.conninfo, target.schema, target.shown
        self.create = create
        self.channel = channel_name("agentfsm_", self.schema)
        """The LISTEN/NOTIFY channel on which this store's workers are woken."""
        self.watched = Watched(self.schema)
        """What this process's writers know of the readers watching runs change (the web UI)."""
        self._db: psycopg.AsyncConnection[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._checked = False
        self._was_connected = False

    def __repr__(self) -> str:
        return f"PostgresBackend({self.url!r})"

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None and not db.closed and self._loop is asyncio.get_running_loop():
            await db.close()

    def heartbeat(self) -> PostgresHeartbeat:
        """A connection of its own for the lease heartbeat thread (`store.base.Heartbeat`)."""
        return PostgresHeartbeat(self.conninfo, self.schema, self.url)

    # -- connecting ---------------------------------------------------------------------------------------

    async def connect(self, *, autocommit: bool = True, application_name: str | None = None
                      ) -> psycopg.AsyncConnection[Any]:
        """A new connection with this store's schema as its search_path (its schema checked on first use)."""
        named = {"application_name": application_name} if application_name else {}
        try:
            db = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=autocommit, **named)
        except psycopg.Error as exc:
            raise StoreError(connect_error(self.url, exc)) from None
        try:
            if db.info.server_version < OLDEST_SERVER:
                version = (db.info.parameter_status("server_version") or str(db.info.server_version)).split()[0]
                raise StoreError(f"{self.url}: PostgreSQL {version} is too old; agentfsm needs PostgreSQL 13 or newer")
            await db.execute(f"SET search_path TO {self.schema}")
            if not self._checked:
                await self._check_schema(db)
                self._checked = True
        except BaseException:
            await db.close()
            raise
        return db

    async def _check_schema(self, db: psycopg.AsyncConnection[Any]) -> None:
        """Refuse a schema that is not ours or is newer; create or migrate ours (unless `create` is false)."""
        try:
            version = await self._version(db)
            if version == SCHEMA_VERSION:
                return
            if version == 0 and not self.create:
                raise NoStore(f"no store at {self.url} (schema '{self.schema}' has no agentfsm tables)")
            async with db.transaction():
                await db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                version = await self._version(db)  # another process may have migrated it since we looked
                await db.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                for migration in MIGRATIONS[version:]:
                    for statement in migration:
                        await db.execute(statement)  # type: ignore[arg-type]
                await db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', %s) ON CONFLICT (key) "
                                 "DO UPDATE SET value = EXCLUDED.value", (str(SCHEMA_VERSION),))
        except psycopg.Error as exc:
            raise StoreError(f"{self.url}: cannot set up the store ({first_line(exc)})") from None

    async def _version(self, db: psycopg.AsyncConnection[Any]) -> int:
        cursor = await db.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                                  (self.schema,))
        tables = {name for (name,) in await cursor.fetchall()}
        if not tables:
            return 0
        if "meta" not in tables:
            raise StoreError(f"{self.url}: schema '{self.schema}' is not an agentfsm store (it has other tables: "
                             f"{', '.join(sorted(tables - OUR_TABLES)[:5])})")
        row = await (await db.execute("SELECT value FROM meta WHERE key = 'schema_version'")).fetchone()
        version = int(row[0]) if row and str(row[0]).isdigit() else -1
        if version < 0:
            raise StoreError(f"{self.url}: schema '{self.schema}' is not an agentfsm store (no schema version)")
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.url} was written by a newer agentfsm (store schema {version}, this version "
                             f"reads up to {SCHEMA_VERSION}); upgrade agentfsm")
        return version

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        loop = asyncio.get_running_loop()
        db = self._db
        if db is not None and (self._loop is not loop or db.closed or db.broken):
            self._db = db = None  # made on another event loop, or broken: a new one
        if db is None:
            db = self._db = await self._reconnect() if self._was_connected else await self.connect()
            self._loop, self._was_connected = loop, True
        return db

    async def _reconnect(self) -> psycopg.AsyncConnection[Any]:
        """Connect again after the connection broke (a server restart): for up to RECONNECT_SECONDS, saying so."""
        logger.warning("lost the connection to %s; reconnecting", self.url)
        began = time.monotonic()
        pause = 0.1
        while True:
            try:
                db = await self.connect()
            except StoreError:
                if time.monotonic() + pause > began + RECONNECT_SECONDS:
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            logger.warning("reconnected to %s after %.1fs", self.url, time.monotonic() - began)
            return db

    def _gate(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._lock = asyncio.Lock()
        return self._lock

    # -- transactions ------------------------------------------------------------------------------------

    @asynccontextmanager
    async def _transaction(self, begin: str, *, locking: bool) -> AsyncIterator[PostgresTransaction]:
        async with self._gate():
            db = await self._connection()
            committing = False
            try:
                await db.execute(begin)
                yield PostgresTransaction(db, self.url, locking=locking, channel=self.channel, watched=self.watched)
                committing = True
                await db.execute("COMMIT")
            except BaseException as exc:
                await self._abandon(db)
                if isinstance(exc, psycopg.Error):
                    raise self._error(exc, committing) from None
                raise

    async def _abandon(self, db: psycopg.AsyncConnection[Any]) -> None:
        """Roll back; a connection that cannot (broken, or interrupted mid-statement) is dropped."""
        try:
            if not db.broken and not db.closed:
                await asyncio.shield(db.execute("ROLLBACK"))
                return
        except (psycopg.Error, asyncio.CancelledError):
            pass
        self._db = None
        try:
            await db.close()
        except (psycopg.Error, asyncio.CancelledError):
            pass

    def _error(self, exc: psycopg.Error, committing: bool) -> StoreError:
        if isinstance(exc, pg_errors.IntegrityError):
            return Conflict(f"{self.url}: {first_line(exc)}")
        if isinstance(exc, (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)):
            return Transient(f"{self.url}: {first_line(exc)}")
        if isinstance(exc, psycopg.OperationalError) and not committing:
            # the transaction never committed: it changed nothing and can run again on a new connection
            return Transient(f"{self.url}: connection lost ({first_line(exc)})")
        if isinstance(exc, psycopg.OperationalError):
            return StoreError(f"{self.url}: connection lost while committing ({first_line(exc)})")
        return StoreError(f"{self.url}: {first_line(exc)}")

    def listener(self) -> PostgresListener:
        return PostgresListener(self)

    def watcher(self) -> PostgresWatcher:
        """Which runs change, as they do (`store.base.Watcher`): what the web UI's live pages wait on."""
        return PostgresWatcher(self)

    def reading(self) -> Any:
        return self._transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", locking=False)

    def writing(self) -> Any:
        return self._transaction("BEGIN", locking=True)

    async def stream_steps(self, run_id: str, branch: str, first: int, last: int | None) -> AsyncIterator[StepRow]:
        while last is None or first <= last:
            async with self.reading() as tx:
                page = await tx.steps(run_id, branch, first, last, PAGE)
            for row in page:
                yield row
            if len(page) < PAGE:
                return
            first = page[-1].step + 1


class PostgresListener:
    """LISTEN on the store's channel on a connection of its own; a lost connection is made again."""

    def __init__(self, backend: PostgresBackend) -> None:
        self.backend = backend

    async def run(self, wake: Callable[[], None]) -> None:
        await listen(self.backend, self.backend.channel, lambda _payload: wake(), wake, lambda: None)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect_error(url: str, exc: psycopg.Error) -> str:
    """One line for a connection that could not be made: unreachable, refused login, no such database."""
    text = " ".join(str(exc).split())
    reason = text.rpartition("FATAL:")[2].strip() if "FATAL:" in text else text.rpartition("failed:")[2].strip()
    if "password authentication failed" in text or "no password supplied" in text:
        return f"cannot log in to {url}: {reason} (check the user and password)"
    if "does not exist" in text and "database" in text:
        return f"cannot open {url}: {reason}"
    if "Connection refused" in text or "timeout expired" in text or "could not translate host" in text:
        return f"cannot reach the PostgreSQL server of {url}: {reason or text}"
    return f"cannot connect to {url}: {reason or text}"


class PostgresHeartbeat:
    """Lease renewals on a synchronous connection of their own, used from the heartbeat thread only."""

    def __init__(self, conninfo: str, schema: str, shown: str) -> None:
        try:
            self.db = psycopg.connect(conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(connect_error(shown, exc)) from None
        self.db.execute(f"SET search_path TO {schema}")

    def renew(self, leases: list[tuple[str, str, float]]) -> list[bool]:
        with self.db.transaction():
            return [self.db.execute("UPDATE runs SET lease_expires = %s WHERE id = %s AND lease_owner = %s",
                                    (expires, run_id, owner)).rowcount > 0 for run_id, owner, expires in leases]

    def close(self) -> None:
        self.db.close()
