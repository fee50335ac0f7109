"""The row operations of one PostgreSQL transaction (see `agentfsm.store.base.Transaction`).

Columns and JSON text are the SQLite store's (`agentfsm.store.sqlite_rows`); only the SQL
differs. In a write transaction, reading a run locks its row (`FOR UPDATE`): the store's rules
read a run and then write it, and another process must not change it in between.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from agentfsm.store.base import (
    BranchRow,
    CheckpointRow,
    Damaged,
    DueCandidate,
    EventRow,
    RunFilter,
    RunRow,
    StepRow,
    TraceRow,
    TraceWrite,
    WorkerRow,
)
from agentfsm.store.team_rows import TABLE_NAMES, SQLTeamRows
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

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from agentfsm.store.postgres_watch import Watched

_INSERT_RUN = INSERT_RUN.replace("?", "%s")
_INSERT_STEP = INSERT_STEP.replace("?", "%s")
_UPDATES: dict[tuple[tuple[str, ...], bool, bool], str] = {}

_P = ParamSpec("_P")
_T = TypeVar("_T")


def _loading(read: Callable[_P, Awaitable[_T]]) -> Callable[_P, Awaitable[_T]]:
    """A read that turns JSON text into values: a value that is not JSON is `Damaged`, naming the store."""
    @functools.wraps(read)
    async def checked(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await read(*args, **kwargs)
        except DamagedValue as exc:
            tx = args[0]
            assert isinstance(tx, PostgresTransaction)
            raise Damaged(f"{tx.url} is damaged ({exc})") from None

    return checked


def _events_decide(run: RunRow, now: float) -> bool:
    """Whether a candidate's pending events decide if it is due (not for a dead owner's run, nor a due timer)."""
    return run.status == "waiting" and (run.wake_at is None or run.wake_at > now)


class PostgresTransaction:
    """Row operations on one connection inside one transaction; `locking` in a write transaction."""

    __slots__ = ("db", "url", "locking", "channel", "watched")

    def __init__(self, db: AsyncConnection[Any], url: str, *, locking: bool, channel: str, watched: Watched) -> None:
        self.db, self.url, self.locking, self.channel, self.watched = db, url, locking, channel, watched

    async def _one(self, query: str, params: tuple[Any, ...] | list[Any] = ()) -> Any:
        cursor = await self.db.execute(query, params)
        return await cursor.fetchone()

    async def _all(self, query: str, params: tuple[Any, ...] | list[Any] = ()) -> list[Any]:
        cursor = await self.db.execute(query, params)
        return await cursor.fetchall()

    # -- reads ---------------------------------------------------------------------------------------

    @_loading
    async def run(self, run_id: str) -> RunRow | None:
        row = await self._one(f"{SELECT_RUN} WHERE id = %s" + (" FOR UPDATE" if self.locking else ""), (run_id,))
        return None if row is None else run_from_row(row)

    async def lease_owner(self, run_id: str) -> str | None:
        row = await self._one("SELECT lease_owner FROM runs WHERE id = %s", (run_id,))
        return None if row is None else row[0]

    @_loading
    async def runs_by_prefix(self, prefix: str, limit: int) -> list[RunRow]:
        end = prefix_end(prefix)
        query = f"{SELECT_RUN} WHERE id >= %s" + (" AND id < %s" if end else "") + " ORDER BY id LIMIT %s"
        return [run_from_row(row) for row in await self._all(query, (prefix, end, limit) if end else (prefix, limit))]

    @_loading
    async def runs_by_suffix(self, suffix: str, limit: int) -> list[RunRow]:
        query = f"{SELECT_RUN} WHERE right(id, %s) = %s ORDER BY id LIMIT %s"
        return [run_from_row(row) for row in await self._all(query, (len(suffix), suffix, limit))]

    @_loading
    async def list_runs(self, where: RunFilter) -> list[RunRow]:
        clauses: list[str] = []
        params: list[Any] = []
        if where.statuses:
            clauses.append("status = ANY(%s)")
            params.append(list(where.statuses))
        for column, value in (("machine", where.machine), ("parent_run", where.parent_run)):
            if value is not None:
                clauses.append(f"{column} = %s")
                params.append(value)
        if where.updated_before is not None:
            clauses.append("updated_at < %s")
            params.append(where.updated_before)
        if where.parents:
            clauses.append("parent_run = ANY(%s)")
            params.append(list(where.parents))
        if where.top_level:
            clauses.append("parent_run IS NULL")
        if where.before is not None:
            clauses.append("(created_at, id) < (%s, %s)")
            params.extend(where.before)
        query = SELECT_RUN + (" WHERE " + " AND ".join(clauses) if clauses else "")
        query += " ORDER BY created_at DESC, id DESC"
        if where.limit is not None:
            query += " LIMIT %s"
            params.append(where.limit)
        return [run_from_row(row) for row in await self._all(query, params)]

    @_loading
    async def inputs(self, run_id: str) -> dict[str, Any] | None:
        row = await self._one("SELECT inputs FROM run_inputs WHERE run_id = %s", (run_id,))
        return None if row is None else load(row[0], {})

    async def source(self, digest: str) -> str | None:
        row = await self._one("SELECT text FROM sources WHERE digest = %s", (digest,))
        return None if row is None else row[0]

    async def branches(self, run_id: str) -> list[BranchRow]:
        query = "SELECT name, parent, fork, created_at FROM branches WHERE run_id = %s ORDER BY created_at, seq"
        return [BranchRow(*row) for row in await self._all(query, (run_id,))]

    @_loading
    async def steps(self, run_id: str, branch: str, first: int, last: int | None, limit: int | None) -> list[StepRow]:
        query = f"{SELECT_STEP} WHERE run_id = %s AND branch = %s AND step >= %s"
        params: list[Any] = [run_id, branch, first]
        if last is not None:
            query += " AND step <= %s"
            params.append(last)
        query += " ORDER BY step"
        if limit is not None:
            query += " LIMIT %s"
            params.append(limit)
        return [step_from_row(row) for row in await self._all(query, params)]

    @_loading
    async def context_rows(self, run_id: str, branch: str, first: int, last: int) -> list[StepRow]:
        # the newest snapshot in range bounds the read: rows older than it are never fetched
        query = (f"{SELECT_STEP} WHERE run_id = %s AND branch = %s AND step <= %s AND context_kind IS NOT NULL "
                 "AND step >= GREATEST(%s, COALESCE((SELECT max(step) FROM steps WHERE run_id = %s AND branch = %s "
                 "AND step >= %s AND step <= %s AND context_kind = 'snapshot'), %s)) ORDER BY step DESC")
        params = (run_id, branch, last, first, run_id, branch, first, last, first)
        return [step_from_row(row) for row in await self._all(query, params)]

    @_loading
    async def tally_row(self, run_id: str, branch: str, first: int, last: int) -> StepRow | None:
        query = (f"{SELECT_STEP} WHERE run_id = %s AND branch = %s AND step >= %s AND step <= %s "
                 "AND tally IS NOT NULL ORDER BY step DESC LIMIT 1")
        row = await self._one(query, (run_id, branch, first, last))
        return None if row is None else step_from_row(row)

    @_loading
    async def newest_step(self, run_id: str, branch: str, first: int, last: int | None) -> StepRow | None:
        bound = "" if last is None else f" AND step <= {int(last)}"
        query = f"{SELECT_STEP} WHERE run_id = %s AND branch = %s AND step >= %s{bound} ORDER BY step DESC LIMIT 1"
        row = await self._one(query, (run_id, branch, first))
        return None if row is None else step_from_row(row)

    async def checkpoints(self, run_id: str) -> list[CheckpointRow]:
        query = "SELECT name, branch, point, created_at FROM checkpoints WHERE run_id = %s ORDER BY created_at, seq"
        return [CheckpointRow(*row) for row in await self._all(query, (run_id,))]

    async def checkpoint_names(self, run_id: str, prefix: str) -> set[str]:
        query = "SELECT name FROM checkpoints WHERE run_id = %s AND left(name, %s) = %s"
        return {name for (name,) in await self._all(query, (run_id, len(prefix), prefix))}

    @_loading
    async def pending_events(self, run_id: str) -> list[EventRow]:
        query = ("SELECT id, name, data, created_at, taken_branch, taken_step FROM events "
                 "WHERE run_id = %s AND taken_step IS NULL ORDER BY id")
        return [EventRow(row[0], row[1], load(row[2]), row[3], row[4], row[5])
                for row in await self._all(query, (run_id,))]

    @_loading
    async def events(self, run_id: str) -> list[EventRow]:
        query = ("SELECT id, name, data, created_at, taken_branch, taken_step FROM events WHERE run_id = %s "
                 "ORDER BY id")
        return [EventRow(row[0], row[1], load(row[2]), row[3], row[4], row[5])
                for row in await self._all(query, (run_id,))]

    async def pending_event_ids(self, run_id: str) -> set[int]:
        query = "SELECT id FROM events WHERE run_id = %s AND taken_step IS NULL"
        return {event_id for (event_id,) in await self._all(query, (run_id,))}

    async def trace_rows(self, run_id: str, after: int, limit: int | None) -> list[TraceRow]:
        query = (
            "SELECT trace_seq, trace_last, branch, step, trace FROM steps WHERE run_id = %s AND trace_last > %s "
            "UNION ALL SELECT seq, last, branch, step, entries FROM trace WHERE run_id = %s AND last > %s "
            "ORDER BY 1"
        )
        params: list[Any] = [run_id, after, run_id, after]
        if limit is not None:
            query += " LIMIT %s"
            params.append(limit)
        return [TraceRow(*row) for row in await self._all(query, params)]

    async def step_trace(self, run_id: str, branch: str, step: int) -> list[TraceRow]:
        query = (
            "SELECT trace_seq, trace_last, branch, step, trace FROM steps "
            "WHERE run_id = %s AND branch = %s AND step = %s AND trace IS NOT NULL "
            "UNION ALL SELECT seq, last, branch, step, entries FROM trace WHERE run_id = %s AND branch = %s AND step = %s "
            "ORDER BY 1"
        )
        return [TraceRow(*row) for row in await self._all(query, [run_id, branch, step, run_id, branch, step])]

    async def trace_end(self, run_id: str) -> int:
        row = await self._one("SELECT GREATEST((SELECT MAX(trace_last) FROM steps WHERE run_id = %s), "
                              "(SELECT MAX(last) FROM trace WHERE run_id = %s))", (run_id, run_id))
        return int(row[0] or 0)

    async def payloads(self, run_id: str, digests: list[str]) -> dict[str, str]:
        rows = await self._all("SELECT digest, data FROM payloads WHERE run_id = %s AND digest = ANY(%s)",
                               (run_id, digests))
        return {digest: data for digest, data in rows}

    @_loading
    async def due_candidates(self, now: float, limit: int, *, machine: str | None = None) -> list[DueCandidate]:
        query = (
            f"{SELECT_RUN} WHERE (status = 'waiting' AND (wake_at <= %s OR EXISTS "
            "(SELECT 1 FROM events WHERE events.run_id = runs.id AND events.taken_step IS NULL)) "
            "OR status IN ('running', 'queued')) AND (lease_owner IS NULL OR lease_expires < %s)"
            + (" AND machine = %s" if machine is not None else "") + " ORDER BY created_at, id LIMIT %s"
        )
        params = (now, now, machine, limit) if machine is not None else (now, now, limit)
        found = [run_from_row(row) for row in await self._all(query, params)]
        pending = "SELECT DISTINCT name FROM events WHERE run_id = %s AND taken_step IS NULL"
        return [DueCandidate(run, tuple(name for (name,) in await self._all(pending, (run.id,))))
                if _events_decide(run, now) else DueCandidate(run) for run in found]

    @_loading
    async def claimable(self, now: float, limit: int, *, machine: str | None, skip: Collection[str]) -> list[RunRow]:
        # the whole of rules.is_due in SQL, so that exactly the rows taken are locked (other claimers skip them)
        query = (
            f"{SELECT_RUN} WHERE (status = 'waiting' AND (wake_at <= %s OR EXISTS (SELECT 1 FROM events "
            "WHERE events.run_id = runs.id AND events.taken_step IS NULL "
            "AND (runs.waiting::jsonb -> 'events') ? events.name)) "
            "OR status IN ('running', 'queued')) AND (lease_owner IS NULL OR lease_expires < %s) "
            "AND NOT (id = ANY(%s))" + (" AND machine = %s" if machine is not None else "")
            + " ORDER BY created_at, id LIMIT %s FOR UPDATE SKIP LOCKED"
        )
        params: list[Any] = [now, now, list(skip)] + ([machine] if machine is not None else []) + [limit]
        return [run_from_row(row) for row in await self._all(query, params)]

    async def workers(self) -> list[WorkerRow]:
        query = "SELECT id, host, pid, started_at, heartbeat_at, concurrency, machine FROM workers"
        return [WorkerRow(*row) for row in await self._all(query)]

    async def lease_counts(self, owners: list[str]) -> dict[str, int]:
        query = "SELECT lease_owner, count(*) FROM runs WHERE lease_owner = ANY(%s) GROUP BY lease_owner"
        return {owner: count for owner, count in await self._all(query, (owners,))}

    # -- writes --------------------------------------------------------------------------------------

    async def _wake_workers(self) -> None:
        """Tell idle workers there is work (delivered when this transaction commits; see `postgres_listen`)."""
        await self.db.execute("SELECT pg_notify(%s, '')", (self.channel,))

    async def put_worker(self, worker: WorkerRow) -> None:
        await self.db.execute(
            "INSERT INTO workers (id, host, pid, started_at, heartbeat_at, concurrency, machine) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at",
            (worker.id, worker.host, worker.pid, worker.started_at, worker.heartbeat_at, worker.concurrency,
             worker.machine))

    async def delete_workers(self, worker_ids: list[str]) -> None:
        await self.db.execute("DELETE FROM workers WHERE id = ANY(%s)", (worker_ids,))

    async def insert_run(self, run: RunRow, inputs: Mapping[str, Any], source: str | None) -> None:
        if source is not None and run.digest is not None:
            await self.add_source(run.digest, source)
        await self.db.execute(_INSERT_RUN, run_params(run))
        await self.watched.changed(self.db, run.id)
        if run.status == "queued":
            await self._wake_workers()
        await self.db.execute("INSERT INTO run_inputs (run_id, inputs) VALUES (%s, %s)", (run.id, dump(dict(inputs))))

    async def insert_branch(self, run_id: str, branch: BranchRow) -> None:
        await self.db.execute("INSERT INTO branches (run_id, name, parent, fork, created_at) VALUES (%s, %s, %s, %s, %s)",
                              (run_id, branch.name, branch.parent, branch.fork, branch.created_at))

    async def insert_step(self, run_id: str, step: StepRow, trace: TraceRow | None = None) -> None:
        await self.db.execute(_INSERT_STEP, step_params(run_id, step, trace))

    async def insert_trace(self, run_id: str, write: TraceWrite) -> None:
        for digest, data in write.payloads.items():
            await self.db.execute("INSERT INTO payloads (run_id, digest, data) VALUES (%s, %s, %s) "
                                  "ON CONFLICT DO NOTHING", (run_id, digest, data))
        for row in write.rows:
            await self.db.execute("INSERT INTO trace (run_id, seq, last, branch, step, entries) "
                                  "VALUES (%s, %s, %s, %s, %s, %s)",
                                  (run_id, row.seq, row.last, row.branch, row.step, row.entries))

    async def insert_checkpoint(self, run_id: str, checkpoint: CheckpointRow) -> bool:
        query = ("INSERT INTO checkpoints (run_id, name, branch, point, created_at) VALUES (%s, %s, %s, %s, %s) "
                 "ON CONFLICT DO NOTHING")
        params = (run_id, checkpoint.name, checkpoint.branch, checkpoint.point, checkpoint.created_at)
        return (await self.db.execute(query, params)).rowcount > 0

    async def update_run(self, run_id: str, values: Mapping[str, Any], *, owner: str | None = None) -> bool:
        columns = tuple(values)
        watched = await self.watched.watching(self.db)
        key = (columns, owner is not None, watched)
        query = _UPDATES.get(key)
        if query is None:  # a few shapes, built once each
            query = f"UPDATE runs SET {', '.join(f'{column} = %s' for column in columns)} WHERE id = %s"
            query += " AND lease_owner = %s" if owner is not None else ""
            query += " RETURNING pg_notify(%s, id)" if watched else ""  # the watchers told, in the same round trip
            _UPDATES[key] = query
        params = [column_value(column, value) for column, value in values.items()]
        params.append(run_id)
        if owner is not None:
            params.append(owner)
        if watched:
            params.append(self.watched.channel)
        written = (await self.db.execute(query, params)).rowcount > 0
        if written and values.get("status") == "running" and "lease_owner" in values and values["lease_owner"] is None:
            await self._wake_workers()  # a run handed back (a worker stopped): the next worker takes it at once
        return written

    async def add_source(self, digest: str, text: str) -> None:
        await self.db.execute("INSERT INTO sources (digest, text) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                              (digest, text))

    async def take_event(self, run_id: str, event_id: int, branch: str, step: int) -> bool:
        query = ("UPDATE events SET taken_branch = %s, taken_step = %s "
                 "WHERE id = %s AND run_id = %s AND taken_step IS NULL")
        return (await self.db.execute(query, (branch, step, event_id, run_id))).rowcount > 0

    async def set_aside_events(self, run_id: str, branch: str) -> None:
        await self.db.execute("UPDATE events SET taken_branch = %s, taken_step = -1 "
                              "WHERE run_id = %s AND taken_step IS NULL", (branch, run_id))

    async def insert_event(self, run_id: str, name: str, data: Any, now: float) -> int:
        row = await self._one("INSERT INTO events (run_id, name, data, created_at) VALUES (%s, %s, %s, %s) "
                              "RETURNING id", (run_id, name, dump(data), now))
        await self._wake_workers()
        return int(row[0])

    def teams(self) -> SQLTeamRows:
        db = self.db

        async def fetch(query: str, params: tuple[Any, ...]) -> list[Any]:
            cursor = await db.execute(query.replace("?", "%s"), params)  # type: ignore[arg-type]
            return await cursor.fetchall() if cursor.description is not None else []

        return SQLTeamRows(fetch)

    async def delete_runs(self, run_ids: list[str]) -> None:
        for table in (*sorted(TABLE_NAMES), "steps", "branches", "checkpoints", "events", "run_inputs", "trace",
                      "payloads"):
            await self.db.execute(f"DELETE FROM {table} WHERE run_id = ANY(%s)", (run_ids,))
        await self.db.execute("DELETE FROM runs WHERE id = ANY(%s)", (run_ids,))
        await self.db.execute("DELETE FROM sources WHERE NOT EXISTS "
                              "(SELECT 1 FROM runs WHERE runs.digest = sources.digest)")
