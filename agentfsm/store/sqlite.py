"""The SQLite store: one file in WAL mode, shared safely by the processes of one machine.

Every write is one `BEGIN IMMEDIATE` ... `COMMIT` transaction, so a writer takes the
write lock up front (waiting up to `busy_timeout`) instead of failing half-way when
it upgrades a read lock. Reads run without a transaction, or in a deferred one when
they need several statements to agree. Any failing call rolls back: it changes nothing.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agentfsm.store.base import (
    FINISHED,
    STATUSES,
    BranchRow,
    CheckpointRow,
    Conflict,
    EventRow,
    LeaseHeld,
    LeaseLost,
    RunFilter,
    RunMoved,
    RunNotFound,
    RunRow,
    StepRow,
    StoreError,
    lease_live,
)
from agentfsm.store.sqlite_schema import MIGRATIONS, OUR_TABLES, SCHEMA_VERSION

SYNCHRONOUS = ("NORMAL", "FULL")
MIN_PREFIX = 4
"""The shortest run id prefix `get_run` resolves."""

# primary result codes (sqlite3 exposes the extended code; the low byte is the primary one)
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26

_RUN_COLUMNS = (
    "id, machine, digest, path, status, head, created_at, updated_at, inputs, llms, output, error, usage, "
    "steps, waiting, wake_at, lease_owner, lease_expires"
)
_STEP_COLUMNS = (
    "branch, step, state, event, event_data, next_state, started_at, duration, retries, error, result, calls, "
    "context_kind, context"
)
_SELECT_RUN = f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?"
_INSERT_RUN = f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES ({', '.join('?' * 18)})"
_INSERT_STEP = f"INSERT INTO steps (run_id, {_STEP_COLUMNS}) VALUES ({', '.join('?' * 15)})"
_INSERT_CHECKPOINT = "INSERT INTO checkpoints (run_id, name, branch, point, created_at) VALUES (?, ?, ?, ?, ?)"
_INSERT_BRANCH = "INSERT INTO branches (run_id, name, parent, fork, created_at) VALUES (?, ?, ?, ?, ?)"
# status is set by a second statement that only writes when it differs: assigning the column, even to the
# value it has, rewrites both status indexes and costs a third of a step's commit
_ADVANCE_RUN = "UPDATE runs SET steps = ?, updated_at = ?, lease_expires = ? WHERE id = ? AND lease_owner = ?"
# a step ends the wait the run was in (if any): a later visit of that wait starts a timer of its own
_MARK_RUNNING = (
    "UPDATE runs SET status = 'running', waiting = NULL, wake_at = NULL "
    "WHERE id = ? AND (status <> 'running' OR waiting IS NOT NULL)"
)
_INSERT_REACHED_CHECKPOINT = "INSERT OR IGNORE" + _INSERT_CHECKPOINT.removeprefix("INSERT")
_TAKE_EVENT = (
    "UPDATE events SET taken_branch = ?, taken_step = ? WHERE id = ? AND run_id = ? AND taken_step IS NULL"
)


class _DamagedValue(ValueError):
    """A column that should hold JSON does not (the store file was edited or damaged)."""


def _dump(value: Any) -> str | None:
    """JSON text for a column; None stays SQL NULL."""
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _load(text: str | None, default: Any = None) -> Any:
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _DamagedValue(f"a stored value is not JSON: {exc}") from None


def _run_from_row(row: Sequence[Any]) -> RunRow:
    return RunRow(
        id=row[0], machine=row[1], digest=row[2], path=row[3], status=row[4], head=row[5],
        created_at=row[6], updated_at=row[7], inputs=_load(row[8], {}), llms=_load(row[9], {}),
        output=_load(row[10]), error=_load(row[11]), usage=_load(row[12], {}), steps=row[13],
        waiting=_load(row[14]), wake_at=row[15], lease_owner=row[16], lease_expires=row[17],
    )


def _run_params(run: RunRow) -> tuple[Any, ...]:
    return (
        run.id, run.machine, run.digest, run.path, run.status, run.head, run.created_at, run.updated_at,
        _dump(run.inputs), _dump(run.llms), _dump(run.output), _dump(run.error), _dump(run.usage),
        run.steps, _dump(run.waiting), run.wake_at, run.lease_owner, run.lease_expires,
    )


def _step_from_row(row: Sequence[Any]) -> StepRow:
    return StepRow(
        branch=row[0], step=row[1], state=row[2], event=row[3], event_data=_load(row[4]), next_state=row[5],
        started_at=row[6], duration=row[7], retries=row[8], error=_load(row[9]), result=_load(row[10]),
        calls=_load(row[11], []), context_kind=row[12], context=row[13],
    )


def _step_params(run_id: str, step: StepRow) -> tuple[Any, ...]:
    # an empty calls list is the common case: NULL keeps the row small
    return (
        run_id, step.branch, step.step, step.state, step.event, _dump(step.event_data), step.next_state,
        step.started_at, step.duration, step.retries, _dump(step.error), _dump(step.result),
        _dump(step.calls) if step.calls else None, step.context_kind, step.context,
    )


def _checkpoint_params(run_id: str, checkpoints: list[CheckpointRow]) -> list[tuple[Any, ...]]:
    return [(run_id, c.name, c.branch, c.point, c.created_at) for c in checkpoints]


def _prefix_end(prefix: str) -> str | None:
    """The smallest string above every string starting with `prefix` (None: no bound).

    SQLite compares TEXT bytewise in UTF-8, which orders like code points, so bumping the
    last character works; surrogates cannot be encoded and are skipped.
    """
    last = ord(prefix[-1])
    if last == 0x10FFFF:
        return None
    bumped = 0xE000 if last == 0xD7FF else last + 1
    return prefix[:-1] + chr(bumped)


def _set_aside_pending_events(db: sqlite3.Connection, run_id: str, branch: str) -> None:
    """Events sent to the wait a run is leaving stay recorded, but no branch will take them (taken_step -1)."""
    db.execute("UPDATE events SET taken_branch = ?, taken_step = -1 WHERE run_id = ? AND taken_step IS NULL",
               (branch, run_id))


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _finished(status: str) -> str:
    """`succeeded`, `failed`, `been cancelled`: reads after "has"."""
    return "been cancelled" if status == "cancelled" else status


class SQLiteStore:
    """A `Store` in one SQLite file (WAL mode). Used from one thread at a time."""

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
        try:
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                       check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            self._open(mode, create)
        except BaseException:
            self._db.close()
            raise

    def __repr__(self) -> str:
        return f"SQLiteStore({self.url!r})"

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- opening ----------------------------------------------------------------------------------

    def _open(self, synchronous: str, create: bool) -> None:
        """Check the file is ours (before changing anything in it), then set it up and migrate it."""
        with self._reading():
            version = self._schema_version()  # a garbage or truncated file fails here
        self._check_version(version)
        if version == 0 and not create:
            raise self._foreign("it has no tables")
        with self._reading():
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            # a smaller WAL than SQLite's 4 MB default: what a store takes on disk stays close to what it holds
            self._db.execute("PRAGMA wal_autocheckpoint=256")
            self._db.execute("PRAGMA journal_size_limit=1048576")
        if version < SCHEMA_VERSION:
            with self._writing():
                # another process may have created or migrated the store since we looked
                version = self._schema_version()
                self._check_version(version)
                for migration in MIGRATIONS[version:]:
                    for statement in migration:
                        self._db.execute(statement)
                self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                                 (str(SCHEMA_VERSION),))

    def _schema_version(self) -> int:
        """The store's schema version; 0 for an empty database. Raises StoreError for a foreign one."""
        tables = {name for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        tables.discard("sqlite_sequence")
        if not tables:
            return 0
        others = tables - OUR_TABLES - {"sqlite_stat1"}
        if others:
            raise self._foreign(f"it has other tables: {', '.join(sorted(others))}")
        if "meta" not in tables:
            raise self._foreign("it has no meta table")
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
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

    # -- transactions and errors ------------------------------------------------------------------

    def _error(self, exc: sqlite3.Error) -> StoreError:
        """One line naming the file: locked, damaged, or whatever else SQLite said."""
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        text = str(exc)
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED) or "database is locked" in text:
            return StoreError(
                f"the store {self.path} is locked by another process (waited {self.busy_timeout:g}s)"
            )
        if code == _SQLITE_NOTADB or "not a database" in text:
            return self._foreign(text)
        if code == _SQLITE_CORRUPT or "malformed" in text:
            return StoreError(f"{self.path} is damaged ({text})")
        if isinstance(exc, sqlite3.IntegrityError):
            return Conflict(f"{self.url}: {text}")
        return StoreError(f"{self.path}: {text}")

    def _damaged(self, exc: Exception) -> StoreError:
        return StoreError(f"{self.path} is damaged ({exc})")

    def _rollback(self) -> None:
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite already rolled back (e.g. after SQLITE_FULL); nothing is left to undo

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the write lock up front; any exception rolls it back."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        with self._rolled_back_on_failure():
            yield db
            db.execute("COMMIT")

    @contextmanager
    def _reading(self, consistent: bool = False) -> Iterator[sqlite3.Connection]:
        """Reads; `consistent` runs them in one (deferred) transaction so they see one snapshot."""
        db = self._db
        with self._rolled_back_on_failure():
            if consistent:
                db.execute("BEGIN")
            yield db
            if consistent:
                db.execute("COMMIT")

    @contextmanager
    def _rolled_back_on_failure(self) -> Iterator[None]:
        """Any exception rolls back an open transaction; SQLite's own and damaged values become one-line StoreErrors."""
        try:
            yield
        except sqlite3.Error as exc:
            self._rollback()
            raise self._error(exc) from None
        except _DamagedValue as exc:
            self._rollback()
            raise self._damaged(exc) from None
        except BaseException:
            self._rollback()
            raise

    def _run(self, db: sqlite3.Connection, run_id: str) -> RunRow:
        """The run with exactly this id, or RunNotFound."""
        row = db.execute(_SELECT_RUN, (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(f"no run '{run_id}' in {self.url}")
        return _run_from_row(row)

    def _has_branch(self, db: sqlite3.Connection, run_id: str, name: str) -> bool:
        query = "SELECT 1 FROM branches WHERE run_id = ? AND name = ?"
        return db.execute(query, (run_id, name)).fetchone() is not None

    def _lease_lost(self, run_id: str) -> LeaseLost:
        return LeaseLost(f"run {run_id}: this process no longer holds its lease (the run was cancelled or taken over)")

    def _refuse_if_leased(self, run: RunRow, now: float) -> None:
        if lease_live(run.lease_owner, run.lease_expires, now):
            raise self._lease_held(run, now)

    def _lease_held(self, run: RunRow, now: float) -> LeaseHeld:
        if run.lease_expires is None:
            return LeaseHeld(f"run {run.id} is being advanced by {run.lease_owner} (its lease does not expire)")
        seconds = max(0.0, run.lease_expires - now)
        return LeaseHeld(f"run {run.id} is being advanced by {run.lease_owner} (lease expires in {seconds:.0f}s)")

    # -- runs -------------------------------------------------------------------------------------

    def create_run(self, run: RunRow, source: str | None, first: StepRow, checkpoints: list[CheckpointRow]) -> None:
        run_params = _run_params(run)
        step_params = _step_params(run.id, first)
        checkpoint_params = _checkpoint_params(run.id, checkpoints)
        with self._writing() as db:
            if db.execute("SELECT 1 FROM runs WHERE id = ?", (run.id,)).fetchone() is not None:
                raise Conflict(f"run {run.id} already exists in {self.url}")
            if source is not None and run.digest is not None:
                db.execute("INSERT OR IGNORE INTO sources (digest, text) VALUES (?, ?)", (run.digest, source))
            db.execute(_INSERT_RUN, run_params)
            db.execute(_INSERT_BRANCH, (run.id, "main", None, 0, run.created_at))
            db.execute(_INSERT_STEP, step_params)
            if checkpoint_params:
                db.executemany(_INSERT_CHECKPOINT, checkpoint_params)

    def get_run(self, run_id: str) -> RunRow:
        if not _encodable(run_id):  # a command-line argument that was not UTF-8: no run has such an id
            raise RunNotFound(f"no run {run_id.encode('utf-8', 'backslashreplace').decode()!r} in {self.url}")
        with self._reading() as db:
            row = db.execute(_SELECT_RUN, (run_id,)).fetchone()
            if row is not None:
                return _run_from_row(row)
            if len(run_id) < MIN_PREFIX:
                raise RunNotFound(f"no run '{run_id}' in {self.url} (a prefix of a run id needs at least "
                                  f"{MIN_PREFIX} characters)")
            end = _prefix_end(run_id)
            query = f"SELECT {_RUN_COLUMNS} FROM runs WHERE id >= ?" + (" AND id < ?" if end else "")
            query += " ORDER BY id LIMIT 6"
            rows = db.execute(query, (run_id, end) if end else (run_id,)).fetchall()
            rows = [row for row in rows if row[0].startswith(run_id)]  # guards the bound's edge cases
            if not rows:
                raise RunNotFound(f"no run '{run_id}' in {self.url}")
            if len(rows) > 1:
                shown = ", ".join(row[0] for row in rows[:5])
                raise RunNotFound(f"'{run_id}' matches several runs: {shown}{'...' if len(rows) > 5 else ''}")
            return _run_from_row(rows[0])

    def source(self, digest: str) -> str | None:
        with self._reading() as db:
            row = db.execute("SELECT text FROM sources WHERE digest = ?", (digest,)).fetchone()
        return None if row is None else row[0]

    def list_runs(self, where: RunFilter) -> list[RunRow]:
        clauses: list[str] = []
        params: list[Any] = []
        if where.statuses:
            clauses.append(f"status IN ({', '.join('?' * len(where.statuses))})")
            params.extend(where.statuses)
        if where.machine is not None:
            clauses.append("machine = ?")
            params.append(where.machine)
        if where.updated_before is not None:
            clauses.append("updated_at < ?")
            params.append(where.updated_before)
        query = f"SELECT {_RUN_COLUMNS} FROM runs"
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY created_at DESC, id DESC"
        if where.limit is not None:
            query += " LIMIT ?"
            params.append(where.limit)
        with self._reading() as db:
            return [_run_from_row(row) for row in db.execute(query, params)]

    def delete_runs(self, run_ids: list[str], where: RunFilter | None = None, *, now: float,
                    takeover: set[str] | None = None) -> list[str]:
        query = "SELECT status, updated_at, lease_owner, lease_expires FROM runs WHERE id = ?"
        deleted: list[str] = []
        with self._writing() as db:
            # chosen from an earlier read: a run revived, advanced or leased since then is left alone
            for run_id in dict.fromkeys(run_ids):
                row = db.execute(query, (run_id,)).fetchone()
                if row is None:
                    continue
                status, updated_at, owner, expires = row
                if where is not None and where.statuses and status not in where.statuses:
                    continue
                if where is not None and where.updated_before is not None and updated_at >= where.updated_before:
                    continue
                if lease_live(owner, expires, now) and owner not in (takeover or ()):
                    continue
                deleted.append(run_id)
            if not deleted:
                return []
            ids = [(run_id,) for run_id in deleted]
            for table in ("steps", "branches", "checkpoints", "events"):
                db.executemany(f"DELETE FROM {table} WHERE run_id = ?", ids)
            db.executemany("DELETE FROM runs WHERE id = ?", ids)
            db.execute(
                "DELETE FROM sources WHERE NOT EXISTS (SELECT 1 FROM runs WHERE runs.digest = sources.digest)"
            )
        return deleted

    # -- leases -----------------------------------------------------------------------------------

    def acquire(self, run_id: str, owner: str, expires: float, *, now: float,
                takeover: set[str] | None = None, status: str | None = None,
                expect: RunRow | None = None) -> RunRow:
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown run status '{status}'")
        with self._writing() as db:
            run = self._run(db, run_id)
            if run.status in FINISHED:
                raise RunMoved(f"run {run_id} has {_finished(run.status)}; nothing to resume")
            if expect is not None and (run.status, run.head, run.steps) != (expect.status, expect.head, expect.steps):
                raise RunMoved(f"run {run_id} changed while it was being resumed (it is now {run.status} at step "
                               f"{run.steps} of branch '{run.head}'); try again")
            mine = run.lease_owner == owner or (takeover is not None and run.lease_owner in takeover)
            if not mine:
                self._refuse_if_leased(run, now)
            run.lease_owner, run.lease_expires = owner, expires
            if status is not None:
                run.status, run.updated_at = status, now
            db.execute(
                "UPDATE runs SET lease_owner = ?, lease_expires = ?, status = ?, updated_at = ? WHERE id = ?",
                (owner, expires, run.status, run.updated_at, run_id),
            )
        return run

    def renew(self, run_id: str, owner: str, expires: float) -> None:
        with self._writing() as db:
            query = "UPDATE runs SET lease_expires = ? WHERE id = ? AND lease_owner = ?"
            if db.execute(query, (expires, run_id, owner)).rowcount == 0:
                raise self._lease_lost(run_id)

    def release(self, run_id: str, owner: str, *, status: str | None = None) -> None:
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown run status '{status}'")
        with self._writing() as db:
            if status is None:
                query = "UPDATE runs SET lease_owner = NULL, lease_expires = NULL WHERE id = ? AND lease_owner = ?"
                cursor = db.execute(query, (run_id, owner))
            else:
                # back to `waiting` only while the row still says what for: a step committed meanwhile ended it
                query = (
                    "UPDATE runs SET lease_owner = NULL, lease_expires = NULL, updated_at = ?, status = CASE "
                    "WHEN ? = 'waiting' AND waiting IS NULL THEN 'paused' ELSE ? END WHERE id = ? AND lease_owner = ?"
                )
                cursor = db.execute(query, (time.time(), status, status, run_id, owner))
            if cursor.rowcount == 0:
                raise self._lease_lost(run_id)

    # -- advancing a run --------------------------------------------------------------------------

    def commit_step(self, run_id: str, owner: str, expires: float, step: StepRow,
                    checkpoints: list[CheckpointRow], taken_event: int | None) -> list[str]:
        # the hot path: everything is prepared before the lock is taken, and only rows that exist are written
        step_params = _step_params(run_id, step)
        advance = (step.step, time.time(), expires, run_id, owner)
        with self._writing() as db:
            if db.execute(_ADVANCE_RUN, advance).rowcount == 0:
                raise self._lease_lost(run_id)
            db.execute(_MARK_RUNNING, (run_id,))
            db.execute(_INSERT_STEP, step_params)
            names = [self._insert_reached(db, run_id, checkpoint) for checkpoint in checkpoints]
            if taken_event is not None:
                taken = (step.branch, step.step, taken_event, run_id)
                if db.execute(_TAKE_EVENT, taken).rowcount == 0:
                    raise Conflict(f"run {run_id}: event {taken_event} is not pending (taken already, or not its)")
                # the others were sent to the same visit of the wait, which is over: no later visit takes them
                _set_aside_pending_events(db, run_id, step.branch)
        return names

    def _insert_reached(self, db: sqlite3.Connection, run_id: str, checkpoint: CheckpointRow) -> str:
        """Name a checkpoint the run reached; if a person took the name meanwhile, the first free `STATE#k`."""
        params = _checkpoint_params(run_id, [checkpoint])[0]
        if db.execute(_INSERT_REACHED_CHECKPOINT, params).rowcount:
            return checkpoint.name
        prefix = f"{checkpoint.state or checkpoint.name}#"
        query = "SELECT name FROM checkpoints WHERE run_id = ? AND substr(name, 1, ?) = ?"
        taken = {name for (name,) in db.execute(query, (run_id, len(prefix), prefix))}
        number = 2
        while f"{prefix}{number}" in taken:
            number += 1
        name = f"{prefix}{number}"
        db.execute(_INSERT_CHECKPOINT, (run_id, name, *params[2:]))
        return name

    def set_machine(self, run_id: str, owner: str, digest: str | None, source: str | None, path: str | None) -> None:
        """Point the run at another machine text (a resume with an edited file). Fenced by the lease.

        The old text stays until no run uses it and runs are pruned.
        """
        with self._writing() as db:
            query = "UPDATE runs SET digest = ?, path = ? WHERE id = ? AND lease_owner = ?"
            if db.execute(query, (digest, path, run_id, owner)).rowcount == 0:
                raise self._lease_lost(run_id)
            if source is not None and digest is not None:
                db.execute("INSERT OR IGNORE INTO sources (digest, text) VALUES (?, ?)", (digest, source))

    def end_run(self, run_id: str, owner: str, status: str, *, output: Any = None,
                error: dict[str, Any] | None = None, usage: dict[str, Any] | None = None,
                waiting: dict[str, Any] | None = None) -> None:
        if status not in STATUSES or status == "running":
            raise ValueError(f"a run cannot end as '{status}'")
        wake_at = waiting.get("deadline") if waiting else None
        params = (status, _dump(output), _dump(error), _dump(usage), _dump(waiting), wake_at, time.time(),
                  run_id, owner)
        with self._writing() as db:
            query = (
                "UPDATE runs SET status = ?, output = ?, error = ?, usage = COALESCE(?, usage), waiting = ?, "
                "wake_at = ?, updated_at = ?, lease_owner = NULL, lease_expires = NULL "
                "WHERE id = ? AND lease_owner = ?"
            )
            if db.execute(query, params).rowcount == 0:
                raise self._lease_lost(run_id)

    def cancel(self, run_id: str, *, now: float) -> RunRow:
        with self._writing() as db:
            run = self._run(db, run_id)
            if run.status in FINISHED:
                raise Conflict(f"run {run_id} has already {_finished(run.status)}")
            db.execute(
                "UPDATE runs SET status = 'cancelled', lease_owner = NULL, lease_expires = NULL, waiting = NULL, "
                "wake_at = NULL, updated_at = ? WHERE id = ?",
                (now, run_id),
            )
        run.status, run.updated_at = "cancelled", now
        run.lease_owner = run.lease_expires = run.waiting = run.wake_at = None
        return run

    # -- reading a run's history ------------------------------------------------------------------

    def branches(self, run_id: str) -> list[BranchRow]:
        query = "SELECT name, parent, fork, created_at FROM branches WHERE run_id = ? ORDER BY created_at, rowid"
        with self._reading() as db:
            return [BranchRow(*row) for row in db.execute(query, (run_id,))]

    def steps(self, run_id: str, branch: str, first: int = 0, last: int | None = None) -> list[StepRow]:
        query = f"SELECT {_STEP_COLUMNS} FROM steps WHERE run_id = ? AND branch = ? AND step >= ?"
        params: list[Any] = [run_id, branch, first]
        if last is not None:
            query += " AND step <= ?"
            params.append(last)
        with self._reading() as db:
            return [_step_from_row(row) for row in db.execute(query + " ORDER BY step", params)]

    def context_rows(self, run_id: str, branch: str, first: int, last: int) -> list[StepRow]:
        query = (
            f"SELECT {_STEP_COLUMNS} FROM steps WHERE run_id = ? AND branch = ? AND step >= ? AND step <= ? "
            "AND context_kind IS NOT NULL ORDER BY step DESC"
        )
        rows: list[StepRow] = []
        with self._reading() as db:
            # iterate the cursor: older rows past the snapshot are never read
            for row in db.execute(query, (run_id, branch, first, last)):
                rows.append(_step_from_row(row))
                if row[12] == "snapshot":
                    break
        return rows

    def checkpoints(self, run_id: str) -> list[CheckpointRow]:
        query = "SELECT name, branch, point, created_at FROM checkpoints WHERE run_id = ? ORDER BY created_at, rowid"
        with self._reading() as db:
            return [CheckpointRow(*row) for row in db.execute(query, (run_id,))]

    def add_checkpoint(self, run_id: str, checkpoint: CheckpointRow) -> None:
        with self._writing() as db:
            self._run(db, run_id)
            if not self._has_branch(db, run_id, checkpoint.branch):
                raise RunNotFound(f"run {run_id} has no branch '{checkpoint.branch}'")
            exists = db.execute("SELECT 1 FROM checkpoints WHERE run_id = ? AND name = ?", (run_id, checkpoint.name))
            if exists.fetchone() is not None:
                raise Conflict(f"run {run_id} already has a checkpoint '{checkpoint.name}'")
            db.execute(_INSERT_CHECKPOINT, _checkpoint_params(run_id, [checkpoint])[0])

    # -- branches ---------------------------------------------------------------------------------

    def create_branch(self, run_id: str, branch: BranchRow, *, now: float) -> RunRow:
        with self._writing() as db:
            run = self._run(db, run_id)
            self._refuse_if_leased(run, now)
            if self._has_branch(db, run_id, branch.name):
                raise Conflict(f"run {run_id} already has a branch '{branch.name}'")
            if branch.parent is None or not self._has_branch(db, run_id, branch.parent):
                raise RunNotFound(f"run {run_id} has no branch '{branch.parent}' to start '{branch.name}' from")
            db.execute(_INSERT_BRANCH, (run_id, branch.name, branch.parent, branch.fork, branch.created_at or now))
            _set_aside_pending_events(db, run_id, run.head)
            db.execute(
                "UPDATE runs SET head = ?, status = 'paused', steps = ?, waiting = NULL, wake_at = NULL, "
                "output = NULL, error = NULL, lease_owner = NULL, lease_expires = NULL, updated_at = ? WHERE id = ?",
                (branch.name, branch.fork - 1, now, run_id),
            )
        run.head, run.status, run.steps, run.updated_at = branch.name, "paused", branch.fork - 1, now
        run.waiting = run.wake_at = run.output = run.error = run.lease_owner = run.lease_expires = None
        return run

    def switch_branch(self, run_id: str, name: str, status: str, steps: int, *, now: float, output: Any = None,
                      error: dict[str, Any] | None = None) -> RunRow:
        if status not in STATUSES:
            raise ValueError(f"unknown run status '{status}'")
        with self._writing() as db:
            run = self._run(db, run_id)
            self._refuse_if_leased(run, now)
            if not self._has_branch(db, run_id, name):
                raise RunNotFound(f"run {run_id} has no branch '{name}'")
            _set_aside_pending_events(db, run_id, run.head)
            # a wait the new head was in is entered again on resume (with a fresh timer)
            db.execute(
                "UPDATE runs SET head = ?, status = ?, steps = ?, waiting = NULL, wake_at = NULL, output = ?, "
                "error = ?, lease_owner = NULL, lease_expires = NULL, updated_at = ? WHERE id = ?",
                (name, status, steps, _dump(output), _dump(error), now, run_id),
            )
        run.head, run.status, run.steps, run.updated_at = name, status, steps, now
        run.waiting = run.wake_at = run.lease_owner = run.lease_expires = None
        run.output, run.error = output, error
        return run

    # -- external events --------------------------------------------------------------------------

    def add_event(self, run_id: str, name: str, data: Any, *, now: float) -> int:
        payload = _dump(data)
        with self._writing() as db:
            row = db.execute("SELECT status, waiting, wake_at FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise RunNotFound(f"no run '{run_id}' in {self.url}")
            status, waiting, wake_at = row[0], _load(row[1]), row[2]
            if status in FINISHED:
                raise Conflict(f"run {run_id} has {_finished(status)}; it takes no more events")
            if status != "waiting":
                raise Conflict(f"run {run_id} is {status}, not waiting for an event")
            events = list((waiting or {}).get("events") or [])
            if name not in events:
                raise Conflict(f"run {run_id} is not waiting for '{name}'; it waits for: {', '.join(events)}")
            if wake_at is not None and wake_at <= now:
                # as in Step Functions, an answer after the timeout is refused: the timeout transition wins
                due = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wake_at))
                raise Conflict(f"run {run_id} stopped waiting at {due}: the timer of state "
                               f"'{(waiting or {}).get('state')}' ran out, so it takes its timeout transition "
                               "when it is resumed")
            cursor = db.execute(
                "INSERT INTO events (run_id, name, data, created_at) VALUES (?, ?, ?, ?)", (run_id, name, payload, now)
            )
            event_id = cursor.lastrowid
        assert event_id is not None
        return event_id

    def pending_events(self, run_id: str) -> list[EventRow]:
        query = (
            "SELECT id, name, data, created_at, taken_branch, taken_step FROM events "
            "WHERE run_id = ? AND taken_step IS NULL ORDER BY id"
        )
        with self._reading() as db:
            return [EventRow(row[0], row[1], _load(row[2]), row[3], row[4], row[5])
                    for row in db.execute(query, (run_id,))]

    def due_runs(self, now: float, limit: int) -> list[str]:
        # SQL narrows to candidates; whether a pending event's name is one the run waits for is JSON, checked here
        query = (
            "SELECT id, status, waiting, wake_at FROM runs WHERE "
            "(status = 'waiting' AND (wake_at <= ? OR EXISTS "
            "(SELECT 1 FROM events WHERE events.run_id = runs.id AND events.taken_step IS NULL))) "
            "OR (status = 'running' AND (lease_owner IS NULL OR lease_expires < ?)) "
            "ORDER BY created_at, id"
        )
        pending = "SELECT DISTINCT name FROM events WHERE run_id = ? AND taken_step IS NULL"
        due: list[str] = []
        with self._reading(consistent=True) as db:
            for run_id, status, waiting, wake_at in db.execute(query, (now, now)).fetchall():
                if len(due) >= limit:
                    break
                if status == "running" or (wake_at is not None and wake_at <= now):
                    due.append(run_id)
                    continue
                wanted = set((_load(waiting) or {}).get("events") or ())
                if any(name in wanted for (name,) in db.execute(pending, (run_id,))):
                    due.append(run_id)
        return due
