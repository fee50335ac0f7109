"""The SQLite backend: one file in WAL mode, shared safely by the processes of one machine.

Every write is one `BEGIN IMMEDIATE` ... `COMMIT` transaction, so a writer takes the
write lock up front (waiting up to `busy_timeout`) instead of failing half-way when it
upgrades a read lock. Reads run in a deferred transaction, so they see one snapshot. Any
failing transaction rolls back: it changes nothing. SQLite answers in microseconds from
its page cache, so its calls run on the event loop itself (a thread hop would cost more
than most of them); many runs' steps still share one commit (see `agentfsm.store.batch`).
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from agentfsm.store.base import (
    BranchRow,
    CheckpointRow,
    Conflict,
    Damaged,
    DueCandidate,
    EventRow,
    RunFilter,
    RunRow,
    StepRow,
    StoreError,
    TraceRow,
    TraceWrite,
    WorkerRow,
)
from agentfsm.store import rules
from agentfsm.store.core import Store
from agentfsm.store.sqlite_rows import (
    INSERT_RUN,
    INSERT_STEP,
    SELECT_RUN,
    SELECT_STEP,
    DamagedValue,
    column_value,
    dump,
    load,
    prefix_end,
    run_from_row,
    run_params,
    step_from_row,
    step_params,
)
from agentfsm.store.team_rows import DELETE_BY_RUN, SQLTeamRows
from agentfsm.store.sqlite_schema import MIGRATIONS, OUR_TABLES, SCHEMA_VERSION

SYNCHRONOUS = ("NORMAL", "FULL")
PAGE = 500
"""Rows read at a time when a history is streamed."""

# primary result codes (sqlite3 exposes the extended code; the low byte is the primary one)
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


def SQLiteStore(path: str | Path, *, synchronous: str = "NORMAL", busy_timeout: float = 5.0,  # noqa: N802
                create: bool = True) -> Store:
    """A `Store` in one SQLite file (created unless `create` is false)."""
    return Store(SQLiteBackend(path, synchronous=synchronous, busy_timeout=busy_timeout, create=create))


class SQLiteBackend:
    """Rows in one SQLite file, used from one event loop at a time."""

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL", busy_timeout: float = 5.0,
                 create: bool = True) -> None:
        self.path = Path(path).expanduser().absolute()
        self.url = f"sqlite:///{self.path}"
        self.busy_timeout = busy_timeout
        mode = synchronous.upper()
        if mode not in SYNCHRONOUS:
            raise StoreError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}, not '{synchronous}'")
        if busy_timeout < 0:
            raise StoreError(f"busy_timeout must be zero or more seconds, not {busy_timeout}")
        self._check_place(create)
        try:
            self.db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            self._open(mode, create)
        except BaseException:
            self.db.close()
            raise

    def __repr__(self) -> str:
        return f"SQLiteBackend({self.url!r})"

    async def close(self) -> None:
        self.db.close()

    def heartbeat(self) -> SQLiteHeartbeat:
        """A connection of its own for the lease heartbeat thread (`Heartbeat`)."""
        return SQLiteHeartbeat(self.path, self.busy_timeout)

    # -- opening --------------------------------------------------------------------------------------

    def _check_place(self, create: bool) -> None:
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a folder, not a store file")
        if create:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create a store at {self.path}: {exc.strerror or exc}") from None
        elif not self.path.is_file():
            raise StoreError(f"no store at {self.path}")
        elif self.path.stat().st_size == 0:
            raise self._foreign("the file is empty")

    def _open(self, synchronous: str, create: bool) -> None:
        """Check the file is ours (before changing anything in it), then set it up and migrate it."""
        with self._sync_reading():
            version = self._schema_version()  # a garbage or truncated file fails here
        self._check_version(version)
        if version == 0 and not create:
            raise self._foreign("it has no tables")
        with self._guarded():
            self._use_wal()
            self.db.execute(f"PRAGMA synchronous={synchronous}")
            # a smaller WAL than SQLite's 4 MB default: what a store takes on disk stays close to what it holds
            self.db.execute("PRAGMA wal_autocheckpoint=256")
            self.db.execute("PRAGMA journal_size_limit=1048576")
        if version < SCHEMA_VERSION:
            with self._sync_writing():
                # another process may have created or migrated the store since we looked
                version = self._schema_version()
                self._check_version(version)
                for migration in MIGRATIONS[version:]:
                    for statement in migration:
                        self.db.execute(statement)
                self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                                (str(SCHEMA_VERSION),))

    def _use_wal(self) -> None:
        """Put the file in WAL mode (it stays so). Processes creating one store at once contend for this
        switch, and SQLite answers the loser "locked" at once rather than waiting (waiting could deadlock):
        so the switch is tried again, a few milliseconds apart, for up to `busy_timeout`."""
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.001
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if not self._busy(exc) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    @staticmethod
    def _busy(exc: sqlite3.Error) -> bool:
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        return code in (_SQLITE_BUSY, _SQLITE_LOCKED) or "database is locked" in str(exc)

    def _schema_version(self) -> int:
        """The store's schema version; 0 for an empty database. Raises StoreError for a foreign one."""
        tables = {name for (name,) in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        tables.discard("sqlite_sequence")
        if not tables:
            return 0
        others = tables - OUR_TABLES - {"sqlite_stat1"}
        if others:
            raise self._foreign(f"it has other tables: {', '.join(sorted(others))}")
        if "meta" not in tables:
            raise self._foreign("it has no meta table")
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            return int(row[0])
        except (sqlite3.OperationalError, TypeError, ValueError):
            raise self._foreign("its meta table has no schema version") from None

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer agentfsm (store schema {version}, "
                f"this version reads up to {SCHEMA_VERSION}); upgrade agentfsm"
            )

    def _foreign(self, why: str) -> StoreError:
        return StoreError(f"{self.path} is not an agentfsm store ({why})")

    # -- transactions and errors ------------------------------------------------------------------------

    def _error(self, exc: sqlite3.Error) -> StoreError:
        """One line naming the file: locked, damaged, or whatever else SQLite said."""
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        text = str(exc)
        if self._busy(exc):
            return StoreError(f"the store {self.path} is locked by another process (waited {self.busy_timeout:g}s)")
        if code == _SQLITE_NOTADB or "not a database" in text:
            return self._foreign(text)
        if code == _SQLITE_CORRUPT or "malformed" in text:
            return StoreError(f"{self.path} is damaged ({text})")
        if isinstance(exc, sqlite3.IntegrityError):
            return Conflict(f"{self.url}: {text}")
        return StoreError(f"{self.path}: {text}")

    def _rollback(self) -> None:
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite already rolled back (e.g. after SQLITE_FULL); nothing is left to undo

    @contextmanager
    def _guarded(self) -> Iterator[None]:
        """Any exception rolls back an open transaction; SQLite's own and damaged values become one-line StoreErrors."""
        try:
            yield
        except sqlite3.Error as exc:
            self._rollback()
            raise self._error(exc) from None
        except DamagedValue as exc:
            self._rollback()
            raise StoreError(f"{self.path} is damaged ({exc})") from None
        except BaseException:
            self._rollback()
            raise

    @contextmanager
    def _sync_writing(self) -> Iterator[sqlite3.Connection]:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        with self._guarded():
            yield self.db
            self.db.execute("COMMIT")

    @contextmanager
    def _sync_reading(self) -> Iterator[sqlite3.Connection]:
        nested = self.db.in_transaction  # a read inside a write transaction sees what it wrote
        with self._guarded():
            if not nested:
                self.db.execute("BEGIN")
            yield self.db
            if not nested:
                self.db.execute("COMMIT")

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[SQLiteTransaction]:
        with self._sync_reading() as db:
            yield SQLiteTransaction(db, self.url, self.path)

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[SQLiteTransaction]:
        with self._sync_writing() as db:
            yield SQLiteTransaction(db, self.url, self.path)

    def listener(self) -> None:
        """None: workers on this store poll."""
        return None

    async def stream_steps(self, run_id: str, branch: str, first: int, last: int | None) -> AsyncIterator[StepRow]:
        while last is None or first <= last:
            async with self.reading() as tx:
                page = await tx.steps(run_id, branch, first, last, PAGE)
            for row in page:
                yield row
            if len(page) < PAGE:
                return
            first = page[-1].step + 1


def _events_decide(run: RunRow, now: float) -> bool:
    """Whether a candidate's pending events decide if it is due (not for a dead owner's run, nor a due timer)."""
    return run.status == "waiting" and (run.wake_at is None or run.wake_at > now)


_UPDATES: dict[tuple[tuple[str, ...], bool], str] = {}

_P = ParamSpec("_P")
_T = TypeVar("_T")


def _loading(read: Callable[_P, Awaitable[_T]]) -> Callable[_P, Awaitable[_T]]:
    """A read that turns JSON text into values: a value that is not JSON is `Damaged`, naming the file.

    Raised inside a write transaction too, where the write fails alone (it reads before it writes)."""
    @functools.wraps(read)
    async def checked(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await read(*args, **kwargs)
        except DamagedValue as exc:
            tx = args[0]
            assert isinstance(tx, SQLiteTransaction)
            raise Damaged(f"{tx.path} is damaged ({exc})") from None

    return checked


class SQLiteTransaction:
    """The row operations of one SQLite transaction (see `agentfsm.store.base.Transaction`)."""

    __slots__ = ("db", "path", "url")

    def __init__(self, db: sqlite3.Connection, url: str, path: Path) -> None:
        self.db = db
        self.url = url
        self.path = path

    # -- reads ---------------------------------------------------------------------------------------

    @_loading
    async def run(self, run_id: str) -> RunRow | None:
        row = self.db.execute(f"{SELECT_RUN} WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else run_from_row(row)

    async def lease_owner(self, run_id: str) -> str | None:
        row = self.db.execute("SELECT lease_owner FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else row[0]

    @_loading
    async def runs_by_prefix(self, prefix: str, limit: int) -> list[RunRow]:
        end = prefix_end(prefix)
        query = f"{SELECT_RUN} WHERE id >= ?" + (" AND id < ?" if end else "") + " ORDER BY id LIMIT ?"
        params = (prefix, end, limit) if end else (prefix, limit)
        return [run_from_row(row) for row in self.db.execute(query, params)]

    @_loading
    async def runs_by_suffix(self, suffix: str, limit: int) -> list[RunRow]:
        query = f"{SELECT_RUN} WHERE substr(id, -?) = ? ORDER BY id LIMIT ?"
        return [run_from_row(row) for row in self.db.execute(query, (len(suffix), suffix, limit))]

    @_loading
    async def list_runs(self, where: RunFilter) -> list[RunRow]:
        clauses: list[str] = []
        params: list[Any] = []
        if where.statuses:
            clauses.append(f"status IN ({', '.join('?' * len(where.statuses))})")
            params.extend(where.statuses)
        for column, value in (("machine", where.machine), ("parent_run", where.parent_run)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if where.updated_before is not None:
            clauses.append("updated_at < ?")
            params.append(where.updated_before)
        if where.parents:
            clauses.append(f"parent_run IN ({', '.join('?' * len(where.parents))})")
            params.extend(where.parents)
        if where.top_level:
            clauses.append("parent_run IS NULL")
        if where.before is not None:
            # spelled out rather than a row value, which the runs_by_creation index serves on every SQLite
            clauses.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params.extend((where.before[0], where.before[0], where.before[1]))
        query = SELECT_RUN + (" WHERE " + " AND ".join(clauses) if clauses else "")
        query += " ORDER BY created_at DESC, id DESC"
        if where.limit is not None:
            query += " LIMIT ?"
            params.append(where.limit)
        return [run_from_row(row) for row in self.db.execute(query, params)]

    @_loading
    async def inputs(self, run_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT inputs FROM run_inputs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else load(row[0], {})

    async def source(self, digest: str) -> str | None:
        row = self.db.execute("SELECT text FROM sources WHERE digest = ?", (digest,)).fetchone()
        return None if row is None else row[0]

    async def branches(self, run_id: str) -> list[BranchRow]:
        query = "SELECT name, parent, fork, created_at FROM branches WHERE run_id = ? ORDER BY created_at, rowid"
        return [BranchRow(*row) for row in self.db.execute(query, (run_id,))]

    @_loading
    async def steps(self, run_id: str, branch: str, first: int, last: int | None, limit: int | None) -> list[StepRow]:
        query = f"{SELECT_STEP} WHERE run_id = ? AND branch = ? AND step >= ?"
        params: list[Any] = [run_id, branch, first]
        if last is not None:
            query += " AND step <= ?"
            params.append(last)
        query += " ORDER BY step"
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        return [step_from_row(row) for row in self.db.execute(query, params)]

    @_loading
    async def context_rows(self, run_id: str, branch: str, first: int, last: int) -> list[StepRow]:
        query = (f"{SELECT_STEP} WHERE run_id = ? AND branch = ? AND step >= ? AND step <= ? "
                 "AND context_kind IS NOT NULL ORDER BY step DESC")
        rows: list[StepRow] = []
        for row in self.db.execute(query, (run_id, branch, first, last)):  # older rows past the snapshot: unread
            rows.append(step_from_row(row))
            if row[12] == "snapshot":
                break
        return rows

    @_loading
    async def tally_row(self, run_id: str, branch: str, first: int, last: int) -> StepRow | None:
        query = (f"{SELECT_STEP} WHERE run_id = ? AND branch = ? AND step >= ? AND step <= ? "
                 "AND tally IS NOT NULL ORDER BY step DESC LIMIT 1")
        row = self.db.execute(query, (run_id, branch, first, last)).fetchone()
        return None if row is None else step_from_row(row)

    @_loading
    async def newest_step(self, run_id: str, branch: str, first: int, last: int | None) -> StepRow | None:
        bound = "" if last is None else f" AND step <= {int(last)}"
        query = f"{SELECT_STEP} WHERE run_id = ? AND branch = ? AND step >= ?{bound} ORDER BY step DESC LIMIT 1"
        row = self.db.execute(query, (run_id, branch, first)).fetchone()
        return None if row is None else step_from_row(row)

    async def checkpoints(self, run_id: str) -> list[CheckpointRow]:
        query = "SELECT name, branch, point, created_at FROM checkpoints WHERE run_id = ? ORDER BY created_at, rowid"
        return [CheckpointRow(*row) for row in self.db.execute(query, (run_id,))]

    async def checkpoint_names(self, run_id: str, prefix: str) -> set[str]:
        query = "SELECT name FROM checkpoints WHERE run_id = ? AND substr(name, 1, ?) = ?"
        return {name for (name,) in self.db.execute(query, (run_id, len(prefix), prefix))}

    @_loading
    async def pending_events(self, run_id: str) -> list[EventRow]:
        query = ("SELECT id, name, data, created_at, taken_branch, taken_step FROM events "
                 "WHERE run_id = ? AND taken_step IS NULL ORDER BY id")
        return [EventRow(row[0], row[1], load(row[2]), row[3], row[4], row[5])
                for row in self.db.execute(query, (run_id,))]

    @_loading
    async def events(self, run_id: str) -> list[EventRow]:
        query = "SELECT id, name, data, created_at, taken_branch, taken_step FROM events WHERE run_id = ? ORDER BY id"
        return [EventRow(row[0], row[1], load(row[2]), row[3], row[4], row[5])
                for row in self.db.execute(query, (run_id,))]

    async def pending_event_ids(self, run_id: str) -> set[int]:
        query = "SELECT id FROM events WHERE run_id = ? AND taken_step IS NULL"
        return {event_id for (event_id,) in self.db.execute(query, (run_id,))}

    async def trace_rows(self, run_id: str, after: int, limit: int | None) -> list[TraceRow]:
        query = (
            "SELECT trace_seq, trace_last, branch, step, trace FROM steps WHERE run_id = ? AND trace_last > ? "
            "UNION ALL SELECT seq, last, branch, step, entries FROM trace WHERE run_id = ? AND last > ? "
            "ORDER BY 1"
        )
        params: list[Any] = [run_id, after, run_id, after]
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        return [TraceRow(*row) for row in self.db.execute(query, params)]

    async def step_trace(self, run_id: str, branch: str, step: int) -> list[TraceRow]:
        query = (
            "SELECT trace_seq, trace_last, branch, step, trace FROM steps "
            "WHERE run_id = ? AND branch = ? AND step = ? AND trace IS NOT NULL "
            "UNION ALL SELECT seq, last, branch, step, entries FROM trace WHERE run_id = ? AND branch = ? AND step = ? "
            "ORDER BY 1"
        )
        return [TraceRow(*row) for row in self.db.execute(query, (run_id, branch, step, run_id, branch, step))]

    async def trace_end(self, run_id: str) -> int:
        in_steps = self.db.execute("SELECT MAX(trace_last) FROM steps WHERE run_id = ?", (run_id,)).fetchone()
        apart = self.db.execute("SELECT MAX(last) FROM trace WHERE run_id = ?", (run_id,)).fetchone()
        return max(int(in_steps[0] or 0), int(apart[0] or 0))

    async def payloads(self, run_id: str, digests: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(digests), 500):  # SQLite's bound on parameters
            chunk = digests[start:start + 500]
            query = f"SELECT digest, data FROM payloads WHERE run_id = ? AND digest IN ({', '.join('?' * len(chunk))})"
            found.update(self.db.execute(query, (run_id, *chunk)).fetchall())
        return found

    @_loading
    async def due_candidates(self, now: float, limit: int, *, machine: str | None = None) -> list[DueCandidate]:
        # a claim needs no row locks here: the write transaction holds the whole file's write lock
        query = (
            f"{SELECT_RUN} WHERE (status = 'waiting' AND (wake_at <= ? OR EXISTS "
            "(SELECT 1 FROM events WHERE events.run_id = runs.id AND events.taken_step IS NULL)) "
            "OR status IN ('running', 'queued')) AND (lease_owner IS NULL OR lease_expires < ?)"
            + (" AND machine = ?" if machine is not None else "") + " ORDER BY created_at, id LIMIT ?"
        )
        params = (now, now, machine, limit) if machine is not None else (now, now, limit)
        pending = "SELECT DISTINCT name FROM events WHERE run_id = ? AND taken_step IS NULL"
        found = [run_from_row(row) for row in self.db.execute(query, params).fetchall()]
        return [DueCandidate(run, tuple(name for (name,) in self.db.execute(pending, (run.id,))))
                if _events_decide(run, now) else DueCandidate(run) for run in found]

    async def workers(self) -> list[WorkerRow]:
        query = "SELECT id, host, pid, started_at, heartbeat_at, concurrency, machine FROM workers"
        return [WorkerRow(*row) for row in self.db.execute(query)]

    async def lease_counts(self, owners: list[str]) -> dict[str, int]:
        if not owners:
            return {}
        query = (f"SELECT lease_owner, count(*) FROM runs WHERE lease_owner IN ({', '.join('?' * len(owners))}) "
                 "GROUP BY lease_owner")
        return {owner: count for owner, count in self.db.execute(query, owners)}

    async def claimable(self, now: float, limit: int, *, machine: str | None, skip: Collection[str]) -> list[RunRow]:
        return await rules.due_in_windows(self, now, limit, machine=machine, skip=skip)

    # -- writes --------------------------------------------------------------------------------------

    async def put_worker(self, worker: WorkerRow) -> None:
        self.db.execute("INSERT OR REPLACE INTO workers (id, host, pid, started_at, heartbeat_at, concurrency, machine) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)", (worker.id, worker.host, worker.pid, worker.started_at,
                                                         worker.heartbeat_at, worker.concurrency, worker.machine))

    async def delete_workers(self, worker_ids: list[str]) -> None:
        self.db.executemany("DELETE FROM workers WHERE id = ?", [(worker_id,) for worker_id in worker_ids])

    async def insert_run(self, run: RunRow, inputs: Mapping[str, Any], source: str | None) -> None:
        if source is not None and run.digest is not None:
            self.db.execute("INSERT OR IGNORE INTO sources (digest, text) VALUES (?, ?)", (run.digest, source))
        self.db.execute(INSERT_RUN, run_params(run))
        self.db.execute("INSERT INTO run_inputs (run_id, inputs) VALUES (?, ?)", (run.id, dump(dict(inputs))))

    async def insert_branch(self, run_id: str, branch: BranchRow) -> None:
        self.db.execute("INSERT INTO branches (run_id, name, parent, fork, created_at) VALUES (?, ?, ?, ?, ?)",
                        (run_id, branch.name, branch.parent, branch.fork, branch.created_at))

    async def insert_step(self, run_id: str, step: StepRow, trace: TraceRow | None = None) -> None:
        self.db.execute(INSERT_STEP, step_params(run_id, step, trace))

    async def insert_checkpoint(self, run_id: str, checkpoint: CheckpointRow) -> bool:
        query = ("INSERT OR IGNORE INTO checkpoints (run_id, name, branch, point, created_at) "
                 "VALUES (?, ?, ?, ?, ?)")
        params = (run_id, checkpoint.name, checkpoint.branch, checkpoint.point, checkpoint.created_at)
        return self.db.execute(query, params).rowcount > 0

    async def update_run(self, run_id: str, values: Mapping[str, Any], *, owner: str | None = None) -> bool:
        columns = tuple(values)
        key = (columns, owner is not None)
        query = _UPDATES.get(key)
        if query is None:  # a few shapes, built once each
            query = f"UPDATE runs SET {', '.join(f'{column} = ?' for column in columns)} WHERE id = ?"
            query += " AND lease_owner = ?" if owner is not None else ""
            _UPDATES[key] = query
        params = [column_value(column, value) for column, value in values.items()]
        params.append(run_id)
        if owner is not None:
            params.append(owner)
        return self.db.execute(query, params).rowcount > 0

    async def add_source(self, digest: str, text: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO sources (digest, text) VALUES (?, ?)", (digest, text))

    async def take_event(self, run_id: str, event_id: int, branch: str, step: int) -> bool:
        query = "UPDATE events SET taken_branch = ?, taken_step = ? WHERE id = ? AND run_id = ? AND taken_step IS NULL"
        return self.db.execute(query, (branch, step, event_id, run_id)).rowcount > 0

    async def set_aside_events(self, run_id: str, branch: str) -> None:
        self.db.execute("UPDATE events SET taken_branch = ?, taken_step = -1 WHERE run_id = ? AND taken_step IS NULL",
                        (branch, run_id))

    async def insert_event(self, run_id: str, name: str, data: Any, now: float) -> int:
        cursor = self.db.execute("INSERT INTO events (run_id, name, data, created_at) VALUES (?, ?, ?, ?)",
                                 (run_id, name, dump(data), now))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    async def insert_trace(self, run_id: str, write: TraceWrite) -> None:
        if write.payloads:
            self.db.executemany("INSERT OR IGNORE INTO payloads (run_id, digest, data) VALUES (?, ?, ?)",
                                [(run_id, digest, data) for digest, data in write.payloads.items()])
        query = "INSERT INTO trace (run_id, seq, last, branch, step, entries) VALUES (?, ?, ?, ?, ?, ?)"
        self.db.executemany(query, [(run_id, row.seq, row.last, row.branch, row.step, row.entries)
                                    for row in write.rows])

    def teams(self) -> SQLTeamRows:
        db = self.db

        async def fetch(query: str, params: tuple[Any, ...]) -> list[Any]:
            return db.execute(query, params).fetchall()

        return SQLTeamRows(fetch)

    async def delete_runs(self, run_ids: list[str]) -> None:
        ids = [(run_id,) for run_id in run_ids]
        for statement in DELETE_BY_RUN:
            self.db.executemany(statement, ids)
        for table in ("steps", "branches", "checkpoints", "events", "run_inputs", "trace", "payloads"):
            self.db.executemany(f"DELETE FROM {table} WHERE run_id = ?", ids)
        self.db.executemany("DELETE FROM runs WHERE id = ?", ids)
        self.db.execute("DELETE FROM sources WHERE NOT EXISTS (SELECT 1 FROM runs WHERE runs.digest = sources.digest)")


class SQLiteHeartbeat:
    """Lease renewals on a connection of their own, used from the heartbeat thread only."""

    def __init__(self, path: Path, busy_timeout: float) -> None:
        self.db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)

    def renew(self, leases: list[tuple[str, str, float]]) -> list[bool]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            renewed = [self.db.execute("UPDATE runs SET lease_expires = ? WHERE id = ? AND lease_owner = ?",
                                       (expires, run_id, owner)).rowcount > 0 for run_id, owner, expires in leases]
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return renewed

    def close(self) -> None:
        self.db.close()
